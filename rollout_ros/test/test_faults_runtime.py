"""Fault suite (runtime faults): every fault ends with one clear error, the arm
held, torque handled as configured and a non-zero exit, within seconds.

Bus level: malformed (short) replies and serial I/O errors are bus errors
with the retry rules of a lost reply, register writes are retried, and the
port works again after a transient error. Driver level: recovery from a bus
fault, twice, then a normal stop with torque off. Run level (processes, as
launch starts them): policy process killed, emulator process killed, port
closed, short replies; each measured from the fault to the hold and to the
exit (printed as `FAULT {...}` JSON lines, see the report in the README).
"""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from rollout_ros.hardware.bus_errors import BusError
from rollout_ros.hardware.dynamixel.bus import DynamixelBus
from rollout_ros.hardware.emulator.feetech_emulator import FeetechBusEmulator
from rollout_ros.hardware.feetech.bus import FeetechBus

KOCH = {'shoulder_pan': (1, 'xl430-w250'), 'shoulder_lift': (2, 'xl430-w250'), 'elbow_flex': (3, 'xl330-m288'),
        'wrist_flex': (4, 'xl330-m288'), 'wrist_roll': (5, 'xl330-m288'), 'gripper': (6, 'xl330-m288')}


@pytest.fixture
def dxl_bus(emulator):
    bus = DynamixelBus(emulator.port, KOCH)
    bus.connect()
    yield bus
    bus.disconnect(disable_torque=False)


# ---------------------------------------------------------------- bus level


def test_short_sync_read_reply_is_a_retried_bus_error(dxl_bus, emulator):
    # dynamixel-sdk's GroupSyncRead.getData raises IndexError on a reply one
    # byte short; that must be a failed attempt, retried, then a BusError.
    emulator.faults.short_replies(1)
    assert set(dxl_bus.sync_read('Present_Position')) == set(KOCH)
    assert emulator.faults.shortened == 1
    emulator.faults.short_replies(3)
    with pytest.raises(BusError, match=r'3 attempts: malformed reply \(IndexError'):
        dxl_bus.sync_read('Present_Position')
    emulator.faults.clear()
    assert set(dxl_bus.sync_read('Present_Position')) == set(KOCH)


def test_short_single_read_reply_is_a_bus_error(dxl_bus, emulator):
    emulator.faults.short_replies(3)
    with pytest.raises(BusError, match='short reply'):
        dxl_bus.read('Present_Position', 'gripper')


def test_dynamixel_register_writes_are_retried(dxl_bus, emulator):
    emulator.faults.drop_replies(2)        # two lost acks: the third attempt lands
    dxl_bus.set_torque(True, ['gripper'])
    assert emulator.register(6, 'Torque_Enable') == 1
    emulator.faults.drop_replies(2)
    dxl_bus.write('Position_P_Gain', 'elbow_flex', 700)
    assert emulator.register(3, 'Position_P_Gain') == 700
    emulator.faults.drop_replies(3)
    with pytest.raises(BusError, match='write Torque_Enable=0 to gripper.*3 attempts'):
        dxl_bus.set_torque(False, ['gripper'])


def test_feetech_register_writes_are_retried():
    with FeetechBusEmulator({1: 'sts3215', 2: 'sts3215'}) as emu:
        bus = FeetechBus(emu.port, {'a': (1, 'sts3215'), 'b': (2, 'sts3215')})
        bus.connect()
        try:
            emu.faults.drop_replies(2)
            bus.set_torque(True, ['a'])
            assert emu.register(1, 'Torque_Enable') == 1
            emu.faults.drop_replies(3)
            with pytest.raises(BusError, match='3 attempts'):
                bus.write('Torque_Enable', 'b', 1)
        finally:
            bus.disconnect(disable_torque=False)


def test_serial_io_error_is_reported_and_the_port_recovers(dxl_bus, emulator):
    """A transient I/O error from pyserial: the message names it (not the SDK's
    stuck "Port is in use!") and the next transaction works."""
    ser = dxl_bus._port_handler.ser
    real_read, failures = ser.read, []

    def flaky_read(n=1):
        if len(failures) < 3:
            failures.append(n)
            raise OSError(errno.EIO, 'Input/output error')
        return real_read(n)
    ser.read = flaky_read
    with pytest.raises(BusError, match='Input/output error') as err:
        dxl_bus.sync_read('Present_Position')
    assert 'in use' not in str(err.value)
    time.sleep(0.2)    # the servos' replies to the failed requests are in by now
    assert set(dxl_bus.sync_read('Present_Position')) == set(KOCH)
    # Single transactions too, and the stale replies are not taken for theirs.
    dxl_bus.write('Torque_Enable', 'gripper', 1)
    assert dxl_bus.read('Torque_Enable', 'gripper') == 1
    assert emulator.register(6, 'Torque_Enable') == 1


def test_closed_port_keeps_reporting_the_serial_error(dxl_bus, emulator):
    emulator.close_port()
    for _ in range(3):
        with pytest.raises(BusError) as err:
            dxl_bus.sync_read('Present_Position')
        assert 'in use' not in str(err.value) and 'port closed' in str(err.value), err.value
