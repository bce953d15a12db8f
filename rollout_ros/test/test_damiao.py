# SPDX-License-Identifier: Apache-2.0
"""The Damiao CAN bus (python-can) against emulated motors on python-can's
virtual interface: MIT frames and state decoding bit-equal to LeRobot's,
replies matched by receive id, enable/disable/zero, and every fault knob
ending in one BusError that names the motor and the fix."""

import math
import time

import pytest
from helpers import wait_for

from rollout_ros.hardware.bus_errors import BusError
from rollout_ros.hardware.damiao import protocol as proto
from rollout_ros.hardware.damiao.bus import DamiaoBus
from rollout_ros.hardware.emulator.damiao_emulator import (
    OPENARM_MOTORS,
    DamiaoBusEmulator,
    EmulatedDamiaoMotor,
    openarm_motors,
    pick_transport,
)

NAMES = [f'joint_{i}' for i in range(1, 8)] + ['gripper']
MOTORS = dict(zip(NAMES, OPENARM_MOTORS))
INITIAL = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, -0.7, -0.3]


@pytest.fixture
def emulator():
    with DamiaoBusEmulator(openarm_motors(INITIAL), seed=1) as emu:
        yield emu


@pytest.fixture
def bus(emulator):
    b = DamiaoBus(
        emulator.port, MOTORS, interface='virtual', gains={n: (100.0, 1.0) for n in NAMES}, reply_timeout_s=0.05
    )
    b.connect()
    yield b
    if b.is_connected:
        emulator.clear_faults()
        b.disconnect()


def lerobot_damiao_bus():
    damiao = pytest.importorskip('lerobot.motors.damiao')
    from lerobot.motors import Motor, MotorNormMode

    motors = {
        n: Motor(s, model, MotorNormMode.DEGREES, motor_type_str=model, recv_id=r)
        for n, (s, r, model) in MOTORS.items()
    }
    return damiao.DamiaoMotorsBus(port='unused', motors=motors)


@pytest.mark.parametrize('model', ['dm8009', 'dm4340', 'dm4310'])
def test_mit_frames_and_state_decoding_equal_lerobots(model):
    from lerobot.motors.damiao.tables import MotorType

    lr = lerobot_damiao_bus()
    mtype = MotorType[model.upper()]
    pmax, vmax, tmax = proto.MODEL_LIMITS[model]
    commands = [
        (0.0, 0.0, 0.0, 0.0, 0.0),
        (1.234, -2.5, 240.0, 5.0, 1.5),
        (-3.0, 7.5, 24.0, 0.3, -2.0),
        (20.0, 99.0, 600.0, 9.0, 99.0),
        (-20.0, -99.0, -1.0, -1.0, -99.0),
    ]  # last two: clamped
    for q, dq, kp, kd, tau in commands:
        ours = proto.encode_mit(model, q, dq, kp, kd, tau)
        theirs = lr._encode_mit_packet(mtype, kp, kd, math.degrees(q), math.degrees(dq), tau)
        assert list(ours) == theirs, (q, dq, kp, kd, tau)
    for q, dq, tau in [(0.0, 0.0, 0.0), (1.0, -3.0, 2.0), (-pmax, vmax, -tmax), (pmax, -vmax, tmax)]:
        frame = proto.encode_state(model, 1, proto.STATUS_ENABLED, q, dq, tau, 41, 37)
        state = proto.decode_state(model, frame)
        pos_deg, vel_deg, torque, t_mos, t_rotor = lr._decode_motor_state(frame, mtype)
        assert math.degrees(state.position) == pytest.approx(pos_deg, abs=1e-9)
        assert math.degrees(state.velocity) == pytest.approx(vel_deg, abs=1e-9)
        assert state.torque == pytest.approx(torque, abs=1e-9)
        assert (state.temp_mos, state.temp_rotor, state.enabled) == (t_mos, t_rotor, True)
        assert abs(state.position - q) <= 2 * pmax / 65535


def test_state_refresh_enable_and_mit_goal(bus, emulator):
    present = bus.sync_read('Present_Position')
    assert present == pytest.approx(dict(zip(NAMES, INITIAL)), abs=1e-3)
    assert not any(m.enabled for m in emulator.motors.values())
    bus.sync_write('Goal_Position', present)
    bus.set_torque(True)
    assert all(m.enabled for m in emulator.motors.values())
    assert all(s.enabled for s in bus.states.values())

    bus.sync_write('Kp', {'joint_5': 24.0})
    bus.sync_write('Goal_Position', {'joint_1': 0.5, 'joint_5': -0.25})
    q, dq, kp, kd, tau = emulator.motor(1).target
    assert (q, dq, kp, kd, tau) == pytest.approx((0.5, 0.0, 100.0, 1.0, 0.0), abs=0.13)  # 12-bit fields
    assert emulator.motor(5).target[2] == pytest.approx(24.0, abs=0.2)
    assert wait_for(lambda: abs(bus.read('Present_Position', 'joint_1') - 0.5) < 0.01)

    bus.mit_control({'joint_2': (0.0, 0.0, 50.0, 2.0, 1.25)})
    assert emulator.motor(2).target == pytest.approx((0.0, 0.0, 50.0, 2.0, 1.25), abs=0.13)  # kp step: 500/4095

    bus.set_torque(False, ['joint_1'])
    assert not emulator.motor(1).enabled and emulator.motor(2).enabled


