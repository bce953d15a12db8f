# SPDX-License-Identifier: Apache-2.0
"""Control-table facts for the Dynamixel X-series servos we drive.

Shared by the driver (bus.py) and the emulator so both sides agree on every
address, width and signedness.
"""

import operator

# name -> (address, size_bytes, signed). The four supported models (XL330-M077,
# XL330-M288, XL430-W250, XM430-W350) share this layout for the entries below;
# Current_Limit only exists on current-sensing models but harmless elsewhere.
CONTROL_TABLE: dict[str, tuple[int, int, bool]] = {
    'Model_Number': (0, 2, False),
    'ID': (7, 1, False),
    'Baud_Rate': (8, 1, False),
    'Return_Delay_Time': (9, 1, False),
    'Drive_Mode': (10, 1, False),
    'Operating_Mode': (11, 1, False),
    'Homing_Offset': (20, 4, True),
    'Moving_Threshold': (24, 4, False),
    'Temperature_Limit': (31, 1, False),
    'Max_Voltage_Limit': (32, 2, False),
    'Min_Voltage_Limit': (34, 2, False),
    'Current_Limit': (38, 2, False),
    'Max_Position_Limit': (48, 4, False),
    'Min_Position_Limit': (52, 4, False),
    'Torque_Enable': (64, 1, False),
    'LED': (65, 1, False),
    'Hardware_Error_Status': (70, 1, False),
    'Position_D_Gain': (80, 2, False),
    'Position_I_Gain': (82, 2, False),
    'Position_P_Gain': (84, 2, False),
    'Goal_Current': (102, 2, True),
    'Goal_Velocity': (104, 4, True),
    'Profile_Acceleration': (108, 4, False),
    'Profile_Velocity': (112, 4, False),
    'Goal_Position': (116, 4, True),
    'Moving': (122, 1, False),
    'Present_Current': (126, 2, True),
    'Present_Velocity': (128, 4, True),
    'Present_Position': (132, 4, True),
    'Present_Input_Voltage': (144, 2, False),
    'Present_Temperature': (146, 1, False),
}

MODEL_NUMBER: dict[str, int] = {
    'xl330-m077': 1190,
    'xl330-m288': 1200,
    'xl430-w250': 1060,
    'xm430-w350': 1020,
}

# Encoder ticks per revolution, identical for every supported model.
RESOLUTION = 4096

# Addresses below this are EEPROM: the servo refuses writes there while torque is on.
EEPROM_END = 64

# Operating_Mode values.
CURRENT = 0
VELOCITY = 1
POSITION = 3
EXTENDED_POSITION = 4
CURRENT_POSITION = 5
PWM = 16


def lookup(register: str) -> tuple[int, int, bool]:
    try:
        return CONTROL_TABLE[register]
    except KeyError:
        raise KeyError(f'unknown control-table register {register!r}; known: {sorted(CONTROL_TABLE)}') from None


def encode_signed(value: int, size: int) -> int:
    """Two's-complement of `value` in `size` bytes, as the unsigned raw integer."""
    value = operator.index(value)  # numpy ints pass, floats must be rounded by the caller
    bits = 8 * size
    if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
        raise ValueError(f'{value} does not fit in a signed {size}-byte register')
    return value & ((1 << bits) - 1)


def decode_signed(raw: int, size: int) -> int:
    bits = 8 * size
    raw &= (1 << bits) - 1
    return raw - (1 << bits) if raw & (1 << (bits - 1)) else raw


def encode_value(register: str, value: int) -> int:
    """Raw unsigned register content for `value`, range-checked."""
    _, size, signed = lookup(register)
    if signed:
        return encode_signed(value, size)
    value = operator.index(value)
    if not 0 <= value < (1 << (8 * size)):
        raise ValueError(f'{value} does not fit in unsigned {size}-byte register {register}')
    return value


def decode_value(register: str, raw: int) -> int:
    _, size, signed = lookup(register)
    return decode_signed(raw, size) if signed else raw
