# SPDX-License-Identifier: Apache-2.0
"""Feetech STS3215 servo bus (SO-100 / SO-101 arms) emulated on a pseudo-terminal.

The driver opens the pty slave like /dev/ttyACM0 and talks the SCS/STS
protocol to it; this module plays the servos. Run standalone with
``python -m rollout_ros.hardware.emulator.feetech_emulator --preset so101``.
"""

import argparse
import sys

from rollout_ros.hardware.emulator.pty_bus import (
    FirstOrderServo,
    PtyBusEmulator,
    add_common_arguments,
    initial_positions,
    int_list,
    serve_until_signal,
)
from rollout_ros.hardware.feetech import control_table as ct
from rollout_ros.hardware.feetech import protocol as proto

# The documented table ends at 86; reads beyond what a servo has go unanswered.
TABLE_SIZE = 87
FIRMWARE_VERSION = (3, 10)
# Firmware/model bytes and the Present_* block (through Goal_Position_2) are
# read-only; a real servo acknowledges writes there and ignores them.
READ_ONLY = frozenset([*range(0, 5), *range(56, 73)])
_GOAL_ADDR, _GOAL_SIZE, _ = ct.CONTROL_TABLE['Goal_Position']
_GOAL_SPAN = range(_GOAL_ADDR, _GOAL_ADDR + _GOAL_SIZE)
_TORQUE_ADDR = ct.CONTROL_TABLE['Torque_Enable'][0]
_LOCK_ADDR = ct.CONTROL_TABLE['Lock'][0]
# Velocity registers count in encoder steps per second.
_MOVING_THRESHOLD = 10

# Close to the factory state of an STS3215; what the driver relies on is
# Model_Number, Lock=1 after power-up and the response settings.
_DEFAULTS = {
    'Firmware_Major_Version': FIRMWARE_VERSION[0],
    'Firmware_Minor_Version': FIRMWARE_VERSION[1],
    'Model_Number': ct.MODEL_NUMBER['sts3215'],
    'Baud_Rate': ct.BAUD_RATE_VALUE[1_000_000],
    'Return_Delay_Time': 250,
    'Response_Status_Level': 1,
    'Min_Position_Limit': 0,
    'Max_Position_Limit': ct.RESOLUTION - 1,
    'Max_Temperature_Limit': 70,
    'Max_Voltage_Limit': 140,
    'Min_Voltage_Limit': 40,
    'Max_Torque_Limit': 1000,
    'P_Coefficient': 32,
    'D_Coefficient': 32,
    'I_Coefficient': 0,
    'Protection_Current': 500,
    'Operating_Mode': ct.POSITION,
    'Overload_Torque': 80,
    'Torque_Limit': 1000,
    'Lock': 1,
    'Present_Voltage': 120,
    'Present_Temperature': 30,
    'Maximum_Acceleration': 0,
}


