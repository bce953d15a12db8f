"""Robot driver(s): one lifecycle node per servo bus (`robot_driver`, or
`robot_driver_left`/`robot_driver_right` for bi_* robots), publishing
`joint_states` and executing `joint_commands` in the namespace.

Included by the strategy launch files; alone (`ros2 launch rollout_ros
driver.launch.py robot_port:=/dev/ttyACM0`) the drivers wait unconfigured for
a manager of yours.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # launch files are not a package
from rollout_launch import ROBOT, Arg, component, drivers, lifecycle_node  # noqa: E402

ARGS = [
    *ROBOT,
    Arg('robot_port', '/dev/ttyACM0', 'Servo bus port (lerobot --robot.port).'),
    Arg('left_robot_port', '', 'bi_* robots: left arm port (lerobot --robot.left_arm_config.port).'),
    Arg('right_robot_port', '', 'bi_* robots: right arm port (lerobot --robot.right_arm_config.port).'),
]


def nodes(a):
    return [lifecycle_node(a, 'robot_driver', d.name, **{**a.robot(), 'robot_type': d.robot_type,
                                                       'robot_id': d.robot_id}, robot_port=d.port,
                           joint_prefix=d.joint_prefix)
            for d in drivers(a)]


def generate_launch_description():
    return component('driver', ARGS, nodes)
