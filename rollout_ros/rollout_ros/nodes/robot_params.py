# SPDX-License-Identifier: Apache-2.0
"""Robot parameters shared by the driver and the strategy (both need the
calibration: the driver to turn ticks into radians, the strategy to turn
radians into the policy's units)."""

from rollout_ros.hardware.robots import get_robot_spec, load_robot_calibration


def declare_robot_params(node) -> None:
    node.declare('robot_type', 'koch_follower', 'Robot type, as lerobot names it (koch_follower).')
    node.declare(
        'robot_id',
        'follower',
        "Calibration id: the file <calibration_dir>/<robot_id>.json, or by default lerobot's "
        '~/.cache/huggingface/lerobot/calibration/robots/<robot class>/<robot_id>.json.',
    )
    node.declare(
        'calibration_dir',
        '',
        "Folder holding <robot_id>.json, as lerobot's --robot.calibration_dir; '' = lerobot's default location.",
    )
    node.declare(
        'use_degrees',
        False,
        'Body joints in degrees instead of -100..100 (lerobot use_degrees; must match how the policy was trained).',
    )
    node.declare('joint_prefix', '', 'Prefix of ROS joint names (e.g. left_); LeRobot names lack it.')
    node.declare(
        'robot_side',
        '',
        'Arm side for robots with per-side defaults (openarm_follower: left or '
        "right joint limits; '' = lerobot's narrow defaults), as lerobot's --robot.side.",
    )


def load_robot(node, port: str = '<port>'):
    """(spec, calibration) from the node's robot parameters; ConfigError on bad input."""
    spec = get_robot_spec(node.param('robot_type'), node.param('use_degrees'), node.param('robot_side'))
    return spec, load_robot_calibration(spec, node.param('calibration_dir') or None, node.param('robot_id'), port)
