# SPDX-License-Identifier: Apache-2.0
"""Key presses on a timeline, or as a strategy reaches given states, published
as InputEvents: the operator of the demo and of the strategy tests, on the
same topic a keyboard node uses."""

import threading
import time
from typing import Callable

from rclpy.node import Node

from rollout_ros.nodes.keyboard_node import EVENTS_QOS
from rollout_ros_interfaces.msg import InputEvent


class ScriptedInput:
    def __init__(self, node: Node, topic: str, presses: list[tuple[float, str]]):
        """presses: (seconds after start(), key), e.g. [(4.0, 'space'), (5.0, 'tab')]."""
        self.node = node
        self.presses = sorted(presses)
        self.sent: list[tuple[float, str]] = []  # (unix time, key) as published
        self._pub = node.create_publisher(InputEvent, topic, EVENTS_QOS)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name='scripted-input', daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self.node.destroy_publisher(self._pub)

    def _run(self) -> None:
        elapsed = 0.0
        for at, key in self.presses:
            if self._stop.wait(max(0.0, at - elapsed)):
                return
            elapsed = at
            self._press(key)

    def _press(self, key: str) -> None:
        msg = InputEvent(device='scripted', key=key, code=0, value=1)
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self._pub.publish(msg)
        self.sent.append((time.time(), key))


class ReactiveInput(ScriptedInput):
    """Presses keys in order, each once its condition holds (e.g. a strategy
    phase was reached) and `delay_s` more have passed."""

    def __init__(self, node: Node, topic: str, presses: list[tuple[Callable[[], bool], float, str]]):
        super().__init__(node, topic, [])
        self.presses = list(presses)

    def _run(self) -> None:
        for condition, delay_s, key in self.presses:
            while not condition():
                if self._stop.wait(0.01):
                    return
            if self._stop.wait(delay_s):
                return
            self._press(key)
