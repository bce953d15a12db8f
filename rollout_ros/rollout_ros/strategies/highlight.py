# SPDX-License-Identifier: Apache-2.0
"""Highlight strategy: the policy runs while the recorder keeps the last
`ring_buffer_seconds` in memory; nothing reaches the disk until asked.

- save key, first press: the ring buffer (the moments before the press)
  becomes the start of a new episode, and recording goes on live;
- save key, second press: the episode is saved;
- discard key: the live episode is dropped;
- push key: upload what is saved;
- a stop key (esc) ends the run; a live episode is saved first.
"""

import sys

from rollout_ros.nodes.spin import run_node
from rollout_ros.strategies.recording import RecordingStrategyNode


class HighlightStrategyNode(RecordingStrategyNode):
    strategy_type = 'highlight'

    def __init__(self, node_name: str = 'highlight_strategy', **kwargs):
        super().__init__(node_name, **kwargs)
        self.declare(
            'save_key',
            's',
            'First press: the ring buffer starts an episode that then records '
            'live; second press: the episode is saved.',
            read_only=False,
        )
        self.declare('push_key', 'h', 'Upload the saved episodes to the Hub.', read_only=False)
        self.declare('discard_key', 'd', 'Drop the live episode.', read_only=False)

    def on_key(self, key: str) -> None:
        if key == self.param('save_key'):
            if self.recording:
                self.request('save_episode')
            else:
                self.get_logger().info('highlight: buffer flushed, recording live')
                self.speaker.say('recording')
                self.request('start_episode')
        elif key == self.param('discard_key') and self.recording:
            self.get_logger().info('highlight: live episode discarded')
            self.speaker.say('discarded')
            self.request('discard_episode')
        elif key == self.param('push_key'):
            self.request('push')


def main(args=None):
    return run_node(HighlightStrategyNode, args, autostart=True)


if __name__ == '__main__':
    sys.exit(main())
