# SPDX-License-Identifier: Apache-2.0
"""Driver-side access to a Dynamixel X-series bus, through dynamixel_sdk only."""

import threading

import dynamixel_sdk as sdk

from rollout_ros.hardware.bus_errors import (
    PORT_ERRORS,
    BusError,
    ServoBusLifecycle,
)  # BusError still importable from here
from rollout_ros.hardware.dynamixel import control_table as ct

PROTOCOL_VERSION = 2.0
# Bit 7 of the status error byte is the hardware-alert flag: it only says
# "look at Hardware_Error_Status" and the instruction itself still succeeded,
# so it must not fail reads (or the error register could never be read).
_ERROR_MASK = 0x7F
_ERRNUM_ACCESS = 0x07


READ_POLL_S = 0.002


class _Failed(Exception):
    """One attempt of a transaction failed; the text says why."""


class DynamixelBus(ServoBusLifecycle):
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
        ids = [dxl_id for dxl_id, _ in motors.values()]
        if len(set(ids)) != len(ids):
            raise ValueError(f'duplicate servo ids in {motors}')
        write_retries = read_retries if write_retries is None else write_retries
        if read_retries < 0 or write_retries < 0:
            raise ValueError('read_retries and write_retries must be >= 0')
        self.port = port
        self.motors = dict(motors)
        self.baudrate = baudrate
        self.read_retries = read_retries
        # Register writes (torque, gains, calibration) are acknowledged and
        # idempotent: a lost ack is retried like a lost read reply.
        self.write_retries = write_retries
        self._port_handler: sdk.PortHandler | None = None
        self._packet_handler = sdk.PacketHandler(PROTOCOL_VERSION)
        self._sync_readers: dict[tuple[str, tuple[int, ...]], sdk.GroupSyncRead] = {}
        self._sync_writers: dict[str, sdk.GroupSyncWrite] = {}
        # The SDK marks the port busy but does not wait for it; callbacks of a
        # multi-threaded executor would otherwise get spurious COMM_PORT_BUSY.
        self._lock = threading.Lock()
        self._stale_replies = False

    # -- connection ------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._port_handler is not None

    def connect(self) -> None:
        if self.is_connected:
            return
        handler = sdk.PortHandler(self.port)
        if handler.getCFlagBaud(self.baudrate) <= 0:
            raise BusError(f'baudrate {self.baudrate} for {self.port!r} is not supported by dynamixel_sdk')
        try:
            opened = handler.openPort()
            if opened and handler.getBaudRate() != self.baudrate:
                opened = handler.setBaudRate(self.baudrate)
        except OSError as exc:  # pyserial raises instead of returning False
            raise BusError(
                f'cannot open servo port {self.port!r} ({exc}); check robot_port: is the arm '
                'powered and its USB cable connected?'
            ) from exc
        if not opened:
            raise BusError(
                f'cannot open servo port {self.port!r}; check robot_port: is the arm powered '
                'and its USB cable connected?'
            )
        # The SDK opens the port with timeout=0 and polls it in a Python loop
        # until the reply is complete, holding the GIL the whole time: next to
        # a policy in the same process that stalled inference for tens of ms.
        # A short blocking timeout makes each poll wait in the kernel instead;
        # the SDK's own packet timeout still bounds the transaction.
        handler.ser.timeout = READ_POLL_S
        self._port_handler = handler
        try:
            self._check_motors()
        except BaseException:
            self._close()
            raise

    def _check_motors(self) -> None:
        missing, wrong = [], []
        for name, (dxl_id, model) in self.motors.items():
            model_number, result = self._ping(dxl_id)
            if result != sdk.COMM_SUCCESS:
                missing.append(f'{name} (id {dxl_id})')
            elif model_number != ct.MODEL_NUMBER[model]:
                wrong.append(
                    f'{name} (id {dxl_id}) is model number {model_number}, expected {ct.MODEL_NUMBER[model]} ({model})'
                )
        problems = []
        if missing:
            problems.append(f'no answer from {", ".join(missing)}: check power, cabling and ids/baud rate')
        if wrong:
            problems.append('wrong servo model: ' + '; '.join(wrong))
        if problems:
            raise BusError(f'servo bus {self.port!r} at {self.baudrate} baud: ' + '. '.join(problems))

    def _ping(self, dxl_id: int) -> tuple[int, int]:
        def ping():
            model_number, result, _ = self._packet_handler.ping(self._handler(), dxl_id)
            if result != sdk.COMM_SUCCESS:
                raise _Failed(self._packet_handler.getTxRxResult(result))
            return model_number

        try:
            return self._transaction(ping, self.read_retries), sdk.COMM_SUCCESS
        except BusError:
            return 0, sdk.COMM_RX_TIMEOUT

    def _close(self) -> None:
        handler, self._port_handler = self._port_handler, None
        self._sync_readers.clear()
        self._sync_writers.clear()
        if handler is not None and handler.is_open:
            handler.closePort()

    # -- single-servo access -----------------------------------------------------

    def read(self, register: str, motor: str) -> int:
        addr, size, _ = ct.lookup(register)
        dxl_id = self._id(motor)
        what = f'read {register} from {motor} (id {dxl_id})'

        def read_once():
            data, result, error = self._packet_handler.readTxRx(self._handler(), dxl_id, addr, size)
            self._check(result, error, addr)
            if len(data) < size:
                raise _Failed(f'short reply ({len(data)} of {size} bytes)')
            return ct.decode_value(register, int.from_bytes(bytes(data[:size]), 'little'))

        return self._transaction(read_once, self.read_retries, what)

    def write(self, register: str, motor: str, value: int) -> None:
        addr, size, _ = ct.lookup(register)
        dxl_id = self._id(motor)
        data = list(ct.encode_value(register, value).to_bytes(size, 'little'))

        def write_once():
            result, error = self._packet_handler.writeTxRx(self._handler(), dxl_id, addr, size, data)
            self._check(result, error, addr)

        self._transaction(write_once, self.write_retries, f'write {register}={value} to {motor} (id {dxl_id})')

    # -- group access (the control loop) ---------------------------------------------

    def sync_read(self, register: str, motors: list[str] | None = None) -> dict[str, int]:
        addr, size, _ = ct.lookup(register)
        names = list(self.motors) if motors is None else list(motors)
        ids = tuple(self._id(m) for m in names)

        def sync_read_once():
            reader = self._sync_reader(register, ids)
            result = reader.txRxPacket()
            if result != sdk.COMM_SUCCESS:
                raise _Failed(self._packet_handler.getTxRxResult(result))
            silent = [f'id {i}' for i in ids if not reader.isAvailable(i, addr, size)]
            if silent:
                raise _Failed(f'no data from {", ".join(silent)}')
            # getData indexes the reply without checking its length: a short
            # reply raises IndexError inside the SDK, caught as a failed attempt.
            return {name: ct.decode_value(register, reader.getData(i, addr, size)) for name, i in zip(names, ids)}

        return self._transaction(sync_read_once, self.read_retries, f'sync read of {register} from {names}')

    def sync_write(self, register: str, values: dict[str, int]) -> None:
        if not values:
            return
        addr, size, _ = ct.lookup(register)
        params = {self._id(m): list(ct.encode_value(register, v).to_bytes(size, 'little')) for m, v in values.items()}

        def sync_write_once():
            writer = self._sync_writers.get(register)
            if writer is None:
                writer = sdk.GroupSyncWrite(self._handler(), self._packet_handler, addr, size)
                self._sync_writers[register] = writer
            writer.clearParam()
            for dxl_id, data in params.items():
                writer.addParam(dxl_id, data)
            result = writer.txPacket()
            if result != sdk.COMM_SUCCESS:
                raise _Failed(self._packet_handler.getTxRxResult(result))

        # Unacknowledged: a goal is sent once (the next tick sends a fresher one).
        self._transaction(sync_write_once, 0, f'sync write of {register} to {list(values)}')

    def set_torque(self, enabled: bool, motors: list[str] | None = None) -> None:
        # One acknowledged write per servo rather than a silent sync write: a
        # servo left limp (or stiff) without anyone noticing is a safety issue.
        failures = []
        for motor in self.motors if motors is None else motors:
            try:
                self.write('Torque_Enable', motor, int(enabled))
            except BusError as exc:
                failures.append(str(exc))
        if failures:
            raise BusError(f'torque {"enable" if enabled else "disable"} failed: ' + '; '.join(failures))

    # -- transactions ----------------------------------------------------------------

    def _transaction(self, attempt, retries: int, what: str = 'transaction'):
        """Run `attempt()` under the port lock, at most 1 + `retries` times.

        Whatever one attempt raises counts as a failed attempt: pyserial's
        OSError on a hung-up port, and the SDK's own exceptions on malformed
        replies (IndexError in GroupSyncRead.getData on a short one). The SDK
        marks the port busy for a transaction and clears the flag only on its
        normal return paths, so after an exception it is cleared here, or
        every later call would fail with "Port is in use!" instead of the
        real error, and the port would stay unusable after a transient one.
        """
        reason = ''
        for _ in range(retries + 1):
            with self._lock:
                handler = self._handler()
                try:
                    if self._stale_replies:
                        # Late replies to a failed transaction would otherwise be
                        # taken as answers to this one (the SDK matches replies by
                        # id only, and its clearPort flushes output, not input).
                        handler.ser.reset_input_buffer()
                        self._stale_replies = False
                    return attempt()
                except _Failed as exc:
                    reason = str(exc)
                except BusError:
                    raise
                except PORT_ERRORS as exc:
                    reason = f'{exc} (adapter unplugged or port closed?)'
                except Exception as exc:  # noqa: BLE001 - the SDK's errors on a malformed reply
                    reason = f'malformed reply ({type(exc).__name__}: {exc})'
                finally:
                    handler.is_using = False
            self._stale_replies = True
        attempts = f' after {retries + 1} attempts' if retries else ''
        raise BusError(f'{what} on {self.port!r} failed{attempts}: {reason}')

    # -- helpers --------------------------------------------------------------------

    def _handler(self) -> sdk.PortHandler:
        if self._port_handler is None:
            raise BusError(f'servo bus {self.port!r} is not connected; call connect() first')
        return self._port_handler

    def _id(self, motor: str) -> int:
        try:
            return self.motors[motor][0]
        except KeyError:
            raise KeyError(f'unknown motor {motor!r}; known: {list(self.motors)}') from None

    def _sync_reader(self, register: str, ids: tuple[int, ...]) -> sdk.GroupSyncRead:
        reader = self._sync_readers.get((register, ids))
        if reader is None:
            addr, size, _ = ct.lookup(register)
            reader = sdk.GroupSyncRead(self._handler(), self._packet_handler, addr, size)
            for dxl_id in ids:
                reader.addParam(dxl_id)
            self._sync_readers[(register, ids)] = reader
        return reader

    def _check(self, result: int, error: int, addr: int) -> None:
        if result != sdk.COMM_SUCCESS:
            raise _Failed(self._packet_handler.getTxRxResult(result))
        if error & _ERROR_MASK:
            text = self._packet_handler.getRxPacketError(error)
            if addr < ct.EEPROM_END and error & _ERROR_MASK == _ERRNUM_ACCESS:
                text += ' (EEPROM registers can only be written with torque disabled)'
            raise _Failed(f'servo reported {text}')
