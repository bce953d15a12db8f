# SPDX-License-Identifier: Apache-2.0
"""Driver-side access to Damiao motors in MIT mode over CAN, through python-can.

Same interface and error semantics as the Dynamixel and Feetech buses
(connect, read, write, sync_read, sync_write, set_torque, disconnect; every
failure a BusError), in the units the motors speak: positions are radians at
the shaft, so 'Goal_Position' is an MIT command with the motor's kp/kd and
zero velocity and feed-forward torque, and 'Present_Position' a refresh.

Every frame sent gets a state reply on the motor's receive id; replies are
matched by that id, never by order, and a transaction resends to the motors
that stayed silent before it fails. The kernel checks CAN frames' CRC, so a
bad frame reaches us as one of the wrong length, or never.
"""

import logging
import threading
import time

import can

from rollout_ros.hardware.bus_errors import BusError, ServoBusLifecycle
from rollout_ros.hardware.damiao import protocol as proto

logger = logging.getLogger(__name__)

# OpenArm's CAN FD set-up (and LeRobot's defaults): 1 Mbit/s arbitration,
# 5 Mbit/s data phase.
DEFAULT_BITRATE = 1_000_000
DEFAULT_DATA_BITRATE = 5_000_000
# Longest wait for all replies of one transaction. Eight motors answer within
# about a millisecond on the wire; the margin covers USB adapters and the
# emulator on a loaded machine. It only matters while a motor is silent.
REPLY_TIMEOUT_S = 0.02
# Gains until the robot sets its own: soft enough that a forgotten set-up
# does not snap the arm.
DEFAULT_GAINS = (10.0, 0.5)
# SocketCAN error classes (linux/can/error.h): the controller went bus-off,
# and it was restarted (by restart-ms or `ip link set ... type can restart`).
CAN_ERR_BUSOFF = 0x40
CAN_ERR_RESTARTED = 0x100

REGISTERS = ('Present_Position', 'Present_Velocity', 'Present_Torque', 'Goal_Position', 'Kp', 'Kd')


def _socketcan_fix(channel: str, bitrate: int, data_bitrate: int, fd: bool) -> str:
    fd_args = f' dbitrate {data_bitrate} fd on' if fd else ''
    return f'bring it up with: sudo ip link set {channel} up type can bitrate {bitrate}{fd_args}'


