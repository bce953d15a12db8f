# SPDX-License-Identifier: Apache-2.0
"""Driver-side access to a Feetech STS bus (SO-100 / SO-101), over pyserial.

Same interface and error semantics as DynamixelBus; the protocol is ours
(feetech/protocol.py) rather than an SDK's, so the wait for replies blocks
in the kernel instead of polling in Python.
"""

import logging
import threading
import time

import serial

from rollout_ros.hardware.bus_errors import PORT_ERRORS, BusError, ServoBusLifecycle
from rollout_ros.hardware.feetech import control_table as ct
from rollout_ros.hardware.feetech import protocol as proto

logger = logging.getLogger(__name__)

# Upper bound of one blocking read. pyserial's read(n) returns as soon as n
# bytes are in, so this only matters while a reply is late or missing; the
# wait happens in select() without the GIL, unlike the SDKs' busy loops that
# starved a policy running in the same process.
READ_POLL_S = 0.002
# Allowed on top of the bytes' time on the wire: the servos' return delay
# (500 us each at the factory setting) and USB adapters that pass bytes on
# in latency-timer chunks. lerobot's Feetech bus uses the same 50 ms.
REPLY_MARGIN_S = 0.05
# A stuck adapter must fail the write instead of blocking the control loop.
WRITE_TIMEOUT_S = 0.5

_LOCK_ADDR = ct.CONTROL_TABLE['Lock'][0]


