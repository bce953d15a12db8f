# SPDX-License-Identifier: Apache-2.0
"""Feetech STS3215 support (SO-100/SO-101): our protocol codec, FeetechBus
against the pty emulator, calibration write-back, LeRobot-equal
normalisation, and the emulators' fault knobs (both bus families)."""

import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import lerobot_motor_bus

from rollout_ros.core.calibration import MotorCalibration
from rollout_ros.core.joint_units import NormMode
from rollout_ros.hardware import bus_errors
from rollout_ros.hardware.buses import make_bus
from rollout_ros.hardware.emulator.feetech_emulator import SO_IDS, FeetechBusEmulator
from rollout_ros.hardware.feetech import control_table as ct
from rollout_ros.hardware.feetech import protocol as proto
from rollout_ros.hardware.feetech.bus import BusError, FeetechBus
from rollout_ros.hardware.follower_arm import FollowerArm
from rollout_ros.hardware.robots import get_robot_spec

NAMES = ['shoulder_pan', 'shoulder_lift', 'elbow_flex', 'wrist_flex', 'wrist_roll', 'gripper']
MOTORS = {name: (i, 'sts3215') for name, i in zip(NAMES, SO_IDS)}
TAU = 0.02
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def emulator():
    with FeetechBusEmulator({i: 'sts3215' for i in SO_IDS}, tau=TAU) as emu:
        yield emu


@pytest.fixture
def bus(emulator):
    b = FeetechBus(emulator.port, MOTORS)
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


def test_checksum_known_vectors():
    assert proto.encode_packet(1, proto.PING) == bytes.fromhex('FFFF010201FB')
    # Read 2 bytes at 0x38 (Present_Position) from id 1.
    assert proto.encode_packet(1, proto.READ, bytes([0x38, 0x02])) == bytes.fromhex('FFFF0104023802BE')
    assert proto.checksum(bytes([0xFE, 0x04, 0x03, 0x28, 0x01])) == ~(0xFE + 4 + 3 + 0x28 + 1) & 0xFF


def test_parser_resyncs_on_garbage_and_drops_bad_checksum():
    good1 = proto.encode_packet(1, proto.READ, bytes([56, 2]))
    good2 = proto.encode_status(2, proto.ERR_OVERLOAD, b'\x01\x02')
    corrupt = bytearray(proto.encode_packet(5, proto.PING))
    corrupt[-1] ^= 0xFF
    # A stray FF before a header, a header followed by FF, a bad packet, noise.
    stream = b'\x00\xff\x13\xff' + good1 + b'\xff\xff\xff' + bytes(corrupt) + b'\xfe\x01' + good2
    parser = proto.PacketParser()
    packets = []
    for i in range(len(stream)):  # worst case: one byte at a time
        packets += parser.feed(stream[i : i + 1])
    assert [(p.id, p.instruction) for p in packets] == [(1, proto.READ), (2, proto.ERR_OVERLOAD)]
    assert packets[0].params == bytes([56, 2])
    assert packets[1].error == proto.ERR_OVERLOAD and packets[1].data == b'\x01\x02'
    assert parser.checksum_errors >= 1
    assert proto.PacketParser().feed(stream) == packets  # all at once: same result
    assert 'overload' in proto.describe_error(packets[1].error)


@pytest.mark.parametrize(
    'register, value, raw',
    [
        ('Homing_Offset', -1000, 0x800 | 1000),
        ('Homing_Offset', 2047, 2047),
        ('Goal_Position', -5, 0x8005),
        ('Goal_Velocity', -3400, 0x8000 | 3400),
        ('Present_Load', -300, 0x400 | 300),
        ('Present_Position', 4095, 4095),
    ],
)
def test_sign_magnitude_round_trip(register, value, raw):
    assert ct.encode_value(register, value) == raw
    assert ct.decode_value(register, raw) == value
    assert ct.decode_value(register, ct.encode_value(register, -value)) == -value


