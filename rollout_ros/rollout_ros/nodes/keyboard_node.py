# SPDX-License-Identifier: Apache-2.0
"""Keyboard node: keys typed into a terminal, published on `~/events`
(rollout_ros_interfaces/InputEvent, value 1: terminals report presses only).

Run it in the operator's terminal (`ros2 run rollout_ros keyboard`), or give
`tty_path`. The terminal is read from configure to cleanup, so keys typed
while the node is inactive are consumed and dropped: a Space pressed before
the strategy started must not pause it later. Events are reliable with a deep
queue because a lost key press is a lost operator command.
"""

import sys

from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.time import Time

from rollout_ros.hardware.input.keyboard import Key, TerminalKeyReader
from rollout_ros.nodes.managed_node import ManagedNode
from rollout_ros.nodes.spin import run_node
from rollout_ros_interfaces.msg import InputEvent

EVENTS_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)


class KeyboardNode(ManagedNode):
    def __init__(self, node_name: str = 'keyboard', **kwargs):
        super().__init__(node_name, **kwargs)
        self.declare('tty_path', '', "Terminal to read keys from; '' = this process's controlling terminal (/dev/tty).")
        self.declare(
            'esc_timeout_s',
            0.05,
            'A lone ESC is reported when no escape sequence follows within this time [s]; '
            'raise it if arrows arrive as esc over a slow link.',
            min_value=0.005,
            max_value=1.0,
        )
        self.reader: TerminalKeyReader | None = None
        self._pub = None
        self._active = False
        self.published = 0

    @property
    def device_lost(self) -> bool:
        return self.reader is not None and self.reader.gone.is_set()

    def configure(self) -> None:
        reader = TerminalKeyReader(
            self.param('tty_path'), on_key=self._publish, on_gone=self._lost, esc_timeout_s=self.param('esc_timeout_s')
        )
        reader.open()
        self.reader = reader
        self._pub = self.create_lifecycle_publisher(InputEvent, '~/events', EVENTS_QOS)
        reader.start()
        self.get_logger().info(f'reading keys from {reader.path}')

    def activate(self) -> None:
        self._active = True

    def deactivate(self) -> None:
        self._active = False

    def cleanup(self) -> None:
        self._active = False
        if self.reader is not None:
            self.reader.close()  # gives the terminal its mode back
            self.reader = None
        if self._pub is not None:
            self.destroy_lifecycle_publisher(self._pub)
            self._pub = None

    def _publish(self, key: Key) -> None:
        if not self._active:
            return
        msg = InputEvent()
        msg.header.stamp = Time(nanoseconds=int(key.stamp * 1e9)).to_msg()
        msg.device = self.get_name()
        msg.key = key.name
        msg.code = key.code
        msg.value = 1
        self._pub.publish(msg)
        self.published += 1

    def _lost(self, reason: str) -> None:
        self.get_logger().error(
            f'keyboard gone: {reason}; no more keys will be read. '
            'Clean up and configure again once the terminal is back.'
        )


def main(args=None):
    return run_node(KeyboardNode, args)


if __name__ == '__main__':
    sys.exit(main())
