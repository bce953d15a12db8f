# SPDX-License-Identifier: Apache-2.0
"""Damiao motors (MIT mode) emulated on a python-can bus.

The driver under test opens the same python-can channel as this emulator:
`virtual` within one process (tests), `udp_multicast` across processes
(demo, launch) where the kernel has no vcan device, or a `vcan` SocketCAN
device when there is one (pick_transport says which). Each motor answers
enable/disable/zero, MIT commands and refresh requests with its state on its
receive id, tracks its goal with first-order dynamics whose time constant
follows kp, and keeps its enable state. Faults: drop or corrupt replies,
silence motors, and a bus-off of the whole controller.

Run standalone with ``python -m rollout_ros.hardware.emulator.damiao_emulator``.
"""

import argparse
import math
import random
import signal
import threading
import time
import uuid
from pathlib import Path

import can

from rollout_ros.hardware.damiao import protocol as proto
from rollout_ros.hardware.damiao.bus import CAN_ERR_BUSOFF, CAN_ERR_RESTARTED
from rollout_ros.hardware.emulator.pty_bus import BusFaults

POLL_S = 0.05
# Time constant of the position response [s] is STIFFNESS_S / kp: kp 240
# (OpenArm's shoulder) settles in tens of ms, kp 25 (its wrist) in ~0.3 s.
STIFFNESS_S = 2.0
MULTICAST_GROUP = '239.74.163.2'

# OpenArm: (send id, receive id, model) of joint_1..joint_7 and the gripper.
OPENARM_MOTORS = (
    (0x01, 0x11, 'dm8009'),
    (0x02, 0x12, 'dm8009'),
    (0x03, 0x13, 'dm4340'),
    (0x04, 0x14, 'dm4340'),
    (0x05, 0x15, 'dm4310'),
    (0x06, 0x16, 'dm4310'),
    (0x07, 0x17, 'dm4310'),
    (0x08, 0x18, 'dm4310'),
)


class EmulatedDamiaoMotor:
    def __init__(self, send_id: int, recv_id: int, model: str, position: float = 0.0):
        proto.check_model(model)
        self.send_id, self.recv_id, self.model = send_id, recv_id, model
        self.position = float(position)  # rad, from the motor's zero
        self.velocity = 0.0
        self.torque = 0.0
        self.enabled = False
        self.fault = 0  # a proto.FAULTS code, 0 = none
        self.target = (self.position, 0.0, 0.0, 0.0, 0.0)  # q, dq, kp, kd, tau
        self.stiffness_s = STIFFNESS_S  # larger: a heavier, slower joint
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def set_actual_position(self, position: float) -> None:
        """Where the shaft is (a hand moving a limp motor)."""
        with self._lock:
            self._update()
            self.position = float(position)

    def handle(self, arbitration_id: int, data: bytes) -> bytes | None:
        """The state reply to one frame addressed to this motor, if any."""
        with self._lock:
            self._update()
            if arbitration_id == proto.PARAM_ID:
                if data[2] != proto.CMD_REFRESH:
                    return None
            elif bytes(data[:7]) == b'\xff' * 7 and data[7] in (
                proto.CMD_ENABLE,
                proto.CMD_DISABLE,
                proto.CMD_SET_ZERO,
            ):
                if data[7] == proto.CMD_ENABLE and not self.fault:
                    self.enabled = True
                    self.target = (self.position, 0.0, 0.0, 0.0, 0.0)  # no goal until an MIT command
                elif data[7] == proto.CMD_DISABLE:
                    self.enabled = False
                elif not self.enabled:
                    self.position, self.target = 0.0, (0.0, 0.0, 0.0, 0.0, 0.0)
            elif len(data) >= 8:
                self.target = proto.decode_mit(self.model, bytes(data[:8]))
            else:
                return None
            return self._state()

    def _state(self) -> bytes:
        status = self.fault or (proto.STATUS_ENABLED if self.enabled else proto.STATUS_DISABLED)
        return proto.encode_state(self.model, self.send_id, status, self.position, self.velocity, self.torque)

    def _update(self) -> None:
        now = time.monotonic()
        dt, self._last = now - self._last, now
        q, dq, kp, kd, tau = self.target
        if not self.enabled or dt <= 0:
            self.velocity = 0.0 if not self.enabled else self.velocity
            self.torque = 0.0 if not self.enabled else self.torque
            return
        before = self.position
        if kp > 0:
            self.position = q + (before - q) * math.exp(-dt * kp / self.stiffness_s)
        else:
            self.position += dq * dt  # pure damping: the shaft follows the velocity goal
        self.velocity = (self.position - before) / dt
        tmax = proto.MODEL_LIMITS[self.model][2]
        self.torque = max(-tmax, min(tmax, kp * (q - self.position) + kd * (dq - self.velocity) + tau))


