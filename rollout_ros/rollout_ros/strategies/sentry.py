# SPDX-License-Identifier: Apache-2.0
"""Sentry strategy: the policy runs and everything is recorded.

One episode is opened when the loop starts; the recorder (auto_rotate) saves
it and opens the next whenever the video file it grows reaches its target
size, and uploads every `upload_every_n_episodes`. Nothing here resets the
robot or the policy between episodes: hidden state and the RTC queue carry
on across the boundary, as in lerobot's sentry.
"""

import sys

from rollout_ros.nodes.spin import run_node
from rollout_ros.strategies.recording import RecordingStrategyNode


class SentryStrategyNode(RecordingStrategyNode):
    strategy_type = 'sentry'

    def __init__(self, node_name: str = 'sentry_strategy', **kwargs):
        super().__init__(node_name, **kwargs)

    def on_loop_started(self) -> None:
        self.request('start_episode')


def main(args=None):
    return run_node(SentryStrategyNode, args, autostart=True)


if __name__ == '__main__':
    sys.exit(main())
