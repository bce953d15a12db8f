# SPDX-License-Identifier: Apache-2.0
"""Foot pedal node: evdev key events on `~/events` (rollout_ros_interfaces/InputEvent,
stamped with the kernel's event time; value 1 press, 0 release, 2 repeat).

A strategy must tell a dead pedal from an idle one, so besides events:
- `~/heartbeat` (std_msgs/Header, the time, at `heartbeat_hz`) while the node
  is active and the device still reads: no heartbeat = dead node or device;
- `/diagnostics` (diagnostic_msgs/DiagnosticArray) at the same rate from
  configure to cleanup, and at once when the device goes: OK while reading,
  ERROR with the reason once it vanished (see hardware/input/pedal.py for
  what counts as vanished for a device, a FIFO and a regular file).
A vanished device is not reopened: clean up and configure again.
"""

import os
import sys
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from std_msgs.msg import Header

from rollout_ros.hardware.input.pedal import (
    DEFAULT_DEVICE_PATH,
    DEFAULT_KEY_CODES,
    PedalEvent,
    PedalReader,
    parse_key_codes,
)
from rollout_ros.nodes.managed_node import ManagedNode
from rollout_ros.nodes.spin import run_node
from rollout_ros_interfaces.msg import InputEvent

EVENTS_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)


class PedalNode(ManagedNode):
    def __init__(self, node_name: str = 'pedal', **kwargs):
        super().__init__(node_name, **kwargs)
        self.declare(
            'device_path',
            DEFAULT_DEVICE_PATH,
            'evdev device of the pedal (a /dev/input/by-id/...-event-kbd entry); a FIFO or '
            'file of packed input_event records stands in for one.',
        )
        self.declare(
            'key_codes',
            ','.join(DEFAULT_KEY_CODES),
            'Keys to publish, by evdev name or number, as KEY_A,KEY_B,46 or a JSON list (each '
            'published in InputEvent.key under its evdev name), or a JSON object naming them '
            '({"pause": "KEY_A", "push": 46}). Default: lerobot\'s pedal keys (KEY_A/KEY_B/KEY_C).',
        )
        self.declare(
            'grab',
            True,
            'Take the device exclusively (EVIOCGRAB) so presses do not type into other '
            'programs; skipped with a warning where unsupported.',
        )
        self.declare('heartbeat_hz', 2.0, 'Rate of ~/heartbeat and /diagnostics [Hz].', min_value=0.1, max_value=100.0)
        self.declare(
            'report_unmapped',
            False,
            "Publish codes missing from key_codes too, as key 'code_<n>' (to find a pedal's "
            'codes); otherwise they are dropped with a warning.',
        )
        self.reader: PedalReader | None = None
        self._events_pub = None
        self._heartbeat_pub = None
        self._diag_pub = None
        self._timer = None
        self._active = False
        self._warned_codes: set[int] = set()
        self.published = 0

    @property
    def device_lost(self) -> bool:
        return self.reader is not None and self.reader.gone.is_set()

    @property
    def device(self) -> str:
        return os.path.basename(self.param('device_path').rstrip('/')) or self.param('device_path')

    def configure(self) -> None:
        codes = parse_key_codes(self.param('key_codes'))
        reader = PedalReader(
            self.param('device_path'), codes, on_event=self._publish, on_gone=self._lost, grab=self.param('grab')
        )
        reader.open()
        self.reader = reader
        self._events_pub = self.create_lifecycle_publisher(InputEvent, '~/events', EVENTS_QOS)
        self._heartbeat_pub = self.create_lifecycle_publisher(Header, '~/heartbeat', 10)
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._timer = self.create_timer(1.0 / self.param('heartbeat_hz'), self._tick)
        reader.start()
        what = f'{reader.kind} {reader.device_name!r}' if reader.device_name else reader.kind
        self.get_logger().info(f'reading {what} at {reader.device_path}, keys {codes}')
        if self.param('grab') and not reader.grabbed:
            self.get_logger().warning(f'not grabbed: {reader.grab_note}; presses also reach other programs.')

    def activate(self) -> None:
        self._active = True

    def deactivate(self) -> None:
        self._active = False

    def cleanup(self) -> None:
        self._active = False
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        if self.reader is not None:
            self.reader.close()  # joins the thread: nothing publishes after this
            self.reader = None
        for pub in (self._events_pub, self._heartbeat_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
        self._events_pub = self._heartbeat_pub = self._diag_pub = None

    # Publishing -------------------------------------------------------------
    def _publish(self, event: PedalEvent) -> None:
        if not self._active:
            return
        name = event.name
        if name is None:
            if not self.param('report_unmapped'):
                if event.code not in self._warned_codes:
                    self._warned_codes.add(event.code)
                    self.get_logger().warning(
                        f'code {event.code} is not in key_codes: dropped (add it to key_codes to use it).'
                    )
                return
            name = f'code_{event.code}'
        msg = InputEvent()
        msg.header.stamp = Time(nanoseconds=event.stamp_ns).to_msg()
        msg.device = self.device
        msg.key = name
        msg.code = event.code
        msg.value = event.value
        self._events_pub.publish(msg)
        self.published += 1

    def _tick(self) -> None:
        reader = self.reader
        if reader is None:
            return
        self._publish_diagnostics(reader)
        if self._active and not reader.gone.is_set():
            self._heartbeat_pub.publish(Header(stamp=self.get_clock().now().to_msg(), frame_id=self.device))

    def _lost(self, reason: str) -> None:
        self.get_logger().error(
            f'pedal gone: {reason} ({self.param("device_path")}). No more pedal '
            'events; clean up and configure again once it is back.'
        )
        if self.reader is not None:
            self._publish_diagnostics(self.reader)

    def _publish_diagnostics(self, reader: PedalReader) -> None:
        pub = self._diag_pub
        if pub is None:
            return
        status = DiagnosticStatus(name=f'{self.get_name()}: pedal', hardware_id=reader.device_path)
        if reader.gone.is_set():
            status.level, status.message = DiagnosticStatus.ERROR, f'device gone: {reader.gone_reason}'
        else:
            status.level = DiagnosticStatus.OK
            status.message = 'reading' if self._active else 'reading (node inactive: events dropped)'
        age = '' if reader.last_event_mono is None else f'{time.monotonic() - reader.last_event_mono:.1f}'
        values = {
            'kind': reader.kind,
            'device_name': reader.device_name,
            'grabbed': str(reader.grabbed),
            'key_events': str(reader.events),
            'last_event_age_s': age,
            'kernel_overflows': str(reader.overflows),
        }
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status]))


def main(args=None):
    return run_node(PedalNode, args)


if __name__ == '__main__':
    sys.exit(main())