class FeetechBus(ServoBusLifecycle):
    def __init__(
        self,
        port: str,
        motors: dict[str, tuple[int, str]],
        baudrate: int = 1_000_000,
        read_retries: int = 2,
        write_retries: int | None = None,
    ):
        for name, (_, model) in motors.items():
            if model not in ct.MODEL_NUMBER:
                raise ValueError(f'motor {name!r}: unknown model {model!r}; known: {sorted(ct.MODEL_NUMBER)}')
        ids = [servo_id for servo_id, _ in motors.values()]
        if len(set(ids)) != len(ids):
            raise ValueError(f'duplicate servo ids in {motors}')
        if any(not 0 <= i <= proto.MAX_ID for i in ids):
            raise ValueError(f'servo ids must be 0..{proto.MAX_ID}: {motors}')
        write_retries = read_retries if write_retries is None else write_retries
        if read_retries < 0 or write_retries < 0:
            raise ValueError('read_retries and write_retries must be >= 0')
        self.port = port
        self.motors = dict(motors)
        self.baudrate = baudrate
        self.read_retries = read_retries
        # Register writes (torque, lock, gains, calibration) are acknowledged
        # and idempotent: a lost ack is retried like a lost read reply.
        self.write_retries = write_retries
        self._serial: serial.Serial | None = None
        self._parser = proto.PacketParser()
        # Requests of the control loop are identical every cycle: built once.
        self._sync_read_requests: dict[tuple[str, tuple[int, ...]], bytes] = {}
        self._sync_write_frames: dict[tuple[str, tuple[int, ...]], bytearray] = {}
        # Lock register value we last wrote per servo; absent = not known.
        self._eeprom_locked: dict[int, bool] = {}
        self._alarms: dict[int, int] = {}
        # One transaction at a time: replies are matched to requests by order.
        self._lock = threading.Lock()

    # -- connection ------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._serial is not None

    def connect(self) -> None:
        if self.is_connected:
            return
        try:
            port = serial.Serial(self.port, self.baudrate, timeout=READ_POLL_S, write_timeout=WRITE_TIMEOUT_S)
        except (OSError, ValueError) as exc:  # ValueError: a baud rate the port cannot do
            raise BusError(
                f'cannot open servo port {self.port!r} ({exc}); check robot_port: is the arm '
                'powered and its USB cable connected?'
            ) from exc
        try:
            # FTDI/CH34x adapters otherwise hold replies back for their 16 ms
            # latency timer; ptys and some drivers do not support the flag.
            port.set_low_latency_mode(True)
        except (AttributeError, OSError, ValueError):
            pass
        self._serial = port
        self._eeprom_locked.clear()
        self._alarms.clear()
        try:
            self._check_motors()
        except BaseException:
            self._close()
            raise

    def _check_motors(self) -> None:
        missing, wrong = [], []
        for name, (servo_id, model) in self.motors.items():
            model_number = self._model_number(servo_id)
            if model_number is None:
                missing.append(f'{name} (id {servo_id})')
            elif model_number != ct.MODEL_NUMBER[model]:
                wrong.append(
                    f'{name} (id {servo_id}) is model number {model_number}, '
                    f'expected {ct.MODEL_NUMBER[model]} ({model})'
                )
        problems = []
        if missing:
            problems.append(f'no answer from {", ".join(missing)}: check power, cabling and ids/baud rate')
        if wrong:
            problems.append('wrong servo model: ' + '; '.join(wrong))
        if problems:
            raise BusError(f'servo bus {self.port!r} at {self.baudrate} baud: ' + '. '.join(problems))

    def _model_number(self, servo_id: int) -> int | None:
        # Feetech's PING reply carries no model number: ping, then read it.
        if not self._request(proto.encode_packet(servo_id, proto.PING), (servo_id,), 0)[0]:
            return None
        addr, size, _ = ct.lookup('Model_Number')
        request = proto.encode_packet(servo_id, proto.READ, bytes([addr, size]))
        replies, _ = self._request(request, (servo_id,), size)
        return int.from_bytes(replies[servo_id].data, 'little') if replies else None

    def _close(self) -> None:
        port, self._serial = self._serial, None
        self._sync_read_requests.clear()
        self._sync_write_frames.clear()
        if port is not None:
            try:
                port.close()
            except PORT_ERRORS:
                pass  # already gone with the adapter

    # -- single-servo access -----------------------------------------------------

    def read(self, register: str, motor: str) -> int:
        addr, size, _ = ct.lookup(register)
        servo_id = self._id(motor)
        request = proto.encode_packet(servo_id, proto.READ, bytes([addr, size]))
        replies, bad = self._request(request, (servo_id,), size)
        if not replies:
            raise BusError(
                f'read {register} from {motor} (id {servo_id}) on {self.port!r} failed after '
                f'{self.read_retries + 1} attempts: {_no_reply_text(bad)}'
            )
        return ct.decode_value(register, int.from_bytes(replies[servo_id].data, 'little'))

    def write(self, register: str, motor: str, value: int) -> None:
        addr, size, _ = ct.lookup(register)
        servo_id = self._id(motor)
        data = ct.encode_value(register, value).to_bytes(size, 'little')
        what = f'write {register}={value} to {motor} (id {servo_id})'
        with self._lock:
            if ct.is_eeprom(addr) and self._eeprom_locked.get(servo_id, True):
                # A locked STS applies EEPROM writes but forgets them at the
                # next power-up; lerobot unlocks for the same reason.
                self._write_locked(servo_id, _LOCK_ADDR, b'\x00', f'unlock EEPROM of {motor} (id {servo_id})')
                self._eeprom_locked[servo_id] = False
            self._write_locked(servo_id, addr, data, what)
            if addr == _LOCK_ADDR:
                self._eeprom_locked[servo_id] = bool(value)

    def _write_locked(self, servo_id: int, addr: int, data: bytes, what: str) -> None:
        request = proto.encode_packet(servo_id, proto.WRITE, bytes([addr]) + data)
        bad_total = 0
        for _ in range(self.write_retries + 1):
            replies, bad = self._transact(request, (servo_id,), 0)
            if replies:
                return
            bad_total += bad
        raise BusError(
            f'{what} on {self.port!r} failed after {self.write_retries + 1} attempts: {_no_reply_text(bad_total)}'
        )

    # -- group access (the control loop) ---------------------------------------------

    def sync_read(self, register: str, motors: list[str] | None = None) -> dict[str, int]:
        addr, size, _ = ct.lookup(register)
        names = list(self.motors) if motors is None else list(motors)
        ids = tuple(self._id(m) for m in names)
        request = self._sync_read_requests.get((register, ids))
        if request is None:
            request = proto.encode_packet(proto.BROADCAST_ID, proto.SYNC_READ, bytes([addr, size, *ids]))
            self._sync_read_requests[(register, ids)] = request
        replies, bad = self._request(request, ids, size)
        if len(replies) < len(ids):
            silent = [f'{n} (id {i})' for n, i in zip(names, ids) if i not in replies]
            raise BusError(
                f'sync read of {register} from {names} on {self.port!r} failed after '
                f'{self.read_retries + 1} attempts: {_no_reply_text(bad)}; '
                f'on the last one no valid reply from {", ".join(silent)}'
            )
        return {
            name: ct.decode_value(register, int.from_bytes(replies[i].data, 'little')) for name, i in zip(names, ids)
        }

    def sync_write(self, register: str, values: dict[str, int]) -> None:
        if not values:
            return
        addr, size, _ = ct.lookup(register)
        ids = tuple(self._id(m) for m in values)
        raw = [ct.encode_value(register, v) for v in values.values()]  # ValueError before any traffic
        with self._lock:
            frame = self._sync_write_frames.get((register, ids))
            if frame is None:
                params = bytearray([addr, size])
                for servo_id in ids:
                    params += bytes([servo_id]) + bytes(size)
                frame = bytearray(proto.encode_packet(proto.BROADCAST_ID, proto.SYNC_WRITE, bytes(params)))
                self._sync_write_frames[(register, ids)] = frame
            # FF FF id len instr addr size, then (id, value) per servo.
            pos = 8
            for value in raw:
                frame[pos : pos + size] = value.to_bytes(size, 'little')
                pos += 1 + size
            frame[-1] = proto.checksum(frame[2:-1])
            try:
                self._port().write(frame)
            except PORT_ERRORS as exc:
                raise self._port_error(exc) from exc

    def set_torque(self, enabled: bool, motors: list[str] | None = None) -> None:
        # One acknowledged write per servo rather than a silent sync write: a
        # servo left limp (or stiff) without anyone noticing is a safety issue.
        # Lock follows torque as lerobot sets it: a servo left stiff is also
        # one whose EEPROM a stray write cannot change for good.
        failures = []
        for motor in self.motors if motors is None else motors:
            try:
                self.write('Torque_Enable', motor, int(enabled))
                self.write('Lock', motor, int(enabled))
            except BusError as exc:
                failures.append(str(exc))
        if failures:
            raise BusError(f'torque {"enable" if enabled else "disable"} failed: ' + '; '.join(failures))

    # -- transactions ----------------------------------------------------------------

    def _request(self, request: bytes, ids: tuple[int, ...], data_len: int) -> tuple[dict[int, proto.Packet], int]:
        """Send until every id answered, at most 1 + read_retries times.

        Returns the last attempt's replies and the bad checksums seen in all.
        """
        bad_total = 0
        for _ in range(self.read_retries + 1):
            with self._lock:
                replies, bad = self._transact(request, ids, data_len)
            bad_total += bad
            if len(replies) == len(ids):
                break
        return replies, bad_total

    def _transact(self, request: bytes, ids: tuple[int, ...], data_len: int) -> tuple[dict[int, proto.Packet], int]:
        """One request and the status packets of `data_len` bytes it gets from
        `ids` before the deadline, plus the count of bad checksums. The caller
        holds self._lock."""
        port = self._port()
        expected = len(ids) * (proto.OVERHEAD + data_len)
        replies: dict[int, proto.Packet] = {}
        checksum_errors = self._parser.checksum_errors
        try:
            # Late replies to an earlier, timed-out request would otherwise be
            # taken for answers to this one.
            port.reset_input_buffer()
            self._parser.reset()
            port.write(request)
            deadline = time.monotonic() + (len(request) + expected) * 10 / self.baudrate + REPLY_MARGIN_S
            received = 0
            while len(replies) < len(ids) and time.monotonic() < deadline:
                chunk = port.read(max(1, expected - received))
                received += len(chunk)
                for packet in self._parser.feed(chunk):
                    if packet.id in ids and len(packet.params) == data_len:
                        replies[packet.id] = packet
        except PORT_ERRORS as exc:
            raise self._port_error(exc) from exc
        self._note_alarms(replies)
        return replies, self._parser.checksum_errors - checksum_errors

    def _note_alarms(self, replies: dict[int, proto.Packet]) -> None:
        # Alarm bits come with every reply while the condition lasts and the
        # instruction still ran: report changes, do not fail the transaction
        # (a gripper holding an object would otherwise stop the control loop).
        for servo_id, packet in replies.items():
            if packet.error != self._alarms.get(servo_id, 0):
                self._alarms[servo_id] = packet.error
                if packet.error:
                    logger.warning('servo %s on %s reports %s', servo_id, self.port, proto.describe_error(packet.error))
                else:
                    logger.info('servo %s on %s: alarm cleared', servo_id, self.port)

    # -- helpers --------------------------------------------------------------------

    def _port(self) -> serial.Serial:
        if self._serial is None:
            raise BusError(f'servo bus {self.port!r} is not connected; call connect() first')
        return self._serial

    def _port_error(self, exc: BaseException) -> BusError:
        return BusError(f'servo port {self.port!r} failed: {exc} (adapter unplugged or port closed?)')

    def _id(self, motor: str) -> int:
        try:
            return self.motors[motor][0]
        except KeyError:
            raise KeyError(f'unknown motor {motor!r}; known: {list(self.motors)}') from None


def _no_reply_text(bad_checksums: int) -> str:
    text = 'no status packet before the timeout'
    if bad_checksums:
        text += f' ({bad_checksums} packet(s) with a bad checksum)'
    return text