def test_zero_needs_torque_off(bus, emulator):
    bus.set_torque(True, ['joint_3'])
    with pytest.raises(BusError, match='torque on'):
        bus.set_zero(['joint_3'])
    bus.set_torque(False, ['joint_3'])
    bus.set_zero(['joint_3'])
    assert bus.read('Present_Position', 'joint_3') == pytest.approx(0.0, abs=1e-3)
    assert bus.read('Present_Position', 'joint_4') == pytest.approx(INITIAL[3], abs=1e-3)


def test_replies_are_matched_by_receive_id_not_order():
    # Motors 1 and 2 wired with each other's receive ids: the states follow the ids.
    motors = openarm_motors(INITIAL)
    motors[0].recv_id, motors[1].recv_id = 0x12, 0x11
    with DamiaoBusEmulator(motors) as emu:
        bus = DamiaoBus(emu.port, MOTORS, interface='virtual')
        bus.connect()
        try:
            present = bus.sync_read('Present_Position', ['joint_1', 'joint_2', 'joint_3'])
            assert present['joint_1'] == pytest.approx(INITIAL[1], abs=1e-3)
            assert present['joint_2'] == pytest.approx(INITIAL[0], abs=1e-3)
            assert present['joint_3'] == pytest.approx(INITIAL[2], abs=1e-3)
        finally:
            bus.disconnect()


def test_lost_replies_are_retried_then_fail_naming_the_motor(bus, emulator):
    emulator.faults.drop_replies(count=2)
    assert bus.sync_read('Present_Position')  # two lost replies: the retries cover them
    assert emulator.faults.dropped == 2
    emulator.silence(4)
    with pytest.raises(BusError, match=r'after 3 attempts: no reply from joint_4 \(send 0x04, recv 0x14\)'):
        bus.sync_read('Present_Position')
    with pytest.raises(BusError, match='joint_4'):
        bus.sync_write('Goal_Position', {'joint_4': 0.1})  # commands fail like reads
    emulator.clear_faults()
    emulator.faults.corrupt_checksums(count=0, probability=1.0)
    with pytest.raises(BusError, match='malformed'):
        bus.read('Present_Position', 'joint_1')


def test_bus_off_is_a_bus_error(bus, emulator):
    emulator.bus_off()
    with pytest.raises(BusError, match='bus-off'):
        bus.sync_read('Present_Position')
    with pytest.raises(BusError, match='is bus-off'):  # and stays so: nothing is sent
        bus.sync_write('Goal_Position', {'joint_1': 0.0})
    emulator.clear_faults()  # the controller restarts
    assert wait_for(lambda: _reads(bus))


def _reads(bus) -> bool:
    try:
        return bool(bus.sync_read('Present_Position'))
    except BusError:
        return False


def test_missing_motor_fails_connect_with_the_fix():
    with DamiaoBusEmulator(openarm_motors()[:7]) as emu:  # no gripper on the bus
        bus = DamiaoBus(emu.port, MOTORS, interface='virtual', reply_timeout_s=0.01)
        with pytest.raises(BusError, match=r'no reply from gripper .*24 V supply'):
            bus.connect()
        assert not bus.is_connected


def test_enable_refused_while_a_motor_reports_a_fault(bus, emulator):
    emulator.motor(6).fault = 0xA
    with pytest.raises(BusError, match='joint_6: over-current'):
        bus.set_torque(True)


def test_socketcan_down_names_the_ip_link_command():
    bus = DamiaoBus('rollout_can9', MOTORS, interface='socketcan')
    with pytest.raises(BusError, match='ip link set rollout_can9 up type can bitrate 1000000 dbitrate 5000000 fd on'):
        bus.connect()


def test_emulated_motor_tracks_faster_with_higher_kp():
    def settle_time(kp):
        m = EmulatedDamiaoMotor(1, 0x11, 'dm4310')
        m.handle(1, proto.command_frame(proto.CMD_ENABLE))
        m.handle(1, proto.encode_mit('dm4310', 1.0, 0.0, kp, 0.5, 0.0))
        start = time.monotonic()
        while abs(m.position - 1.0) > 0.05:
            time.sleep(0.005)
            m.handle(proto.PARAM_ID, proto.refresh_frame(1))
        return time.monotonic() - start

    assert settle_time(200.0) < settle_time(20.0)


def test_cross_process_transport_is_detected():
    interface, channels, why = pick_transport(2)
    assert len(channels) == 2 and len(set(channels)) == 2
    assert interface in ('socketcan', 'udp_multicast') and why
