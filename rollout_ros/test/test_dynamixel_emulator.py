# SPDX-License-Identifier: Apache-2.0
"""DynamixelBus (real dynamixel_sdk code) against the pty servo-bus emulator."""

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import dynamixel_sdk as sdk
import numpy as np
import pytest

from rollout_ros.hardware.dynamixel import control_table as ct
from rollout_ros.hardware.dynamixel.bus import BusError, DynamixelBus
from rollout_ros.hardware.emulator import dynamixel_protocol as proto
from rollout_ros.hardware.emulator.pty_bus import read_goal_log
from rollout_ros.hardware.emulator.servo_bus_emulator import KOCH_IDS, KOCH_MODELS, ServoBusEmulator

NAMES = ['shoulder_pan', 'shoulder_lift', 'elbow_flex', 'wrist_flex', 'wrist_roll', 'gripper']
MOTORS = {name: (i, model) for name, i, model in zip(NAMES, KOCH_IDS, KOCH_MODELS)}
TAU = 0.02
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def emulator():
    with ServoBusEmulator(dict(zip(KOCH_IDS, KOCH_MODELS)), tau=TAU) as emu:
        yield emu


@pytest.fixture
def bus(emulator):
    b = DynamixelBus(emulator.port, MOTORS)
    b.connect()
    yield b
    b.disconnect(disable_torque=False)