def test_sign_magnitude_matches_lerobot_and_rejects_bad_values():
    enc = pytest.importorskip('lerobot.motors.encoding_utils')
    for bit in (10, 11, 15):
        for value in (0, 1, -1, 7, -7, (1 << bit) - 1, -((1 << bit) - 1)):
            assert ct.encode_sign_magnitude(value, bit) == enc.encode_sign_magnitude(value, bit)
            raw = enc.encode_sign_magnitude(value, bit)
            assert ct.decode_sign_magnitude(raw, bit) == enc.decode_sign_magnitude(raw, bit) == value
    with pytest.raises(ValueError):
        ct.encode_value('Homing_Offset', 2048)
    with pytest.raises(ValueError):
        ct.encode_value('Max_Position_Limit', -1)
    # The control loop hands over numpy ticks; silently truncating floats would hide bugs.
    assert ct.encode_value('Goal_Position', np.int64(-5)) == 0x8005
    with pytest.raises(TypeError):
        ct.encode_value('Goal_Position', 1.5)


def test_bus_error_is_shared_by_both_families():
    from rollout_ros.hardware.dynamixel.bus import BusError as DxlBusError

    assert BusError is DxlBusError is bus_errors.BusError


# -- FeetechBus against the emulator ---------------------------------------------------


def test_connect_checks_model_numbers(emulator):
    assert emulator.register(1, 'Model_Number') == 777
    emulator.servo(6).table[3:5] = (2825).to_bytes(2, 'little')  # an STS3250 where the gripper should be
    motors = {**MOTORS, 'extra': (9, 'sts3215')}
    with pytest.raises(BusError) as info:
        FeetechBus(emulator.port, motors, read_retries=0).connect()
    message = str(info.value)
    assert 'extra (id 9)' in message and 'gripper (id 6)' in message and '2825' in message


def test_read_write_registers_of_each_width(bus, emulator):
    bus.write('Acceleration', 'gripper', 200)  # 1 byte
    bus.write('Goal_Time', 'gripper', 1234)  # 2 bytes
    bus.write('Goal_Velocity', 'wrist_roll', -321)  # 2 bytes sign-magnitude
    bus.write('Homing_Offset', 'elbow_flex', -1000)  # sign bit 11, EEPROM
    assert bus.read('Acceleration', 'gripper') == 200
    assert bus.read('Goal_Time', 'gripper') == 1234
    assert bus.read('Goal_Velocity', 'wrist_roll') == -321
    assert bus.read('Homing_Offset', 'elbow_flex') == -1000
    assert emulator.register(5, 'Goal_Velocity') == -321
    assert emulator.servo(3).table[31:33] == (0x800 | 1000).to_bytes(2, 'little')
    assert bus.read('Model_Number', 'shoulder_pan') == 777


def test_sync_write_goals_then_sync_read_converges(bus, emulator):
    bus.set_torque(True)
    goals = {name: 1000 + 300 * i for i, name in enumerate(NAMES)}
    emulator.clear_goal_writes()
    bus.sync_write('Goal_Position', goals)
    assert bus.sync_read('Present_Position') != goals  # the servos need time to get there
    assert any(bus.sync_read('Moving').values())
    assert wait_until(lambda: bus.sync_read('Present_Position') == goals)
    assert wait_until(lambda: not any(bus.sync_read('Moving').values()))
    received = {i: goal for _, i, goal in emulator.goal_writes}
    assert received == {MOTORS[name][0]: goal for name, goal in goals.items()}
    assert bus.sync_read('Present_Position', ['gripper', 'shoulder_pan']) == {'gripper': 2500, 'shoulder_pan': 1000}


def test_homing_offset_is_subtracted_from_actual_position(bus, emulator):
    # lerobot's Feetech calibration relies on Present = Actual - Homing_Offset.
    bus.write('Homing_Offset', 'wrist_flex', -300)
    bus.write('Homing_Offset', 'wrist_roll', 1500)
    emulator.servo(4).set_actual_position(3000)
    emulator.servo(5).set_actual_position(3000)
    assert bus.sync_read('Present_Position', ['wrist_flex', 'wrist_roll']) == {'wrist_flex': 3300, 'wrist_roll': 1500}
    emulator.servo(5).set_actual_position(1000)  # single-turn feedback wraps into 0..4095
    assert bus.read('Present_Position', 'wrist_roll') == 1000 - 1500 + 4096
    bus.set_torque(True, ['wrist_flex'])
    assert bus.read('Goal_Position', 'wrist_flex') == 3300  # torque-on holds the pose
    bus.write('Goal_Position', 'wrist_flex', 2000)
    assert wait_until(lambda: bus.read('Present_Position', 'wrist_flex') == 2000)
    assert emulator.servo(4).actual_position == pytest.approx(1700, abs=0.5)


