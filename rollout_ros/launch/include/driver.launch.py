# SPDX-License-Identifier: Apache-2.0
"""Robot driver(s): one lifecycle node per servo bus (`robot_driver`, or
`robot_driver_left`/`robot_driver_right` for bi_* robots), publishing
`joint_states` and executing `joint_commands` in the namespace.

Included by the strategy launch files; alone (`ros2 launch rollout_ros
driver.launch.py robot_port:=/dev/ttyACM0`) the drivers wait unconfigured for
a manager of yours.
"""

from rollout_ros.launch_support import component_launch


def generate_launch_description():
    return component_launch('driver')
