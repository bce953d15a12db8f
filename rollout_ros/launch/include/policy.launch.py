# SPDX-License-Identifier: Apache-2.0
"""Policy: one lifecycle node (`policy`) that loads a LeRobot checkpoint and
serves `policy/infer` (rollout_ros_interfaces/srv/InferAction) in the
namespace; it also reads the camera topics, so requests can name frames by
their stamps instead of carrying them.
"""

from rollout_ros.launch_support import component_launch


def generate_launch_description():
    return component_launch('policy')
