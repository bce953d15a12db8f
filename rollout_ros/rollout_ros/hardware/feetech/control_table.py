# SPDX-License-Identifier: Apache-2.0
"""Control-table facts for the Feetech STS3215 (SO-100 / SO-101 arms).

Shared by the driver (bus.py) and the emulator so both sides agree on every
address, width and sign convention. Multi-byte values are little-endian.
"""

import operator

# name -> (address, size_bytes, sign_bit). Signed STS registers use
# sign-magnitude, not two's complement, with the sign at a per-register bit
# (bit 11 for Homing_Offset, 10 for Present_Load, 15 for positions and
# velocities); None means unsigned.
CONTROL_TABLE: dict[str, tuple[int, int, int | None]] = {
    # EEPROM
    'Firmware_Major_Version': (0, 1, None),
    'Firmware_Minor_Version': (1, 1, None),
    'Model_Number': (3, 2, None),
    'ID': (5, 1, None),
    'Baud_Rate': (6, 1, None),
    'Return_Delay_Time': (7, 1, None),
    'Response_Status_Level': (8, 1, None),
    'Min_Position_Limit': (9, 2, None),
    'Max_Position_Limit': (11, 2, None),
    'Max_Temperature_Limit': (13, 1, None),
    'Max_Voltage_Limit': (14, 1, None),
    'Min_Voltage_Limit': (15, 1, None),
    'Max_Torque_Limit': (16, 2, None),
    'Phase': (18, 1, None),
    'Unloading_Condition': (19, 1, None),
    'LED_Alarm_Condition': (20, 1, None),
    'P_Coefficient': (21, 1, None),
    'D_Coefficient': (22, 1, None),
    'I_Coefficient': (23, 1, None),
    'Minimum_Startup_Force': (24, 2, None),
    'CW_Dead_Zone': (26, 1, None),
    'CCW_Dead_Zone': (27, 1, None),
    'Protection_Current': (28, 2, None),
    'Angular_Resolution': (30, 1, None),
    'Homing_Offset': (31, 2, 11),
    'Operating_Mode': (33, 1, None),
    'Protective_Torque': (34, 1, None),
    'Protection_Time': (35, 1, None),
    'Overload_Torque': (36, 1, None),
    # SRAM
    'Torque_Enable': (40, 1, None),
    'Acceleration': (41, 1, None),
    'Goal_Position': (42, 2, 15),
    'Goal_Time': (44, 2, None),
    'Goal_Velocity': (46, 2, 15),
    'Torque_Limit': (48, 2, None),
    'Lock': (55, 1, None),
    'Present_Position': (56, 2, 15),
    'Present_Velocity': (58, 2, 15),
    'Present_Load': (60, 2, 10),
    'Present_Voltage': (62, 1, None),
    'Present_Temperature': (63, 1, None),
    'Status': (65, 1, None),
    'Moving': (66, 1, None),
    'Present_Current': (69, 2, None),
    # Factory area
    'Maximum_Acceleration': (85, 1, None),
}

MODEL_NUMBER: dict[str, int] = {
    'sts3215': 777,
}

# Encoder ticks per revolution.
RESOLUTION = 4096

# Addresses below this are EEPROM: writes there take effect at once but only
# survive a power cycle while Lock is 0.
EEPROM_END = 40

# Operating_Mode values.
POSITION = 0
VELOCITY = 1
PWM = 2
STEP = 3

# Baud_Rate register values.
BAUD_RATE_VALUE: dict[int, int] = {
    1_000_000: 0,
    500_000: 1,
    250_000: 2,
    128_000: 3,
    115_200: 4,
    57_600: 5,
    38_400: 6,
    19_200: 7,
}


def lookup(register: str) -> tuple[int, int, int | None]:
    try:
        return CONTROL_TABLE[register]
    except KeyError:
        raise KeyError(f'unknown control-table register {register!r}; known: {sorted(CONTROL_TABLE)}') from None


def is_eeprom(addr: int) -> bool:
    return addr < EEPROM_END


def encode_sign_magnitude(value: int, sign_bit: int) -> int:
    """Raw register content for `value`: magnitude below `sign_bit`, sign at it."""
    value = operator.index(value)  # numpy ints pass, floats must be rounded by the caller
    if abs(value) >= 1 << sign_bit:
        raise ValueError(f'{value} does not fit in sign-magnitude with the sign at bit {sign_bit}')
    return (1 << sign_bit) | -value if value < 0 else value


def decode_sign_magnitude(raw: int, sign_bit: int) -> int:
    magnitude = raw & ((1 << sign_bit) - 1)
    return -magnitude if raw >> sign_bit & 1 else magnitude


def encode_value(register: str, value: int) -> int:
    """Raw unsigned register content for `value`, range-checked."""
    _, size, sign_bit = lookup(register)
    if sign_bit is not None:
        return encode_sign_magnitude(value, sign_bit)
    value = operator.index(value)
    if not 0 <= value < (1 << (8 * size)):
        raise ValueError(f'{value} does not fit in unsigned {size}-byte register {register}')
    return value


def decode_value(register: str, raw: int) -> int:
    _, size, sign_bit = lookup(register)
    raw &= (1 << (8 * size)) - 1
    return raw if sign_bit is None else decode_sign_magnitude(raw, sign_bit)
