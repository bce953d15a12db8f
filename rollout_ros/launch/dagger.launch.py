# SPDX-License-Identifier: Apache-2.0
"""DAgger rollout: the policy drives, a human corrects with a leader arm, and the
corrections are recorded with intervention=True (lerobot-rollout
--strategy.type=dagger). Space (pedal A) pauses and resumes, Tab (pedal B)
starts and ends a correction, Enter (pedal C) uploads, Esc stops.

    ros2 launch rollout_ros dagger.launch.py policy_path:=<ckpt> robot_port:=/dev/ttyACM0 \\
        teleop_type:=so101_leader teleop_port:=/dev/ttyACM1 repo_id:=<user>/rollout_<name>

Nodes: policy, camera_<name>, robot_driver(s), teleop, recorder, keyboard or
pedal, and dagger_strategy, which brings the others up and ends the launch when
it stops.
"""

from rollout_ros.launch_support import strategy_launch


def generate_launch_description():
    return strategy_launch('dagger')
