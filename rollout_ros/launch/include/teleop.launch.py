# SPDX-License-Identifier: Apache-2.0
"""Teleop: the leader arm DAgger corrects with, as one lifecycle node
(`teleop`) publishing `teleop/joint_states` in the follower's joint space and
serving `teleop/move_to` and `teleop/release`.
"""

from rollout_ros.launch_support import component_launch


def generate_launch_description():
    return component_launch('teleop')
