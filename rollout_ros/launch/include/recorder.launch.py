# SPDX-License-Identifier: Apache-2.0
"""Recorder: one lifecycle node (`recorder`) that writes the strategy's
`~/frames` and the camera images they used into a LeRobot v3 dataset, driven
by the strategy through `recorder/{start_episode,save_episode,discard_episode,push}`.
"""

from rollout_ros.launch_support import component_launch


def generate_launch_description():
    return component_launch('recorder')