def test_position_limits_clamp_goals(bus, emulator):
    bus.write('Min_Position_Limit', 'shoulder_pan', 1000)
    bus.write('Max_Position_Limit', 'shoulder_pan', 3000)
    bus.set_torque(True, ['shoulder_pan'])
    bus.write('Goal_Position', 'shoulder_pan', 4000)
    assert wait_until(lambda: bus.read('Present_Position', 'shoulder_pan') == 3000)
    bus.write('Goal_Position', 'shoulder_pan', -50)
    assert wait_until(lambda: bus.read('Present_Position', 'shoulder_pan') == 1000)


def test_locked_eeprom_writes_apply_but_do_not_survive_power_cycle(emulator):
    servo = emulator.servo(2)
    addr = ct.CONTROL_TABLE['Min_Position_Limit'][0]
    assert servo.register('Lock') == 1  # the power-up state
    servo.write(addr, (500).to_bytes(2, 'little'))
    assert servo.register('Min_Position_Limit') == 500
    emulator.power_cycle()
    assert servo.register('Min_Position_Limit') == 0
    servo.write(ct.CONTROL_TABLE['Lock'][0], b'\x00')
    servo.write(addr, (600).to_bytes(2, 'little'))
    emulator.power_cycle()
    assert servo.register('Min_Position_Limit') == 600 and servo.register('Lock') == 1


def test_bus_unlocks_eeprom_and_torque_relocks(bus, emulator):
    bus.write('Max_Position_Limit', 'elbow_flex', 3500)
    assert emulator.register(3, 'Lock') == 0
    bus.set_torque(True, ['elbow_flex'])
    assert emulator.register(3, 'Lock') == 1 and emulator.register(3, 'Torque_Enable') == 1
    bus.write('P_Coefficient', 'elbow_flex', 20)  # unlocks again so it is saved
    assert emulator.register(3, 'Lock') == 0
    emulator.power_cycle()  # torque off, Lock back to 1
    assert bus.read('Max_Position_Limit', 'elbow_flex') == 3500
    assert bus.read('P_Coefficient', 'elbow_flex') == 20
    bus.set_torque(False)
    assert all(emulator.register(i, 'Lock') == 0 for i in SO_IDS)


def test_bad_port_raises_bus_error_naming_port(tmp_path):
    missing = str(tmp_path / 'ttyACM7')
    with pytest.raises(BusError, match='ttyACM7.*robot_port'):
        FeetechBus(missing, MOTORS).connect()


def test_alarm_bits_are_logged_not_fatal(bus, emulator, caplog):
    emulator.servo(6).alarm_bits = proto.ERR_OVERLOAD
    with caplog.at_level(logging.WARNING, logger='rollout_ros.hardware.feetech.bus'):
        assert bus.read('Present_Position', 'gripper') == 2048
        bus.sync_read('Present_Position')
    assert [r.getMessage() for r in caplog.records if 'overload' in r.getMessage()] == [
        f'servo 6 on {emulator.port} reports overload'
    ]  # once per change, not per reply


def test_make_bus_and_so_specs():
    for robot_type in ('so100_follower', 'so101_follower'):
        spec = get_robot_spec(robot_type)
        assert spec.type == robot_type and spec.bus == 'feetech' and spec.apply_drive_mode
        assert [(m.name, m.id, m.model) for m in spec.motors] == [(n, i, 'sts3215') for n, (i, _) in MOTORS.items()]
        assert [m.norm_mode for m in spec.motors] == [NormMode.RANGE_M100_100] * 5 + [NormMode.RANGE_0_100]
        degrees = get_robot_spec(robot_type, use_degrees=True)
        assert [m.norm_mode for m in degrees.motors][:5] == [NormMode.DEGREES] * 5
        for motor, register, value in spec.setup_registers:
            assert motor in spec.motor_names
            ct.encode_value(register, value)  # known register, value fits
        assert isinstance(make_bus(spec, '/dev/null'), FeetechBus)


# -- FollowerArm: calibration write-back -----------------------------------------------

CALIB = {
    'shoulder_pan': MotorCalibration(1, 0, -1024, 700, 3400),
    'shoulder_lift': MotorCalibration(2, 1, 312, 830, 3100),
    'elbow_flex': MotorCalibration(3, 0, -77, 1100, 3050),
    'wrist_flex': MotorCalibration(4, 1, 0, 900, 3300),
    'wrist_roll': MotorCalibration(5, 0, 5, 0, 4095),
    'gripper': MotorCalibration(6, 1, -1500, 2000, 3400),
}


