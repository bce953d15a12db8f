# SPDX-License-Identifier: Apache-2.0
"""Dynamixel X-series servo bus emulated on a pseudo-terminal.

The driver under test opens the pty slave exactly like /dev/ttyACM0 and talks
Protocol 2.0 to it through dynamixel_sdk; this module plays the servos.
Run standalone with ``python -m rollout_ros.hardware.emulator.servo_bus_emulator``.
"""

import argparse
import sys

from rollout_ros.hardware.dynamixel import control_table as ct
from rollout_ros.hardware.emulator import dynamixel_protocol as proto
from rollout_ros.hardware.emulator.pty_bus import (
    FirstOrderServo,
    PtyBusEmulator,
    add_common_arguments,
    initial_positions,
    int_list,
    serve_until_signal,
)

# Big enough for the whole X-series table including the indirect-data area, so
# reads of registers we do not model return zeros instead of access errors.
TABLE_SIZE = 662
FIRMWARE_VERSION = 52
FIRMWARE_ADDRESS = 6
# Model info/firmware, Registered_Instruction, Hardware_Error_Status and the
# Realtime_Tick..Backup_Ready block are read-only on real servos.
READ_ONLY = frozenset([*range(0, 7), 69, 70, *range(120, 148)])
_GOAL_ADDR = ct.CONTROL_TABLE['Goal_Position'][0]
_TORQUE_ADDR = ct.CONTROL_TABLE['Torque_Enable'][0]
_POSITION_MODES = (ct.POSITION, ct.EXTENDED_POSITION, ct.CURRENT_POSITION)
# Velocity registers count in 0.229 rpm steps.
_TICKS_PER_S_PER_UNIT = 0.229 * ct.RESOLUTION / 60.0

_COMMON_DEFAULTS = {
    'Baud_Rate': 3,
    'Return_Delay_Time': 250,
    'Operating_Mode': ct.POSITION,
    'Moving_Threshold': 10,
    'Temperature_Limit': 70,
    'Max_Position_Limit': ct.RESOLUTION - 1,
    'Min_Position_Limit': 0,
    'Present_Temperature': 30,
}
# Supply voltages in 0.1 V and position gains differ between the 5 V XL330s and
# the 12 V XL430/XM430s; values follow the factory defaults closely enough.
_MODEL_DEFAULTS = {
    'xl330-m077': {
        'Max_Voltage_Limit': 70,
        'Min_Voltage_Limit': 35,
        'Present_Input_Voltage': 50,
        'Current_Limit': 1750,
        'Position_P_Gain': 400,
    },
    'xl330-m288': {
        'Max_Voltage_Limit': 70,
        'Min_Voltage_Limit': 35,
        'Present_Input_Voltage': 50,
        'Current_Limit': 1750,
        'Position_P_Gain': 400,
    },
    'xl430-w250': {
        'Max_Voltage_Limit': 140,
        'Min_Voltage_Limit': 60,
        'Present_Input_Voltage': 120,
        'Temperature_Limit': 72,
        'Position_P_Gain': 640,
        'Position_D_Gain': 4000,
    },
    'xm430-w350': {
        'Max_Voltage_Limit': 160,
        'Min_Voltage_Limit': 95,
        'Present_Input_Voltage': 120,
        'Temperature_Limit': 80,
        'Position_P_Gain': 800,
        'Current_Limit': 1193,
    },
}


