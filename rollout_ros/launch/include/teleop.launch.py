"""Teleop: the leader arm DAgger corrects with, as one lifecycle node
(`teleop`) publishing `teleop/joint_states` in the follower's joint space and
serving `teleop/move_to` and `teleop/release`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # launch files are not a package
from rollout_launch import ROBOT, Arg, component, lifecycle_node  # noqa: E402

from rollout_ros.core.errors import ConfigError  # noqa: E402
from rollout_ros.hardware.robots import get_robot_spec  # noqa: E402

ARGS = [
    Arg('teleop_type', 'koch_leader', 'Leader arm: koch_leader, so100_leader or so101_leader (lerobot '
        '--teleop.type).'),
    Arg('teleop_port', '/dev/ttyACM1', 'Leader arm port (lerobot --teleop.port).'),
    Arg('teleop_id', 'leader', 'Leader calibration id (lerobot --teleop.id).'),
    *ROBOT,   # the follower's: the leader pose is published in its joint space
]


def nodes(a):
    if get_robot_spec(a['robot_type']).arms:
        raise ConfigError('use_teleop', f'there is no bimanual leader for {a["robot_type"]} yet.',
                          'use_teleop:=false with a teleop node of your own that publishes every joint.')
    return [lifecycle_node(a, 'teleop', 'teleop', teleop_type=a['teleop_type'], teleop_port=a['teleop_port'],
                           teleop_id=a['teleop_id'], **a.robot())]


def generate_launch_description():
    return component('teleop', ARGS, nodes, config='dagger.yaml')