def test_follower_arm_writes_calibration_that_survives_power_cycle(emulator):
    spec = get_robot_spec('so101_follower')
    arm = FollowerArm(spec, emulator.port, CALIB)
    assert arm.connect() == sorted(NAMES)
    try:
        for name, (i, _) in MOTORS.items():
            assert emulator.register(i, 'Homing_Offset') == CALIB[name].homing_offset
            assert emulator.register(i, 'Min_Position_Limit') == CALIB[name].range_min
            assert emulator.register(i, 'Max_Position_Limit') == CALIB[name].range_max
            assert emulator.register(i, 'P_Coefficient') == 16
        assert emulator.register(6, 'Max_Torque_Limit') == 500
        assert emulator.register(6, 'Overload_Torque') == 25
        # The middle of the calibrated range is 0 rad: actual = present + offset.
        cal = CALIB['elbow_flex']
        emulator.servo(3).set_actual_position((cal.range_min + cal.range_max) // 2 + cal.homing_offset)
        assert arm.read()['elbow_flex'] == pytest.approx(arm.joint_maps['elbow_flex'].ticks_to_rad(2075))
        assert abs(arm.read()['elbow_flex']) < 2e-3
    finally:
        arm.disconnect()
    emulator.power_cycle()
    again = FollowerArm(spec, emulator.port, CALIB)
    assert again.connect() == []  # saved in EEPROM, nothing to rewrite
    again.disconnect()


# -- LeRobot-equal normalisation ---------------------------------------------------------


def lerobot_feetech_bus(use_degrees):
    spec = get_robot_spec('so100_follower', use_degrees)
    bus = lerobot_motor_bus(spec, CALIB)
    assert bus.apply_drive_mode  # lerobot applies drive_mode in software for Feetech
    return spec, bus


def test_lerobot_half_turn_homing_centres_the_emulated_servo(bus, emulator):
    # lerobot's calibration: offsets reset to 0, read Present (= actual), ask
    # FeetechMotorsBus for the half-turn offset, write it. The servo must then
    # read the middle of the turn, or our calibration write-back is off.
    _, lerobot_bus = lerobot_feetech_bus(False)
    emulator.servo(2).set_actual_position(3000)
    emulator.servo(4).set_actual_position(700)
    present = bus.sync_read('Present_Position', ['shoulder_lift', 'wrist_flex'])
    offsets = type(lerobot_bus)._get_half_turn_homings(lerobot_bus, present)
    assert offsets == {'shoulder_lift': 3000 - 2047, 'wrist_flex': 700 - 2047}
    for motor, offset in offsets.items():
        bus.write('Homing_Offset', motor, offset)
    assert bus.sync_read('Present_Position', ['shoulder_lift', 'wrist_flex']) == {
        'shoulder_lift': 2047,
        'wrist_flex': 2047,
    }


@pytest.mark.parametrize('use_degrees', [False, True])
def test_so100_ticks_to_feature_equals_lerobot(use_degrees):
    spec, bus = lerobot_feetech_bus(use_degrees)
    maps = spec.joint_maps(CALIB)
    assert any(c.drive_mode for c in CALIB.values())
    rng = np.random.default_rng(0)
    for motor in spec.motors:
        jmap, c = maps[motor.name], CALIB[motor.name]
        ticks = list(rng.integers(c.range_min, c.range_max + 1, 50))
        ticks += [c.range_min, c.range_max, c.range_min - 40, c.range_max + 40]
        for t in ticks:
            expected = bus._normalize({motor.id: int(t)})[motor.id]
            ours = jmap.rad_to_feature(jmap.ticks_to_rad(int(t)))
            assert ours == pytest.approx(expected, abs=1e-9), (motor.name, t)


@pytest.mark.parametrize('use_degrees', [False, True])
def test_so100_feature_to_ticks_matches_lerobot_unnormalize(use_degrees):
    spec, bus = lerobot_feetech_bus(use_degrees)
    maps = spec.joint_maps(CALIB)
    for motor in spec.motors:
        jmap = maps[motor.name]
        for value in np.linspace(-120, 120, 97):
            if motor.norm_mode is NormMode.RANGE_0_100:
                value = (value + 120) / 2.4 - 5
            expected = bus._unnormalize({motor.id: float(value)})[motor.id]
            ours = jmap.rad_to_ticks(jmap.feature_to_rad(float(value)))
            assert abs(ours - expected) <= 1, (motor.name, value, ours, expected)  # lerobot truncates


# -- fault knobs -------------------------------------------------------------------------


def test_dropped_replies_are_retried_then_fail(bus, emulator):
    emulator.faults.drop_replies(2)
    assert bus.sync_read('Present_Position') == dict.fromkeys(NAMES, 2048)  # third attempt answers
    assert emulator.faults.dropped == 2
    emulator.faults.drop_replies(3)
    with pytest.raises(BusError, match='3 attempts'):
        bus.sync_read('Present_Position')
    emulator.faults.drop_replies(3)
    with pytest.raises(BusError, match='read Present_Position from gripper.*3 attempts'):
        bus.read('Present_Position', 'gripper')
    emulator.faults.drop_replies(0, probability=1.0)
    with pytest.raises(BusError, match='no status packet'):
        bus.write('Acceleration', 'gripper', 10)
    emulator.faults.clear()
    assert bus.sync_read('Present_Position') == dict.fromkeys(NAMES, 2048)


def test_corrupted_checksums_are_retried_then_fail(bus, emulator):
    emulator.faults.corrupt_checksums(1)
    assert bus.read('Model_Number', 'wrist_roll') == 777
    emulator.faults.corrupt_checksums(3)
    with pytest.raises(BusError, match='3 attempts.*3 packet.*bad checksum'):
        bus.sync_read('Present_Position')
    assert emulator.faults.corrupted == 4
    assert bus.sync_read('Present_Position') == dict.fromkeys(NAMES, 2048)


def test_closed_port_raises_bus_error(bus, emulator):
    emulator.close_port()
    with pytest.raises(BusError, match=emulator.port):
        bus.sync_read('Present_Position')
    with pytest.raises(BusError):
        bus.sync_write('Goal_Position', {'gripper': 2000})
    with pytest.raises(BusError):
        bus.write('Goal_Position', 'gripper', 2000)
    with pytest.raises(BusError):
        bus.disconnect()  # torque off fails, the port is closed all the same
    assert not bus.is_connected


def test_dynamixel_emulator_fault_knobs():
    from rollout_ros.hardware.dynamixel.bus import DynamixelBus
    from rollout_ros.hardware.emulator.servo_bus_emulator import KOCH_IDS, KOCH_MODELS, ServoBusEmulator

    motors = {name: (i, model) for name, i, model in zip(NAMES, KOCH_IDS, KOCH_MODELS)}
    with ServoBusEmulator(dict(zip(KOCH_IDS, KOCH_MODELS)), tau=TAU) as emu:
        b = DynamixelBus(emu.port, motors)
        b.connect()
        emu.faults.drop_replies(2)
        assert b.sync_read('Present_Position') == dict.fromkeys(NAMES, 2048)
        emu.faults.drop_replies(3)
        with pytest.raises(BusError, match='3 attempts'):
            b.sync_read('Present_Position')
        emu.faults.corrupt_checksums(3)
        with pytest.raises(BusError, match='3 attempts'):
            b.sync_read('Present_Position')
        assert (emu.faults.dropped, emu.faults.corrupted) == (5, 3)
        assert b.read('Model_Number', 'gripper') == 1200
        emu.close_port()
        with pytest.raises(BusError):
            b.sync_read('Present_Position')
        with pytest.raises(BusError):
            b.sync_write('Goal_Position', {'gripper': 2000})
        with pytest.raises(BusError):
            b.disconnect()
        assert not b.is_connected


# -- command line ------------------------------------------------------------------------


def test_cli_prints_port_and_stops_on_sigterm(tmp_path):
    link = tmp_path / 'ttySO101'
    env = {**os.environ, 'PYTHONPATH': str(PACKAGE_ROOT) + os.pathsep + os.environ.get('PYTHONPATH', '')}
    proc = subprocess.Popen(
        [
            sys.executable,
            '-m',
            'rollout_ros.hardware.emulator.feetech_emulator',
            '--preset',
            'so101',
            '--link',
            str(link),
            '--initial',
            '1000,1100,1200,1300,1400,1500',
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
        with FeetechBus(str(link), MOTORS) as b:
            assert b.sync_read('Present_Position') == dict(zip(NAMES, range(1000, 1600, 100)))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert not link.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