class EmulatedServo(FirstOrderServo):
    control_table = ct

    def __init__(self, dxl_id: int, model: str, tau: float = 0.05, position: int = 2048):
        if model not in ct.MODEL_NUMBER:
            raise ValueError(f'unknown model {model!r}; known: {sorted(ct.MODEL_NUMBER)}')
        super().__init__(tau, position)
        self.model = model
        self._pending: tuple[int, bytes] | None = None  # REG_WRITE
        self.table = bytearray(TABLE_SIZE)
        values = {
            **_COMMON_DEFAULTS,
            **_MODEL_DEFAULTS[model],
            'Model_Number': ct.MODEL_NUMBER[model],
            'ID': dxl_id,
            'Goal_Position': position,
        }
        for name, value in values.items():
            self._set(name, value)
        self.table[FIRMWARE_ADDRESS] = FIRMWARE_VERSION
        self._factory_ram = bytes(self.table[ct.EEPROM_END :])
        self._publish()

    # -- bus-facing operations -----------------------------------------------

    def read(self, addr: int, length: int) -> tuple[int, bytes]:
        if addr + length > TABLE_SIZE or length <= 0:
            return proto.ERR_ACCESS, b''
        with self._lock:
            self._update()
            return proto.ERR_OK, bytes(self.table[addr : addr + length])

    def write(self, addr: int, data: bytes) -> int:
        end = addr + len(data)
        if end > TABLE_SIZE or not data or any(a in READ_ONLY for a in range(addr, end)):
            return proto.ERR_ACCESS
        with self._lock:
            torque_was_on = bool(self.table[_TORQUE_ADDR])
            if addr < ct.EEPROM_END and torque_was_on:
                return proto.ERR_ACCESS
            self._update()  # motion so far happened under the old goal
            self.table[addr:end] = data
            if not torque_was_on and self.table[_TORQUE_ADDR]:
                # Torque-on holds the current pose instead of jumping to a stale goal.
                self._set('Goal_Position', self._get('Present_Position'))
            self._publish()
            return proto.ERR_OK

    def reg_write(self, addr: int, data: bytes) -> int:
        with self._lock:
            self._pending = (addr, bytes(data))
            return proto.ERR_OK

    def action(self) -> int:
        with self._lock:
            pending, self._pending = self._pending, None
        return self.write(*pending) if pending else proto.ERR_OK

    def reboot(self) -> None:
        """RAM goes back to factory values (torque off); EEPROM and pose survive."""
        with self._lock:
            self._update()
            self.table[ct.EEPROM_END :] = self._factory_ram
            self._velocity = 0.0
            self._set('Goal_Position', round(self.actual_position) + self._get('Homing_Offset'))
            self._publish()

    # -- physics ---------------------------------------------------------------

    def _target(self) -> float:
        goal = self._get('Goal_Position')
        if self._get('Operating_Mode') == ct.POSITION:
            goal = min(max(goal, self._get('Min_Position_Limit')), self._get('Max_Position_Limit'))
        return goal - self._get('Homing_Offset')

    def _update(self) -> None:
        dt = self._elapsed()
        mode = self._get('Operating_Mode')
        if not self.table[_TORQUE_ADDR]:
            self._halt()
        elif mode in _POSITION_MODES:
            self._track(self._target(), dt)
        elif mode == ct.VELOCITY:
            self._spin(self._get('Goal_Velocity') * _TICKS_PER_S_PER_UNIT, dt)
        else:
            self._halt()  # current/PWM modes: no load model, the shaft stays put
        self._publish()

    def _publish(self) -> None:
        """Refresh the read-only Present_* registers from the physical state."""
        offset = self._get('Homing_Offset')
        present = max(-(2**31), min(2**31 - 1, round(self.actual_position) + offset))
        self._set('Present_Position', present)
        vel_units = round(self._velocity / _TICKS_PER_S_PER_UNIT)
        self._set('Present_Velocity', max(-(2**31), min(2**31 - 1, vel_units)))
        self._set('Moving', int(abs(vel_units) > self._get('Moving_Threshold')))


_GOAL_SPAN = range(_GOAL_ADDR, _GOAL_ADDR + ct.CONTROL_TABLE['Goal_Position'][1])

KOCH_IDS = [1, 2, 3, 4, 5, 6]
KOCH_MODELS = ['xl430-w250', 'xl430-w250', 'xl330-m288', 'xl330-m288', 'xl330-m288', 'xl330-m288']