class EmulatedFeetechServo(FirstOrderServo):
    """One STS3215. Present_Position = actual - Homing_Offset, modulo one turn
    (the single-turn feedback mode lerobot configures)."""

    control_table = ct

    def __init__(self, servo_id: int, model: str = 'sts3215', tau: float = 0.05, position: int = 2048):
        if model not in ct.MODEL_NUMBER:
            raise ValueError(f'unknown model {model!r}; known: {sorted(ct.MODEL_NUMBER)}')
        super().__init__(tau, position)
        self.model = model
        # Hardware alarm bits sent in the error byte of every status (tests set them).
        self.alarm_bits = 0
        self.table = bytearray(TABLE_SIZE)
        for name, value in {**_DEFAULTS, 'Model_Number': ct.MODEL_NUMBER[model], 'ID': servo_id}.items():
            self._set(name, value)
        self._eeprom = bytearray(self.table[: ct.EEPROM_END])  # what survives a power cycle
        self._factory_ram = bytes(self.table[ct.EEPROM_END :])
        self._publish()
        self._set('Goal_Position', self._get('Present_Position'))

    @property
    def persisted(self) -> bytes:
        """The EEPROM content a power cycle would bring back."""
        with self._lock:
            return bytes(self._eeprom)

    # -- bus-facing operations -----------------------------------------------

    def read(self, addr: int, length: int) -> bytes | None:
        if length <= 0 or addr + length > TABLE_SIZE:
            return None
        with self._lock:
            self._update()
            return bytes(self.table[addr : addr + length])

    def write(self, addr: int, data: bytes) -> None:
        with self._lock:
            self._update()  # motion so far happened under the old goal
            torque_was_on = bool(self.table[_TORQUE_ADDR])
            for a, byte in enumerate(data, start=addr):
                if a < TABLE_SIZE and a not in READ_ONLY:
                    self.table[a] = byte
            if not self.table[_LOCK_ADDR]:
                # Unlocked: EEPROM writes are also saved, not just applied.
                end = min(addr + len(data), ct.EEPROM_END)
                self._eeprom[addr:end] = self.table[addr:end]
            if not torque_was_on and self.table[_TORQUE_ADDR]:
                # Torque-on holds the current pose instead of jumping to a stale goal.
                self._set('Goal_Position', self._get('Present_Position'))
            self._publish()

    def power_cycle(self) -> None:
        """Saved EEPROM back, RAM to factory values (torque off, Lock=1); the
        shaft stays where it is."""
        with self._lock:
            self._update()
            self.table[: ct.EEPROM_END] = self._eeprom
            self.table[ct.EEPROM_END :] = self._factory_ram
            self._set('Torque_Limit', self._get('Max_Torque_Limit'))
            self._halt()
            self._publish()
            self._set('Goal_Position', self._get('Present_Position'))

    # -- physics ---------------------------------------------------------------

    def _target(self) -> float:
        """Shaft position the position loop drives to: the goal, within the
        limits, in the homed single-turn frame (it never wraps through 0)."""
        goal = self._get('Goal_Position')
        lo, hi = self._get('Min_Position_Limit'), self._get('Max_Position_Limit')
        if lo or hi:  # both 0 selects multi-turn, where the limits do not apply
            goal = min(max(goal, lo), hi)
        present = (self.actual_position - self._get('Homing_Offset')) % ct.RESOLUTION
        return self.actual_position + goal - present

    def _update(self) -> None:
        dt = self._elapsed()
        mode = self._get('Operating_Mode')
        if not self.table[_TORQUE_ADDR]:
            self._halt()
        elif mode == ct.POSITION:
            self._track(self._target(), dt)
        elif mode == ct.VELOCITY:
            self._spin(self._get('Goal_Velocity'), dt)
        else:
            self._halt()  # PWM/step modes: no load model, the shaft stays put
        self._publish()

    def _publish(self) -> None:
        """Refresh the read-only Present_* registers from the physical state."""
        present = round(self.actual_position) - self._get('Homing_Offset')
        self._set('Present_Position', present % ct.RESOLUTION)
        velocity = max(-32767, min(32767, round(self._velocity)))
        self._set('Present_Velocity', velocity)
        self._set('Moving', int(abs(velocity) > _MOVING_THRESHOLD))


SO_IDS = [1, 2, 3, 4, 5, 6]
SO_MODEL = 'sts3215'