def wait_until(predicate, timeout=2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


# -- packet codec ----------------------------------------------------------------------


def test_crc_known_vector_ping_id1():
    assert proto.encode_packet(1, proto.PING) == bytes.fromhex('FFFFFD0001030001194E')


def test_crc_matches_sdk_implementation():
    frame = bytes(range(256)) * 2
    assert proto.crc16(frame) == sdk.PacketHandler(2.0).updateCRC(0, list(frame), len(frame))


def test_byte_stuffing_round_trip():
    params = bytes([0x74, 0x00, 0x04, 0x00, 0xFF, 0xFF, 0xFD, 0x00, 0xFF, 0xFF, 0xFD, 0xFD])
    packet = proto.encode_packet(3, proto.WRITE, params)
    assert packet.count(b'\xff\xff\xfd') == 3  # header + two escaped occurrences
    assert b'\xff\xff\xfd\xfd\x00' in packet
    assert int.from_bytes(packet[5:7], 'little') == 1 + len(params) + 2 + 2  # two stuffed bytes
    assert proto.unstuff(proto.stuff(params)) == params
    [decoded] = proto.PacketParser().feed(packet)
    assert (decoded.id, decoded.instruction, decoded.params) == (3, proto.WRITE, params)


def test_parser_resyncs_on_garbage_and_drops_bad_crc():
    good1 = proto.encode_packet(1, proto.READ, bytes([132, 0, 4, 0]))
    good2 = proto.encode_status(2, proto.ERR_ACCESS, b'\x01\x02')
    corrupt = bytearray(proto.encode_packet(5, proto.PING))
    corrupt[-1] ^= 0xFF
    stream = b'\x00\xff\x13\xff\xff' + good1 + b'\xff\xff\xfd' + bytes(corrupt) + b'\xfe\x01' + good2
    parser = proto.PacketParser()
    packets = []
    for i in range(len(stream)):  # worst case: one byte at a time
        packets += parser.feed(stream[i : i + 1])
    assert [(p.id, p.instruction) for p in packets] == [(1, proto.READ), (2, proto.STATUS)]
    assert packets[1].error == proto.ERR_ACCESS and packets[1].data == b'\x01\x02'
    assert parser.crc_errors >= 1


def test_signed_helpers():
    assert ct.encode_signed(-1, 4) == 0xFFFFFFFF
    assert ct.decode_signed(0xFFFFFF38, 4) == -200
    assert ct.decode_signed(0x7FFF, 2) == 0x7FFF
    with pytest.raises(ValueError):
        ct.encode_signed(1 << 15, 2)
    # The control loop hands over numpy ticks; silently truncating floats would hide bugs.
    assert ct.encode_value('Goal_Position', np.int64(-5)) == 0xFFFFFFFB
    with pytest.raises(TypeError):
        ct.encode_value('Goal_Position', 1.5)


# -- driver against the emulator ---------------------------------------------------------


def test_ping_through_sdk(emulator):
    port = sdk.PortHandler(emulator.port)
    assert port.openPort()
    try:
        ph = sdk.PacketHandler(2.0)
        model, result, error = ph.ping(port, 1)
        assert (model, result, error) == (1060, sdk.COMM_SUCCESS, 0)
        model, result, _ = ph.ping(port, 3)
        assert (model, result) == (1200, sdk.COMM_SUCCESS)
        _, result, _ = ph.ping(port, 42)
        assert result == sdk.COMM_RX_TIMEOUT
    finally:
        port.closePort()


def test_read_write_registers_of_each_width(bus, emulator):
    bus.write('LED', 'gripper', 1)  # 1 byte
    bus.write('Position_P_Gain', 'gripper', 850)  # 2 bytes
    bus.write('Goal_Current', 'gripper', -321)  # 2 bytes signed
    bus.write('Goal_Velocity', 'wrist_roll', -123456)  # 4 bytes signed
    bus.write('Homing_Offset', 'elbow_flex', -1000)  # 4 bytes signed, EEPROM (torque is off)
    assert bus.read('LED', 'gripper') == 1
    assert bus.read('Position_P_Gain', 'gripper') == 850
    assert bus.read('Goal_Current', 'gripper') == -321
    assert bus.read('Goal_Velocity', 'wrist_roll') == -123456
    assert bus.read('Homing_Offset', 'elbow_flex') == -1000
    assert emulator.register(6, 'Goal_Current') == -321
    assert emulator.register(3, 'Homing_Offset') == -1000
    assert bus.read('Model_Number', 'shoulder_pan') == 1060


def test_sync_write_goals_then_sync_read_converges(bus, emulator):
    bus.set_torque(True)
    goals = {name: 1000 + 300 * i for i, name in enumerate(NAMES)}
    emulator.clear_goal_writes()
    bus.sync_write('Goal_Position', goals)
    first = bus.sync_read('Present_Position')
    assert first != goals  # the servos need time to get there
    assert any(bus.sync_read('Moving').values())
    assert wait_until(lambda: bus.sync_read('Present_Position') == goals)
    assert wait_until(lambda: not any(bus.sync_read('Moving').values()))
    received = {i: goal for _, i, goal in emulator.goal_writes}
    assert received == {MOTORS[name][0]: goal for name, goal in goals.items()}


def test_homing_offset_adds_to_actual_position(bus, emulator):
    bus.write('Homing_Offset', 'wrist_flex', -1000)
    emulator.servo(4).set_actual_position(3000)
    assert bus.read('Present_Position', 'wrist_flex') == 2000
    bus.set_torque(True, ['wrist_flex'])
    assert bus.read('Goal_Position', 'wrist_flex') == 2000  # torque-on holds the pose
    bus.write('Goal_Position', 'wrist_flex', 2500)
    assert wait_until(lambda: bus.read('Present_Position', 'wrist_flex') == 2500)
    assert emulator.servo(4).actual_position == pytest.approx(3500, abs=0.5)


def test_eeprom_write_refused_while_torque_on(bus, emulator):
    bus.set_torque(True, ['shoulder_lift'])
    with pytest.raises(BusError, match='torque disabled'):
        bus.write('Operating_Mode', 'shoulder_lift', ct.EXTENDED_POSITION)
    assert emulator.register(2, 'Operating_Mode') == ct.POSITION
    bus.set_torque(False, ['shoulder_lift'])
    bus.write('Operating_Mode', 'shoulder_lift', ct.EXTENDED_POSITION)
    assert emulator.register(2, 'Operating_Mode') == ct.EXTENDED_POSITION


def test_position_mode_clamps_goal_to_limits(bus, emulator):
    bus.write('Min_Position_Limit', 'shoulder_pan', 1000)
    bus.write('Max_Position_Limit', 'shoulder_pan', 3000)
    bus.write('Operating_Mode', 'shoulder_lift', ct.EXTENDED_POSITION)
    bus.write('Max_Position_Limit', 'shoulder_lift', 3000)
    bus.set_torque(True, ['shoulder_pan', 'shoulder_lift'])
    bus.sync_write('Goal_Position', {'shoulder_pan': 4000, 'shoulder_lift': 5000})
    assert wait_until(
        lambda: (
            bus.sync_read('Present_Position', ['shoulder_pan', 'shoulder_lift'])
            == {'shoulder_pan': 3000, 'shoulder_lift': 5000}
        )
    )
    bus.write('Goal_Position', 'shoulder_pan', -50)
    assert wait_until(lambda: bus.read('Present_Position', 'shoulder_pan') == 1000)


def test_bad_port_raises_bus_error_naming_port(tmp_path):
    missing = str(tmp_path / 'ttyACM7')
    with pytest.raises(BusError, match='ttyACM7.*robot_port'):
        DynamixelBus(missing, MOTORS).connect()


def test_missing_servo_and_wrong_model_are_reported(emulator):
    motors = {**MOTORS, 'extra': (9, 'xl330-m288'), 'gripper': (6, 'xm430-w350')}
    with pytest.raises(BusError) as info:
        DynamixelBus(emulator.port, motors, read_retries=0).connect()
    message = str(info.value)
    assert 'extra (id 9)' in message and 'gripper (id 6)' in message and '1200' in message


def test_sync_read_gives_up_after_retries(bus, emulator):
    bus.write('ID', 'gripper', 9)  # the servo now answers as id 9 only
    assert 9 in emulator.ids and 6 not in emulator.ids
    with pytest.raises(BusError, match='3 attempts'):
        bus.sync_read('Present_Position')


def test_disconnect_disables_torque(emulator):
    b = DynamixelBus(emulator.port, MOTORS)
    b.connect()
    b.set_torque(True)
    assert all(emulator.register(i, 'Torque_Enable') == 1 for i in KOCH_IDS)
    b.disconnect(disable_torque=True)
    assert all(emulator.register(i, 'Torque_Enable') == 0 for i in KOCH_IDS)
    assert not b.is_connected


def test_cli_prints_port_and_stops_on_sigterm(tmp_path):
    link = tmp_path / 'ttyKOCH'
    goal_log = tmp_path / 'goals.txt'
    env = {**os.environ, 'PYTHONPATH': str(PACKAGE_ROOT) + os.pathsep + os.environ.get('PYTHONPATH', '')}
    proc = subprocess.Popen(
        [
            sys.executable,
            '-m',
            'rollout_ros.hardware.emulator.servo_bus_emulator',
            '--preset',
            'koch',
            '--link',
            str(link),
            '--initial',
            '1000,1100,1200,1300,1400,1500',
            '--goal-log',
            str(goal_log),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, 'emulator did not print its port'
        word, port = proc.stdout.readline().split()
        assert word == 'PORT' and os.path.realpath(link) == os.path.realpath(port)
        with DynamixelBus(str(link), MOTORS) as b:
            assert b.sync_read('Present_Position') == dict(zip(NAMES, range(1000, 1600, 100)))
            before = time.monotonic()
            b.sync_write('Goal_Position', {NAMES[0]: 1010, NAMES[1]: 1111})
            b.sync_write('Goal_Position', {NAMES[0]: 1020})
            after = time.monotonic()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert not link.exists()
        # Every goal write, on the one monotonic clock the machine shares.
        writes = read_goal_log(str(goal_log))
        assert [(i, g) for _, i, g in writes] == [(1, 1010), (2, 1111), (1, 1020)]
        assert all(before <= t <= after + 0.1 for t, _, _ in writes)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