class ServoBusEmulator(PtyBusEmulator):
    """Dynamixel X-series servos on a pty; see PtyBusEmulator for lifecycle,
    test accessors and fault knobs (emulator.faults, close_port())."""

    def __init__(
        self,
        servos: dict[int, str],
        tau: float = 0.05,
        initial_positions: dict[int, int] | None = None,
        link_path: str | None = None,
    ):
        initial_positions = initial_positions or {}
        emulated = {i: EmulatedServo(i, m, tau, initial_positions.get(i, 2048)) for i, m in sorted(servos.items())}
        super().__init__(emulated, proto.PacketParser(), link_path)

    def _targets(self, dxl_id: int) -> list[EmulatedServo]:
        if dxl_id == proto.BROADCAST_ID:
            return [self._servos[i] for i in sorted(self._servos)]
        servo = self._servos.get(dxl_id)
        return [servo] if servo else []

    def _handle(self, pkt: proto.Packet) -> bytes:
        handler = _HANDLERS.get(pkt.instruction)
        if handler is None:
            if pkt.instruction == proto.STATUS or pkt.id not in self._servos:
                return b''
            return proto.encode_status(pkt.id, proto.ERR_INSTRUCTION)
        return handler(self, pkt)

    def _shorten(self, reply: bytes) -> bytes:
        first, *rest = proto.PacketParser().feed(reply)
        short = proto.encode_status(first.id, first.error, b'')
        return short + b''.join(proto.encode_packet(p.id, p.instruction, p.params) for p in rest)

    def _write(self, servo: EmulatedServo, addr: int, data: bytes) -> int:
        old_id = servo.id
        error = servo.write(addr, data)
        if error:
            return error
        if any(a in _GOAL_SPAN for a in range(addr, addr + len(data))):
            self._record_goal(old_id, servo.register('Goal_Position'))
        if servo.id != old_id and servo.id not in self._servos:
            self._servos[servo.id] = self._servos.pop(old_id)
        return error

    def _ping(self, pkt: proto.Packet) -> bytes:
        return b''.join(
            proto.encode_status(s.id, proto.ERR_OK, s.model_number.to_bytes(2, 'little') + bytes([FIRMWARE_VERSION]))
            for s in self._targets(pkt.id)
        )

    def _read(self, pkt: proto.Packet) -> bytes:
        if pkt.id not in self._servos:
            return b''
        if len(pkt.params) != 4:
            return proto.encode_status(pkt.id, proto.ERR_DATA_LENGTH)
        addr, length = _u16(pkt.params, 0), _u16(pkt.params, 2)
        error, data = self._servos[pkt.id].read(addr, length)
        return proto.encode_status(pkt.id, error, data)

    def _write_instr(self, pkt: proto.Packet) -> bytes:
        targets = self._targets(pkt.id)
        # Decided before writing: a write to ID is still acknowledged under the
        # old id, which is what the sender waits for.
        answer = pkt.id in self._servos
        if len(pkt.params) < 3:
            error = proto.ERR_DATA_LENGTH
        else:
            errors = [self._write(s, _u16(pkt.params, 0), pkt.params[2:]) for s in targets]
            error = errors[0] if errors else proto.ERR_OK
        return proto.encode_status(pkt.id, error) if answer else b''

    def _reg_write(self, pkt: proto.Packet) -> bytes:
        if len(pkt.params) < 3:
            return proto.encode_status(pkt.id, proto.ERR_DATA_LENGTH) if pkt.id in self._servos else b''
        for s in self._targets(pkt.id):
            s.reg_write(_u16(pkt.params, 0), pkt.params[2:])
        return proto.encode_status(pkt.id) if pkt.id in self._servos else b''

    def _action(self, pkt: proto.Packet) -> bytes:
        for s in self._targets(pkt.id):
            s.action()
        # No status even for a unicast ACTION: dynamixel_sdk never reads one, so
        # it would sit in the input buffer and be mistaken for the next reply.
        return b''

    def _reboot(self, pkt: proto.Packet) -> bytes:
        targets = self._targets(pkt.id)
        for s in targets:
            s.reboot()
        return proto.encode_status(pkt.id) if pkt.id in self._servos else b''

    def _sync_read(self, pkt: proto.Packet) -> bytes:
        if len(pkt.params) < 5:
            return b''
        addr, length = _u16(pkt.params, 0), _u16(pkt.params, 2)
        out = []
        for dxl_id in pkt.params[4:]:
            if dxl_id in self._servos:
                error, data = self._servos[dxl_id].read(addr, length)
                out.append(proto.encode_status(dxl_id, error, data))
        return b''.join(out)

    def _sync_write(self, pkt: proto.Packet) -> bytes:
        if len(pkt.params) < 4:
            return b''
        addr, length = _u16(pkt.params, 0), _u16(pkt.params, 2)
        body, step = pkt.params[4:], 1 + length
        if length == 0 or len(body) % step:
            return b''
        for i in range(0, len(body), step):
            servo = self._servos.get(body[i])
            if servo is not None:
                self._write(servo, addr, body[i + 1 : i + step])
        return b''

    def _bulk_read(self, pkt: proto.Packet) -> bytes:
        out, p = [], pkt.params
        for i in range(0, len(p) - len(p) % 5, 5):
            servo = self._servos.get(p[i])
            if servo is not None:
                error, data = servo.read(_u16(p, i + 1), _u16(p, i + 3))
                out.append(proto.encode_status(p[i], error, data))
        return b''.join(out)

    def _bulk_write(self, pkt: proto.Packet) -> bytes:
        p, i = pkt.params, 0
        while i + 5 <= len(p):
            dxl_id, addr, length = p[i], _u16(p, i + 1), _u16(p, i + 3)
            data = p[i + 5 : i + 5 + length]
            if len(data) != length:
                break
            servo = self._servos.get(dxl_id)
            if servo is not None:
                self._write(servo, addr, data)
            i += 5 + length
        return b''


