# SPDX-License-Identifier: Apache-2.0
"""Sentry rollout: the policy runs and everything is recorded, in episodes the
recorder rotates at target_video_file_size_mb and uploads every
upload_every_n_episodes (lerobot-rollout --strategy.type=sentry).

    ros2 launch rollout_ros sentry.launch.py policy_path:=<ckpt> robot_port:=/dev/ttyACM0 \\
        repo_id:=<user>/rollout_<name> duration:=3600

Nodes: policy, camera_<name>, robot_driver(s), recorder and sentry_strategy,
which brings the others up and ends the launch when it stops. Arguments: see
`ros2 launch rollout_ros sentry.launch.py --show-args`.
"""

from rollout_ros.launch_support import strategy_launch


def generate_launch_description():
    return strategy_launch('sentry')