class CanFaults(BusFaults):
    """BusFaults for CAN: a dropped reply never goes out; a corrupted one goes
    out cut short (what survives the CRC of a real bus as a wrong length)."""

    def apply(self, reply: bytes) -> bytes:
        out = super().apply(reply)
        return out if out in (b'', reply) else reply[:3]


class DamiaoBusEmulator:
    """Motors on one CAN channel, served from a thread."""

    def __init__(
        self,
        motors: list[EmulatedDamiaoMotor],
        interface: str = 'virtual',
        channel: str = '',
        fd: bool = True,
        seed: int | None = None,
    ):
        self.motors = {m.send_id: m for m in motors}
        self.interface = interface
        self.channel = channel or default_channel(interface)
        self.fd = fd
        self.faults = CanFaults(seed)
        self.silent: set[int] = set()  # send ids that stopped answering
        self.bus_is_off = False
        self.mit_commands: list[tuple[float, int, float]] = []  # (time, send id, goal [rad])
        self._bus: can.BusABC | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    @property
    def port(self) -> str:
        """What the driver passes as its port (robot_port)."""
        return self.channel

    def motor(self, send_id: int) -> EmulatedDamiaoMotor:
        return self.motors[send_id]

    def start(self) -> str:
        kwargs = dict(interface=self.interface, fd=self.fd)
        if self.interface == 'udp_multicast':
            group, _, port = self.channel.rpartition(':')
            kwargs.update(channel=group, port=int(port))
        else:
            kwargs.update(channel=self.channel)
        self._bus = can.Bus(**kwargs)
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name=f'damiao-emulator-{self.channel}', daemon=True)
        self._thread.start()
        return self.channel

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._bus is not None:
            self._bus.shutdown()
            self._bus = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- fault knobs -------------------------------------------------------------------

    def silence(self, *send_ids: int) -> None:
        """These motors (all when none given) stop answering, as if unpowered."""
        with self._lock:
            self.silent |= set(send_ids or self.motors)

    def bus_off(self) -> None:
        """The controller goes bus-off: one error frame, then nothing answers."""
        with self._lock:
            self.bus_is_off = True
        self._bus.send(
            can.Message(arbitration_id=CAN_ERR_BUSOFF, is_error_frame=True, is_extended_id=False, data=bytes(8))
        )

    def clear_faults(self) -> None:
        """Everything answers again (after a bus-off: the controller restarted)."""
        with self._lock:
            self.silent.clear()
            was_off, self.bus_is_off = self.bus_is_off, False
        self.faults.clear()
        if was_off and self._bus is not None:
            self._bus.send(
                can.Message(arbitration_id=CAN_ERR_RESTARTED, is_error_frame=True, is_extended_id=False, data=bytes(8))
            )

    def clear_mit_commands(self) -> None:
        with self._lock:
            self.mit_commands.clear()

    # -- serving ----------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._bus.recv(POLL_S)
            except (can.CanError, OSError, ValueError):
                break  # closed under us
            if msg is None or msg.is_error_frame or msg.is_remote_frame:
                continue
            data = bytes(msg.data)
            if msg.arbitration_id == proto.PARAM_ID and len(data) >= 3:
                motor = self.motors.get(data[0] | (data[1] << 8))
            else:
                motor = self.motors.get(msg.arbitration_id)
            if motor is None:
                continue
            with self._lock:
                if self.bus_is_off or motor.send_id in self.silent:
                    continue
            reply = motor.handle(msg.arbitration_id, data)
            if msg.arbitration_id == motor.send_id and len(data) == 8 and data[:7] != b'\xff' * 7:
                with self._lock:
                    self.mit_commands.append((time.monotonic(), motor.send_id, motor.target[0]))
            if reply is None:
                continue
            reply = self.faults.apply(reply)
            if not reply:
                continue
            try:
                self._bus.send(
                    can.Message(
                        arbitration_id=motor.recv_id,
                        data=reply,
                        is_fd=msg.is_fd,
                        bitrate_switch=msg.bitrate_switch,
                        is_extended_id=False,
                    )
                )
            except (can.CanError, OSError):
                break