class DamiaoBus(ServoBusLifecycle):
    def __init__(
        self,
        channel: str,
        motors: dict[str, tuple[int, int, str]],
        *,
        interface: str = 'socketcan',
        fd: bool = True,
        bitrate: int = DEFAULT_BITRATE,
        data_bitrate: int = DEFAULT_DATA_BITRATE,
        gains: dict[str, tuple[float, float]] | None = None,
        read_retries: int = 2,
        reply_timeout_s: float = REPLY_TIMEOUT_S,
    ):
        """`motors`: name -> (send id, receive id, model); `channel` is the CAN
        interface (can0), or for udp_multicast a group address with an
        optional `:port`."""
        for name, (_, _, model) in motors.items():
            if model not in proto.MODEL_LIMITS:
                raise ValueError(f'motor {name!r}: unknown model {model!r}; known: {sorted(proto.MODEL_LIMITS)}')
        ids = [i for send, recv, _ in motors.values() for i in (send, recv)]
        if len(set(ids)) != len(ids) or proto.PARAM_ID in ids:
            raise ValueError(f'send and receive ids must all differ (and not be 0x7FF): {motors}')
        if read_retries < 0:
            raise ValueError('read_retries must be >= 0')
        self.port = channel
        self.motors = dict(motors)
        self.interface = interface
        self.fd = fd
        self.bitrate = bitrate
        self.data_bitrate = data_bitrate
        self.read_retries = read_retries
        self.reply_timeout_s = reply_timeout_s
        self.gains = {m: tuple((gains or {}).get(m, DEFAULT_GAINS)) for m in motors}
        self.states: dict[str, proto.MotorState] = {}
        self._by_recv = {recv: name for name, (_, recv, _) in motors.items()}
        self._goals: dict[str, float] = {}
        self._faults: dict[str, int] = {}
        self._bus_off = False
        self._bus: can.BusABC | None = None
        # One transaction at a time: a reply must meet the request that asked for it.
        self._lock = threading.Lock()

    # -- connection ------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._bus is not None

    def connect(self) -> None:
        if self.is_connected:
            return
        try:
            self._bus = can.Bus(**self._bus_kwargs())
        except (can.CanError, OSError, ValueError, ImportError) as exc:
            fix = (
                _socketcan_fix(self.port, self.bitrate, self.data_bitrate, self.fd)
                if self.interface == 'socketcan'
                else f'check the {self.interface} channel {self.port!r}'
            )
            raise BusError(f'cannot open CAN bus {self.port!r} ({self.interface}): {exc}; {fix}') from exc
        self._faults.clear()
        self._bus_off = False
        try:
            self._check_motors()
        except BaseException:
            self._close()
            raise

    def _bus_kwargs(self) -> dict:
        kwargs = dict(interface=self.interface, channel=self.port, fd=self.fd)
        if self.interface == 'udp_multicast':
            group, _, port = self.port.rpartition(':') if self.port.count('.') == 3 else ('', '', '')
            if group:
                kwargs.update(channel=group, port=int(port))
        elif self.interface != 'socketcan':
            # SocketCAN takes its bitrates from `ip link`; adapters opened by
            # python-can itself (pcan, slcan, ...) are set here.
            kwargs.update(bitrate=self.bitrate)
            if self.fd:
                kwargs.update(data_bitrate=self.data_bitrate)
        return kwargs

    def _check_motors(self) -> None:
        try:
            self.refresh()
        except BusError as exc:
            hint = (
                "check the 24 V supply, the CAN wiring and termination, and the motors' CAN ids (Damiao debugging tool)"
            )
            if self.interface == 'socketcan':
                hint += f", and that {self.port} runs at the motors' rates ({self.bitrate}/{self.data_bitrate})"
            raise BusError(f'{exc}: {hint}') from exc

    def _close(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            try:
                bus.shutdown()
            except (can.CanError, OSError):
                pass  # already gone with the adapter

    # -- the bus interface -----------------------------------------------------------

    def read(self, register: str, motor: str) -> float:
        return self.sync_read(register, [motor])[motor]

    def write(self, register: str, motor: str, value: float) -> None:
        self.sync_write(register, {motor: value})

    def sync_read(self, register: str, motors: list[str] | None = None) -> dict[str, float]:
        field = {'Present_Position': 'position', 'Present_Velocity': 'velocity', 'Present_Torque': 'torque'}.get(
            register
        )
        if field is None:
            raise ValueError(
                f'cannot read {register!r} from a Damiao motor; readable: '
                'Present_Position, Present_Velocity, Present_Torque'
            )
        states = self.refresh(motors)
        return {m: getattr(s, field) for m, s in states.items()}

    def sync_write(self, register: str, values: dict[str, float]) -> None:
        for m in values:
            self._check_name(m)
        if register in ('Kp', 'Kd'):
            rng = proto.KP_RANGE if register == 'Kp' else proto.KD_RANGE
            for m, v in values.items():
                if not rng[0] <= v <= rng[1]:
                    raise ValueError(f'{register} of {m} must be within {rng}, got {v}')
                kp, kd = self.gains[m]
                self.gains[m] = (v, kd) if register == 'Kp' else (kp, v)
            return
        if register != 'Goal_Position':
            raise ValueError(
                f'cannot write {register!r} to a Damiao motor in MIT mode; writable: Goal_Position, Kp, Kd'
            )
        self.mit_control({m: (q, 0.0, *self.gains[m], 0.0) for m, q in values.items()})

    def set_torque(self, enabled: bool, motors: list[str] | None = None) -> None:
        names = self._names(motors)
        states = self._exchange(
            {
                m: (self._send_id(m), proto.command_frame(proto.CMD_ENABLE if enabled else proto.CMD_DISABLE))
                for m in names
            },
            f'torque {"enable" if enabled else "disable"}',
        )
        faulted = [f'{m}: {s.fault}' for m, s in states.items() if s.fault]
        if enabled and faulted:
            raise BusError(f'torque enable on {self.port!r} failed, motors report faults: ' + '; '.join(faulted))
        if enabled:
            # An enabled motor acts on its last MIT command: make it the goal
            # we hold (the follower sends goal = present before torque on).
            held = {m: q for m, q in self._goals.items() if m in names}
            if held:
                self.sync_write('Goal_Position', held)

    # -- MIT mode ---------------------------------------------------------------------

    def mit_control(self, commands: dict[str, tuple[float, float, float, float, float]]) -> None:
        """{motor: (position [rad], velocity [rad/s], kp, kd, torque [N m])}."""
        frames = {}
        for m, (q, dq, kp, kd, tau) in commands.items():
            model = self.motors[self._check_name(m)][2]
            frames[m] = (self._send_id(m), proto.encode_mit(model, q, dq, kp, kd, tau))
        self._exchange(frames, 'MIT command')
        self._goals.update({m: c[0] for m, c in commands.items()})

    def refresh(self, motors: list[str] | None = None) -> dict[str, proto.MotorState]:
        """Each motor's state, asked for now."""
        names = self._names(motors)
        return self._exchange(
            {m: (proto.PARAM_ID, proto.refresh_frame(self._send_id(m))) for m in names}, 'state refresh'
        )

    def set_zero(self, motors: list[str] | None = None) -> None:
        """Make the present position each motor's zero (torque must be off)."""
        names = self._names(motors)
        enabled = [m for m, s in self.refresh(names).items() if s.enabled]
        if enabled:
            raise BusError(f'refusing to zero {enabled} with torque on: disable torque first')
        self._exchange({m: (self._send_id(m), proto.command_frame(proto.CMD_SET_ZERO)) for m in names}, 'set zero')
        self._goals.clear()

    # -- transactions ----------------------------------------------------------------

    def _exchange(self, frames: dict[str, tuple[int, bytes]], what: str) -> dict[str, proto.MotorState]:
        """Send each motor its frame and collect its state reply; motors that
        stay silent get the frame again, at most read_retries more times."""
        got: dict[str, proto.MotorState] = {}
        bad = 0
        pending = list(frames)
        for _ in range(self.read_retries + 1):
            with self._lock:
                bus = self._can()
                self._drain(bus)
                if self._bus_off:
                    # Nothing goes out until the controller restarts.
                    raise BusError(
                        f'CAN controller on {self.port!r} is bus-off: check wiring, termination '
                        'and that every node runs the same bitrates'
                    )
                for m in pending:
                    self._send(bus, *frames[m])
                replies, corrupt = self._collect(bus, pending)
            got.update(replies)
            bad += corrupt
            pending = [m for m in pending if m not in got]
            if not pending:
                break
        self._note_faults(got)
        self.states.update(got)
        if pending:
            silent = ', '.join(f'{m} (send 0x{self._send_id(m):02X}, recv 0x{self.motors[m][1]:02X})' for m in pending)
            extra = f' ({bad} malformed replies)' if bad else ''
            raise BusError(
                f'{what} on {self.port!r} failed after {self.read_retries + 1} attempts: no reply from {silent}{extra}'
            )
        return {m: got[m] for m in frames}

    def _send(self, bus: can.BusABC, arbitration_id: int, data: bytes) -> None:
        # FD frames without bit-rate switching, as LeRobot sends them to OpenArms:
        # 8-byte payloads gain little from the data phase.
        msg = can.Message(arbitration_id=arbitration_id, data=data, is_extended_id=False, is_fd=self.fd)
        try:
            bus.send(msg, timeout=self.reply_timeout_s)
        except (can.CanError, OSError) as exc:
            raise BusError(
                f'CAN send on {self.port!r} failed: {exc} (interface down, adapter unplugged, '
                'or the controller is bus-off: check wiring and termination)'
            ) from exc

    def _collect(self, bus: can.BusABC, motors: list[str]) -> tuple[dict[str, proto.MotorState], int]:
        wanted = {self.motors[m][1]: m for m in motors}
        replies: dict[str, proto.MotorState] = {}
        bad = 0
        deadline = time.monotonic() + self.reply_timeout_s
        while len(replies) < len(wanted):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            msg = self._recv(bus, remaining)
            if msg is None:
                break
            motor = wanted.get(msg.arbitration_id)
            if motor is None:
                continue  # another node's traffic, or a reply we stopped waiting for
            try:
                replies[motor] = proto.decode_state(self.motors[motor][2], msg.data)
            except ValueError:
                bad += 1
        return replies, bad

    def _recv(self, bus: can.BusABC, timeout: float) -> can.Message | None:
        """The next data frame within `timeout`; error frames are reported
        (bus-off as a BusError) and skipped."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = bus.recv(max(0.0, deadline - time.monotonic()))
            except (can.CanError, OSError) as exc:
                raise BusError(f'CAN receive on {self.port!r} failed: {exc} (adapter unplugged?)') from exc
            if msg is None or not msg.is_error_frame:
                return msg
            if msg.arbitration_id & CAN_ERR_RESTARTED:
                self._bus_off = False
                logger.info('CAN controller on %s restarted', self.port)
                continue
            if msg.arbitration_id & CAN_ERR_BUSOFF:
                self._bus_off = True
                raise BusError(
                    f'CAN controller on {self.port!r} went bus-off: check wiring, termination '
                    'and that every node runs the same bitrates'
                )
            logger.warning(
                'CAN error frame on %s: class 0x%X data %s', self.port, msg.arbitration_id, bytes(msg.data).hex()
            )

    def _drain(self, bus: can.BusABC) -> None:
        # Late replies to an earlier, timed-out transaction would otherwise be
        # taken as fresh states.
        while self._recv(bus, 0.0) is not None:
            pass

    def _note_faults(self, states: dict[str, proto.MotorState]) -> None:
        # A fault code comes with every reply while it lasts; report changes
        # (the motor disables itself, the next torque enable refuses).
        for m, s in states.items():
            code = s.status if s.fault else 0
            if code != self._faults.get(m, 0):
                self._faults[m] = code
                if code:
                    logger.warning('motor %s on %s reports %s', m, self.port, s.fault)
                else:
                    logger.info('motor %s on %s: fault cleared', m, self.port)

    # -- helpers --------------------------------------------------------------------

    def _can(self) -> can.BusABC:
        if self._bus is None:
            raise BusError(f'CAN bus {self.port!r} is not connected; call connect() first')
        return self._bus

    def _names(self, motors: list[str] | None) -> list[str]:
        return list(self.motors) if motors is None else [self._check_name(m) for m in motors]

    def _check_name(self, motor: str) -> str:
        if motor not in self.motors:
            raise KeyError(f'unknown motor {motor!r}; known: {list(self.motors)}')
        return motor

    def _send_id(self, motor: str) -> int:
        return self.motors[motor][0]