class FeetechBusEmulator(PtyBusEmulator):
    """STS servos on a pty; see PtyBusEmulator for lifecycle, test accessors
    and fault knobs (emulator.faults, close_port())."""

    thread_name = 'feetech-bus-emulator'

    def __init__(
        self,
        servos: dict[int, str],
        tau: float = 0.05,
        initial_positions: dict[int, int] | None = None,
        link_path: str | None = None,
    ):
        initial_positions = initial_positions or {}
        emulated = {
            i: EmulatedFeetechServo(i, m, tau, initial_positions.get(i, 2048)) for i, m in sorted(servos.items())
        }
        super().__init__(emulated, proto.PacketParser(), link_path)

    def power_cycle(self) -> None:
        """Power-cycle every servo; ids not saved to EEPROM revert."""
        with self._lock:
            servos = list(self._servos.values())
            for servo in servos:
                servo.power_cycle()
            self._servos = {s.id: s for s in servos}

    # -- protocol ------------------------------------------------------------------

    def _handle(self, pkt: proto.Packet) -> bytes:
        handler = _HANDLERS.get(pkt.instruction)
        # Feetech servos have no instruction-error status: unknown is ignored.
        return handler(self, pkt) if handler else b''

    def _targets(self, servo_id: int) -> list[EmulatedFeetechServo]:
        if servo_id == proto.BROADCAST_ID:
            return [self._servos[i] for i in sorted(self._servos)]
        servo = self._servos.get(servo_id)
        return [servo] if servo else []

    def _shorten(self, reply: bytes) -> bytes:
        first, *rest = proto.PacketParser().feed(reply)
        short = proto.encode_status(first.id, first.error, b'')
        return short + b''.join(proto.encode_status(p.id, p.error, p.params) for p in rest)

    def _write(self, servo: EmulatedFeetechServo, addr: int, data: bytes) -> None:
        old_id = servo.id
        servo.write(addr, data)
        if any(a in _GOAL_SPAN for a in range(addr, addr + len(data))):
            self._record_goal(old_id, servo.register('Goal_Position'))
        if servo.id != old_id and servo.id not in self._servos:
            self._servos[servo.id] = self._servos.pop(old_id)

    def _ping(self, pkt: proto.Packet) -> bytes:
        return b''.join(proto.encode_status(s.id, s.alarm_bits) for s in self._targets(pkt.id))

    def _read(self, pkt: proto.Packet) -> bytes:
        servo = self._servos.get(pkt.id)
        if servo is None or len(pkt.params) != 2:
            return b''
        data = servo.read(pkt.params[0], pkt.params[1])
        return b'' if data is None else proto.encode_status(pkt.id, servo.alarm_bits, data)

    def _write_instr(self, pkt: proto.Packet) -> bytes:
        if len(pkt.params) < 2:
            return b''
        servo = self._servos.get(pkt.id)  # the reply goes out under the old id
        for s in self._targets(pkt.id):
            self._write(s, pkt.params[0], pkt.params[1:])
        # Response_Status_Level 0 answers only PING and READ.
        if servo is None or not servo.register('Response_Status_Level'):
            return b''
        return proto.encode_status(pkt.id, servo.alarm_bits)

    def _sync_read(self, pkt: proto.Packet) -> bytes:
        if len(pkt.params) < 3:
            return b''
        addr, length = pkt.params[0], pkt.params[1]
        out = []
        for servo_id in pkt.params[2:]:
            servo = self._servos.get(servo_id)
            data = servo.read(addr, length) if servo else None
            if data is not None:
                out.append(proto.encode_status(servo_id, servo.alarm_bits, data))
        return b''.join(out)

    def _sync_write(self, pkt: proto.Packet) -> bytes:
        if len(pkt.params) < 2:
            return b''
        addr, length = pkt.params[0], pkt.params[1]
        body, step = pkt.params[2:], 1 + length
        if length == 0 or len(body) % step:
            return b''
        for i in range(0, len(body), step):
            servo = self._servos.get(body[i])
            if servo is not None:
                self._write(servo, addr, body[i + 1 : i + step])
        return b''


_HANDLERS = {
    proto.PING: FeetechBusEmulator._ping,
    proto.READ: FeetechBusEmulator._read,
    proto.WRITE: FeetechBusEmulator._write_instr,
    proto.SYNC_READ: FeetechBusEmulator._sync_read,
    proto.SYNC_WRITE: FeetechBusEmulator._sync_write,
}


# -- command line ------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Emulate a Feetech STS3215 servo bus on a pseudo-terminal.')
    parser.add_argument('--ids', type=int_list, help='comma-separated servo ids, e.g. 1,2,3')
    parser.add_argument('--preset', choices=['so100', 'so101'], help='the SO-100/SO-101 follower (ids 1-6)')
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if args.preset:
        args.ids = args.ids or SO_IDS
    if not args.ids:
        parser.error('give --ids or --preset so100/so101')
    args.servos = {i: SO_MODEL for i in args.ids}
    args.initial_positions = initial_positions(parser, args, args.ids)
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    emulator = FeetechBusEmulator(
        args.servos, tau=args.tau, initial_positions=args.initial_positions, link_path=args.link
    )
    return serve_until_signal(emulator, args)


if __name__ == '__main__':
    sys.exit(main())