# -- transports ----------------------------------------------------------------------


def vcan_devices() -> list[str]:
    """SocketCAN virtual devices this machine has up (none without the vcan module)."""
    found = []
    for dev in sorted(Path('/sys/class/net').glob('vcan*')):
        try:
            if (dev / 'operstate').read_text().strip() in ('up', 'unknown'):
                found.append(dev.name)
        except OSError:
            continue
    return found


def default_channel(interface: str) -> str:
    if interface == 'udp_multicast':
        # A port of its own per bus: every socket on the port sees every
        # group's traffic, and other runs on this machine use the interface too.
        return f'{MULTICAST_GROUP}:{random.randint(20000, 60000)}'
    if interface == 'virtual':
        return f'damiao-{uuid.uuid4().hex[:8]}'
    raise ValueError(f'no default channel for {interface!r}')


def pick_transport(buses: int = 1) -> tuple[str, list[str], str]:
    """(interface, channels, why) for emulated arms shared across processes:
    vcan devices when the kernel has enough of them, else udp_multicast."""
    vcan = vcan_devices()
    if len(vcan) >= buses:
        return 'socketcan', vcan[:buses], f'SocketCAN virtual devices {", ".join(vcan[:buses])}'
    ports = random.sample(range(20000, 60000), buses)
    why = 'no vcan device (the kernel lacks the vcan module or none is up): python-can udp_multicast on this host'
    return 'udp_multicast', [f'{MULTICAST_GROUP}:{p}' for p in ports], why


def openarm_motors(initial: list[float] | None = None) -> list[EmulatedDamiaoMotor]:
    initial = initial or [0.0] * len(OPENARM_MOTORS)
    return [EmulatedDamiaoMotor(s, r, model, q) for (s, r, model), q in zip(OPENARM_MOTORS, initial)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--interface', default='auto', help="python-can interface; 'auto' = pick_transport()")
    p.add_argument('--channels', default='', help='comma-separated channels, one emulated OpenArm each')
    p.add_argument('--arms', type=int, default=1, help='how many arms when --channels is not given')
    p.add_argument('--initial', default='', help='initial joint positions [rad], 8 per arm, comma-separated')
    p.add_argument('--drop-probability', type=float, default=0.0)
    p.add_argument('--corrupt-probability', type=float, default=0.0)
    args = p.parse_args(argv)
    if args.interface == 'auto':
        interface, channels, why = pick_transport(args.arms)
    else:
        interface, why = args.interface, f'interface {args.interface} as asked'
        channels = args.channels.split(',') if args.channels else [default_channel(interface) for _ in range(args.arms)]
    values = [float(x) for x in args.initial.split(',') if x.strip()]
    if values and len(values) != 8 * len(channels):
        p.error(f'--initial takes 8 values per arm ({8 * len(channels)}), got {len(values)}')
    emulators = []
    for i, channel in enumerate(channels):
        emu = DamiaoBusEmulator(openarm_motors(values[8 * i : 8 * i + 8] or None), interface, channel)
        emu.faults.drop_replies(0, args.drop_probability)
        emu.faults.corrupt_checksums(0, args.corrupt_probability)
        emulators.append(emu)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    for emu in emulators:
        emu.start()
    try:
        print(f'TRANSPORT {interface} ({why})', flush=True)
        print(f'PORT {",".join(channels)}', flush=True)
        while not stop.wait(0.2):
            pass
    finally:
        for emu in emulators:
            emu.stop()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