def _u16(data: bytes, offset: int) -> int:
    return data[offset] | (data[offset + 1] << 8)


_HANDLERS = {
    proto.PING: ServoBusEmulator._ping,
    proto.READ: ServoBusEmulator._read,
    proto.WRITE: ServoBusEmulator._write_instr,
    proto.REG_WRITE: ServoBusEmulator._reg_write,
    proto.ACTION: ServoBusEmulator._action,
    proto.REBOOT: ServoBusEmulator._reboot,
    proto.SYNC_READ: ServoBusEmulator._sync_read,
    proto.SYNC_WRITE: ServoBusEmulator._sync_write,
    proto.BULK_READ: ServoBusEmulator._bulk_read,
    proto.BULK_WRITE: ServoBusEmulator._bulk_write,
}


# -- command line ------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Emulate a Dynamixel X-series servo bus on a pseudo-terminal.')
    parser.add_argument('--ids', type=int_list, help='comma-separated servo ids, e.g. 1,2,3')
    parser.add_argument('--models', help='one model per id (comma-separated) or a single model for all')
    parser.add_argument('--preset', choices=['koch'], help='koch: the Koch v1.1 follower (ids 1-6)')
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if args.preset == 'koch':
        args.ids, args.models = args.ids or KOCH_IDS, args.models or ','.join(KOCH_MODELS)
    if not args.ids or not args.models:
        parser.error('give --ids and --models, or --preset koch')
    models = [m.strip().lower() for m in args.models.split(',')]
    if len(models) == 1:
        models *= len(args.ids)
    if len(models) != len(args.ids):
        parser.error(f'{len(args.ids)} ids but {len(models)} models')
    unknown = sorted(set(models) - set(ct.MODEL_NUMBER))
    if unknown:
        parser.error(f'unknown model(s) {unknown}; known: {sorted(ct.MODEL_NUMBER)}')
    args.servos = dict(zip(args.ids, models))
    args.initial_positions = initial_positions(parser, args, args.ids)
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    emulator = ServoBusEmulator(
        args.servos, tau=args.tau, initial_positions=args.initial_positions, link_path=args.link
    )
    return serve_until_signal(emulator, args)


if __name__ == '__main__':
    sys.exit(main())
