# SPDX-License-Identifier: Apache-2.0
"""Damiao motor CAN frames in MIT mode: the motor models' ranges, the
command/reply encodings and the status codes, with no I/O.

A command goes to the motor's send id (its CAN id); the motor answers every
command, and a refresh request on the parameter id 0x7FF, with its state on
its receive id (the master id). Positions are radians at the motor shaft,
zero where the motor was last zeroed.
"""

from dataclasses import dataclass

# Position [rad], velocity [rad/s] and torque [N m] spans the motor maps onto
# its 16/12/12-bit fields, per model (Damiao's tables, as LeRobot has them).
MODEL_LIMITS = {
    'dm4310': (12.5, 30.0, 10.0),
    'dm4310_48v': (12.5, 50.0, 10.0),
    'dm4340': (12.5, 8.0, 28.0),
    'dm4340_48v': (12.5, 10.0, 28.0),
    'dm8009': (12.5, 45.0, 54.0),
}
KP_RANGE = (0.0, 500.0)
KD_RANGE = (0.0, 5.0)

PARAM_ID = 0x7FF
CMD_ENABLE = 0xFC
CMD_DISABLE = 0xFD
CMD_SET_ZERO = 0xFE
CMD_REFRESH = 0xCC
STATE_LEN = 8

# High nibble of a reply's first byte.
STATUS_DISABLED = 0x0
STATUS_ENABLED = 0x1
FAULTS = {
    0x8: 'over-voltage',
    0x9: 'under-voltage',
    0xA: 'over-current',
    0xB: 'MOS over-temperature',
    0xC: 'coil over-temperature',
    0xD: 'communication lost',
    0xE: 'overload',
}


def float_to_uint(x: float, lo: float, hi: float, bits: int) -> int:
    """Clamped and truncated toward lo, as the motor firmware's reference code does."""
    x = min(hi, max(lo, x))
    return int((x - lo) / (hi - lo) * ((1 << bits) - 1))


def uint_to_float(x: int, lo: float, hi: float, bits: int) -> float:
    return x / ((1 << bits) - 1) * (hi - lo) + lo


def check_model(model: str) -> None:
    if model not in MODEL_LIMITS:
        raise ValueError(f'unknown Damiao model {model!r}; known: {sorted(MODEL_LIMITS)}')


def encode_mit(model: str, position: float, velocity: float, kp: float, kd: float, torque: float) -> bytes:
    """The 8-byte MIT command: goal position [rad], velocity [rad/s], gains
    and feed-forward torque [N m], each clamped to the model's span."""
    pmax, vmax, tmax = MODEL_LIMITS[model]
    q = float_to_uint(position, -pmax, pmax, 16)
    dq = float_to_uint(velocity, -vmax, vmax, 12)
    kp_u = float_to_uint(kp, *KP_RANGE, 12)
    kd_u = float_to_uint(kd, *KD_RANGE, 12)
    tau = float_to_uint(torque, -tmax, tmax, 12)
    return bytes(
        [
            q >> 8,
            q & 0xFF,
            dq >> 4,
            ((dq & 0xF) << 4) | (kp_u >> 8),
            kp_u & 0xFF,
            kd_u >> 4,
            ((kd_u & 0xF) << 4) | (tau >> 8),
            tau & 0xFF,
        ]
    )


def decode_mit(model: str, data: bytes) -> tuple[float, float, float, float, float]:
    """(position, velocity, kp, kd, torque) of an MIT command (the motor's side)."""
    pmax, vmax, tmax = MODEL_LIMITS[model]
    q = (data[0] << 8) | data[1]
    dq = (data[2] << 4) | (data[3] >> 4)
    kp_u = ((data[3] & 0xF) << 8) | data[4]
    kd_u = (data[5] << 4) | (data[6] >> 4)
    tau = ((data[6] & 0xF) << 8) | data[7]
    return (
        uint_to_float(q, -pmax, pmax, 16),
        uint_to_float(dq, -vmax, vmax, 12),
        uint_to_float(kp_u, *KP_RANGE, 12),
        uint_to_float(kd_u, *KD_RANGE, 12),
        uint_to_float(tau, -tmax, tmax, 12),
    )


def command_frame(command: int) -> bytes:
    """Enable, disable or set-zero, sent to the motor's send id."""
    return bytes([0xFF] * 7 + [command])


def refresh_frame(send_id: int) -> bytes:
    """State request, sent to PARAM_ID."""
    return bytes([send_id & 0xFF, (send_id >> 8) & 0xFF, CMD_REFRESH, 0, 0, 0, 0, 0])


@dataclass(frozen=True)
class MotorState:
    status: int  # high nibble of byte 0: STATUS_* or a FAULTS key
    position: float  # rad
    velocity: float  # rad/s
    torque: float  # N m
    temp_mos: int  # deg C
    temp_rotor: int  # deg C

    @property
    def enabled(self) -> bool:
        return self.status == STATUS_ENABLED

    @property
    def fault(self) -> str:
        return FAULTS.get(self.status, '')


def encode_state(
    model: str,
    motor_id: int,
    status: int,
    position: float,
    velocity: float,
    torque: float,
    temp_mos: int = 30,
    temp_rotor: int = 30,
) -> bytes:
    """A motor's state reply (the emulator's side)."""
    pmax, vmax, tmax = MODEL_LIMITS[model]
    q = float_to_uint(position, -pmax, pmax, 16)
    dq = float_to_uint(velocity, -vmax, vmax, 12)
    tau = float_to_uint(torque, -tmax, tmax, 12)
    return bytes(
        [
            (status << 4) | (motor_id & 0xF),
            q >> 8,
            q & 0xFF,
            dq >> 4,
            ((dq & 0xF) << 4) | (tau >> 8),
            tau & 0xFF,
            temp_mos & 0xFF,
            temp_rotor & 0xFF,
        ]
    )


def decode_state(model: str, data: bytes) -> MotorState:
    """A state reply; ValueError when it is not one (wrong length)."""
    if len(data) < STATE_LEN:
        raise ValueError(f'state reply of {len(data)} bytes, expected {STATE_LEN}')
    pmax, vmax, tmax = MODEL_LIMITS[model]
    q = (data[1] << 8) | data[2]
    dq = (data[3] << 4) | (data[4] >> 4)
    tau = ((data[4] & 0xF) << 8) | data[5]
    return MotorState(
        data[0] >> 4,
        uint_to_float(q, -pmax, pmax, 16),
        uint_to_float(dq, -vmax, vmax, 12),
        uint_to_float(tau, -tmax, tmax, 12),
        data[6],
        data[7],
    )
