# SPDX-License-Identifier: Apache-2.0
"""Episodic rollout: num_episodes episodes of at most episode_time_s, each but
the last followed by reset_time_s of reset (lerobot-rollout
--strategy.type=episodic, as lerobot-record with a policy). Right arrow (pedal
C) ends the episode or the reset early, left arrow (pedal A) discards the
episode and records it again, Esc stops. During resets the robot returns to
its starting pose, or follows a leader arm when one is given.

    ros2 launch rollout_ros episodic.launch.py policy_path:=<ckpt> robot_port:=/dev/ttyACM0 \\
        repo_id:=<user>/rollout_<name> num_episodes:=10 episode_time_s:=30 reset_time_s:=10 \\
        [teleop_type:=so101_leader teleop_port:=/dev/ttyACM1]

Nodes: policy, camera_<name>, robot_driver(s), teleop (with teleop_type),
recorder, keyboard or pedal, and episodic_strategy, which brings the others up
and ends the launch after the last episode.
"""

from rollout_ros.launch_support import strategy_launch


def generate_launch_description():
    return strategy_launch('episodic')
