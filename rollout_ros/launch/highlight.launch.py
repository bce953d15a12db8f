# SPDX-License-Identifier: Apache-2.0
"""Highlight rollout: the policy runs while the recorder keeps the last
ring_buffer_seconds in memory; the save key (s) turns them into the start of an
episode that records live until the next press, d discards it, h uploads, Esc
stops (lerobot-rollout --strategy.type=highlight).

    ros2 launch rollout_ros highlight.launch.py policy_path:=<ckpt> robot_port:=/dev/ttyACM0 \\
        repo_id:=<user>/rollout_<name>

Keys come from the terminal of ros2 launch (input_device:=keyboard) or a foot
pedal (input_device:=pedal pedal_device_path:=/dev/input/by-id/...). Nodes:
policy, camera_<name>, robot_driver(s), recorder, keyboard or pedal, and
highlight_strategy, which brings the others up and ends the launch when it stops.
"""

from rollout_ros.launch_support import strategy_launch


def generate_launch_description():
    return strategy_launch('highlight')
