# SPDX-License-Identifier: Apache-2.0
"""Leader arms and the teleop node against the emulated buses: the leader's
pose comes out in follower radians exactly as lerobot's teleop would command
it, an emulated human's motion shows up, an actuated leader moves to a pose
under a speed cap and lets go, and bad setups fail at configure."""

import math
import time

import pytest
from helpers import spin_in_background, wait_for
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from rollout_ros.core.calibration import MotorCalibration, calibration_path, save_calibration
from rollout_ros.core.joint_units import NormMode
from rollout_ros.hardware.emulator.feetech_emulator import FeetechBusEmulator
from rollout_ros.hardware.emulator.human import EmulatedHuman, sinusoid, waypoints
from rollout_ros.hardware.emulator.servo_bus_emulator import ServoBusEmulator
from rollout_ros.hardware.leaders import (
    LeaderFollowerMap,
    get_leader_spec,
    leader_calibration_paths,
    load_leader_calibration,
)
from rollout_ros.hardware.motion import MoveOutcome, linear_move
from rollout_ros.hardware.robots import get_robot_spec
from rollout_ros.nodes.teleop_node import TeleopNode
from rollout_ros_interfaces.srv import MoveToPose

IDS = [1, 2, 3, 4, 5, 6]
PREFIX = 'left_'
TICK_RAD = 2 * math.pi / 4095

# Leader and follower calibrations differ, so the map does more than copy ticks.
SETUPS = {
    'koch_leader': dict(
        follower='koch_follower',
        model='xl330-m077',
        emulator=ServoBusEmulator,
        # lerobot's Koch leader calibration inverts the elbow in the servo.
        leader={
            'shoulder_pan': (0, -1024, 0, 4095),
            'shoulder_lift': (0, 312, 900, 3000),
            'elbow_flex': (1, -77, 1100, 3050),
            'wrist_flex': (0, 0, 800, 3300),
            'wrist_roll': (0, 5, 0, 4095),
            'gripper': (0, -1500, 1900, 2900),
        },
        follower_cal={
            'shoulder_pan': (0, 0, 0, 4095),
            'shoulder_lift': (0, 0, 1024, 3072),
            'elbow_flex': (0, 0, 1024, 3072),
            'wrist_flex': (0, 0, 1024, 3072),
            'wrist_roll': (0, 0, 0, 4095),
            'gripper': (0, 0, 2048, 3072),
        },
    ),
    'so101_leader': dict(
        follower='so101_follower',
        model='sts3215',
        emulator=FeetechBusEmulator,
        leader={
            'shoulder_pan': (0, -300, 700, 3400),
            'shoulder_lift': (0, 312, 830, 3100),
            'elbow_flex': (1, -77, 1100, 3050),
            'wrist_flex': (0, 0, 900, 3300),
            'wrist_roll': (0, 5, 0, 4095),
            'gripper': (1, 40, 2000, 3400),
        },
        follower_cal={
            'shoulder_pan': (0, 100, 600, 3500),
            'shoulder_lift': (1, 0, 1000, 3000),
            'elbow_flex': (0, 0, 900, 3200),
            'wrist_flex': (0, 20, 1000, 3100),
            'wrist_roll': (0, 0, 0, 4095),
            'gripper': (0, 0, 2100, 3300),
        },
    ),
}


def calib(table):
    return {name: MotorCalibration(i, *table[name]) for i, name in zip(IDS, table)}


def write_calibrations(root, teleop_type, teleop_id='leader1', robot_id='follower1'):
    setup = SETUPS[teleop_type]
    spec = get_leader_spec(teleop_type)
    save_calibration(leader_calibration_paths(root, spec, teleop_id)[0], calib(setup['leader']))
    follower_dir = get_robot_spec(setup['follower']).calibration_dir_name
    save_calibration(calibration_path(root, follower_dir, robot_id), calib(setup['follower_cal']))


def shaft_for_present(teleop_type, motor, present):
    """Shaft position that makes the servo read `present` once homed."""
    offset = SETUPS[teleop_type]['leader'][motor][1]
    # Dynamixel: Present = actual + offset; Feetech: Present = actual - offset.
    return present - offset if teleop_type == 'koch_leader' else present + offset


@pytest.fixture(params=['koch_leader', 'so101_leader'])
def teleop_type(request):
    return request.param


@pytest.fixture
def leader_emulator(teleop_type):
    setup = SETUPS[teleop_type]
    names = list(setup['leader'])
    # Start each joint somewhere off the middle of its range.
    initial = {}
    for i, name in zip(IDS, names):
        _, _, lo, hi = setup['leader'][name]
        initial[i] = round(shaft_for_present(teleop_type, name, lo + 0.4 * (hi - lo)))
    with setup['emulator']({i: setup['model'] for i in IDS}, tau=0.02, initial_positions=initial) as emu:
        yield emu


class Running:
    """A teleop node spinning on its own executor thread, with a subscriber."""

    def __init__(self, **params):
        self.node = TeleopNode(parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        self.states: list[JointState] = []
        self._sub = self.node.create_subscription(JointState, '~/joint_states', self.states.append, 50)
        self.executor = spin_in_background(self.node)

    def call(self, srv_type, name, request, timeout=5.0):
        client = self.node.create_client(srv_type, f'~/{name}')
        assert client.wait_for_service(timeout_sec=5.0)
        future = client.call_async(request)
        assert wait_for(future.done, timeout), f'no reply from ~/{name}'
        self.node.destroy_client(client)
        return future.result()

    def fresh_state(self, timeout=3.0) -> JointState:
        """A state read after this call (two publications later)."""
        n = len(self.states)
        assert wait_for(lambda: len(self.states) >= n + 2, timeout), 'no joint states'
        return self.states[-1]

    def close(self):
        self.node.trigger_shutdown()
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()


@pytest.fixture
def teleop(ros, tmp_path, teleop_type, leader_emulator):
    write_calibrations(tmp_path, teleop_type)
    running = []

    def start(**overrides):
        params = dict(
            teleop_type=teleop_type,
            teleop_port=leader_emulator.port,
            teleop_id='leader1',
            robot_type=SETUPS[teleop_type]['follower'],
            robot_id='follower1',
            calibration_dir=str(tmp_path),
            teleop_calibration_dir=str(tmp_path),
            joint_prefix=PREFIX,
            rate_hz=50.0,
            move_speed=1.0,
        )
        params.update(overrides)
        running.append(Running(**params))
        return running[-1]

    yield start
    for r in running:
        r.close()


# -- lerobot's own normalisation, for reference ------------------------------------------


def lerobot_leader_bus(teleop_type, calibration_dir, monkeypatch):
    """lerobot's teleoperator class, built without a port, with the
    calibration lerobot itself loads from the file our node reads."""
    if teleop_type == 'koch_leader':
        from lerobot.teleoperators.koch_leader import KochLeader, KochLeaderConfig

        config = KochLeaderConfig(port='/dev/null', id='leader1', calibration_dir=calibration_dir)
        return KochLeader(config).bus
    from lerobot.motors.feetech import FeetechMotorsBus
    from lerobot.motors.motors_bus import SerialMotorsBus
    from lerobot.teleoperators.so_leader import so_leader
    from lerobot.teleoperators.so_leader.config_so_leader import SOLeaderTeleopConfig

    def portless_bus(port, motors, calibration=None):
        # Without feetech-servo-sdk only the port plumbing is missing; the
        # normalisation lives in the base class.
        bus = object.__new__(FeetechMotorsBus)
        SerialMotorsBus.__init__(bus, port, motors, calibration)
        return bus

    monkeypatch.setattr(so_leader, 'FeetechMotorsBus', portless_bus)
    config = SOLeaderTeleopConfig(port='/dev/null', id='leader1', calibration_dir=calibration_dir, use_degrees=False)
    return so_leader.SOLeader(config).bus


def test_leader_specs_match_lerobot_classes(tmp_path, teleop_type, monkeypatch):
    write_calibrations(tmp_path, teleop_type)
    spec = get_leader_spec(teleop_type)
    directory = leader_calibration_paths(tmp_path, spec, 'leader1')[0].parent
    bus = lerobot_leader_bus(teleop_type, directory, monkeypatch)
    assert bus.calibration, 'lerobot did not find the calibration where we wrote it'
    assert {n: (m.id, m.model, m.norm_mode.value) for n, m in bus.motors.items()} == {
        m.name: (m.id, m.model, m.norm_mode.value) for m in spec.motors
    }
    assert spec.apply_drive_mode == bus.apply_drive_mode
    # lerobot: the SO leaders are driven back (feedback), the Koch leader is not.
    assert spec.actuated == (teleop_type != 'koch_leader')


def test_calibration_path_follows_lerobot(tmp_path, monkeypatch):
    from lerobot.teleoperators.koch_leader import KochLeader
    from lerobot.teleoperators.so_leader import SOLeader

    # LeRobot's --teleop.calibration_dir is the folder that holds <id>.json ...
    for teleop_type in ('koch_leader', 'so100_leader', 'so101_leader'):
        assert leader_calibration_paths(tmp_path, get_leader_spec(teleop_type), 'x') == [tmp_path / 'x.json']
    # ... and without it, LeRobot's default root holds teleoperators/<class name>/<id>.json.
    monkeypatch.setenv('HF_LEROBOT_CALIBRATION', str(tmp_path))
    pairs = (('koch_leader', KochLeader), ('so100_leader', SOLeader), ('so101_leader', SOLeader))
    for teleop_type, cls in pairs:
        spec = get_leader_spec(teleop_type)
        assert leader_calibration_paths(None, spec, 'x')[0] == tmp_path / 'teleoperators' / cls.name / 'x.json'
    # Files of lerobot releases that named the directory after the type are found too.
    spec = get_leader_spec('so101_leader')
    old = tmp_path / 'teleoperators' / 'so101_leader' / 'old.json'
    save_calibration(old, calib(SETUPS['so101_leader']['leader']))
    assert load_leader_calibration(None, spec, 'old')['gripper'].range_max == 3400


def test_unknown_leader_and_koch_in_degrees_are_config_errors():
    from rollout_ros.core.errors import ConfigError

    with pytest.raises(ConfigError, match='teleop_type'):
        get_leader_spec('koch_leeder')
    with pytest.raises(ConfigError, match='use_degrees'):
        get_leader_spec('koch_leader', use_degrees=True)
    assert get_leader_spec('so101_leader', use_degrees=True).motors[0].norm_mode is NormMode.DEGREES


def test_publishes_leader_pose_in_follower_radians_as_lerobot(
    teleop, teleop_type, leader_emulator, tmp_path, monkeypatch
):
    setup = SETUPS[teleop_type]
    spec = get_leader_spec(teleop_type)
    bus = lerobot_leader_bus(teleop_type, leader_calibration_paths(tmp_path, spec, 'leader1')[0].parent, monkeypatch)
    follower_maps = get_robot_spec(setup['follower']).joint_maps(calib(setup['follower_cal']))
    node = teleop()
    node.node.trigger_configure()
    assert node.node.state_label == 'inactive', node.node.last_error
    node.node.trigger_activate()
    assert node.node.state_label == 'active'

    if teleop_type == 'koch_leader':
        # What lerobot's KochLeader.configure leaves torqued: the gripper, as
        # a spring towards half open in current-based position mode.
        assert [leader_emulator.register(i, 'Torque_Enable') for i in IDS] == [0, 0, 0, 0, 0, 1]
        assert [leader_emulator.register(i, 'Operating_Mode') for i in IDS] == [4, 4, 4, 4, 4, 5]
        assert leader_emulator.register(3, 'Drive_Mode') == 1
        assert abs(leader_emulator.register(6, 'Goal_Position') - bus._unnormalize({6: 50.0})[6]) <= 1
    else:
        assert [leader_emulator.register(i, 'Torque_Enable') for i in IDS] == [0] * 6

    def expected():
        ticks = {m.id: leader_emulator.register(m.id, 'Present_Position') for m in spec.motors}
        values = bus._normalize(ticks)
        return [follower_maps[m.name].feature_to_rad(values[m.id]) for m in spec.motors]

    def matches():
        msg = node.states[-1] if node.states else None
        return msg is not None and msg.position.tolist() == pytest.approx(expected(), abs=1e-9)

    # Poses across the ranges, and beyond them (lerobot clamps to the calibrated range).
    for frac in (0.5, 0.1, 0.93, -0.05, 1.05):
        for i, (name, (_, _, lo, hi)) in zip(IDS, setup['leader'].items()):
            if name == 'wrist_roll' and not 0 <= frac <= 1:
                continue  # a full-turn joint has nothing beyond its range
            shaft = shaft_for_present(teleop_type, name, lo + frac * (hi - lo))
            leader_emulator.servo(i).set_actual_position(shaft)
        node.fresh_state()
        assert wait_for(matches), (frac, node.states[-1].position.tolist(), expected())
    assert node.states[-1].name == [PREFIX + m for m in spec.motor_names]


def test_emulated_human_motion_shows_up(teleop, teleop_type, leader_emulator):
    node = teleop()
    node.node.trigger_configure()
    node.node.trigger_activate()
    node.fresh_state()
    with EmulatedHuman(leader_emulator, sinusoid(IDS, amplitude=200, period_s=0.8)) as human:
        time.sleep(1.2)
        seen = node.states[-40:]
    spread = {
        n: max(m.position[k] for m in seen) - min(m.position[k] for m in seen) for k, n in enumerate(seen[-1].name)
    }
    assert all(spread[PREFIX + j] > 0.1 for j in ('shoulder_pan', 'elbow_flex', 'wrist_roll')), spread
    if teleop_type == 'koch_leader':
        # The torqued gripper spring is the driver's: the human leaves it alone.
        assert human.skipped == {6}
        assert spread[PREFIX + 'gripper'] < 0.01
    else:
        assert human.skipped == set()


def test_human_waypoints_and_torqued_servos_are_left_alone():
    servos = {1: 'sts3215', 2: 'sts3215'}
    with FeetechBusEmulator(servos, tau=0.0, initial_positions={1: 1000, 2: 1000}) as emu:
        emu.servo(2).write(40, b'\x01')  # torque on: a driver holds servo 2
        path = waypoints([(0.0, {1: 0, 2: 0}), (0.2, {1: 300, 2: 300})])
        with EmulatedHuman(emu, path, rate_hz=100):
            assert wait_for(lambda: emu.register(1, 'Present_Position') == 1300, timeout=2.0)
        assert emu.register(2, 'Present_Position') == 1000


@pytest.mark.parametrize('teleop_type', ['so101_leader'])
def test_move_to_is_speed_capped_and_release_goes_limp(teleop, teleop_type, leader_emulator):
    rate, speed = 50.0, 0.5
    setup = SETUPS[teleop_type]
    spec = get_leader_spec(teleop_type)
    follower_maps = get_robot_spec(setup['follower']).joint_maps(calib(setup['follower_cal']))
    bridge = LeaderFollowerMap(spec.joint_maps(calib(setup['leader'])), follower_maps)
    node = teleop(rate_hz=rate, move_speed=speed)
    node.node.trigger_configure()
    node.node.trigger_activate()
    present = {}

    def request(offsets, max_speed=0.0):
        target = {m: present[PREFIX + m] + d for m, d in offsets.items()}
        msg = JointState(name=[PREFIX + m for m in target], position=list(target.values()))
        return target, MoveToPose.Request(target=msg, max_speed=max_speed)

    def check_steps(writes, target):
        # Every goal step within the cap of its joint (+1 tick of rounding),
        # ending on the target.
        for servo_id, motor in zip(IDS, spec.motor_names):
            goals = [g for _, i, g in writes if i == servo_id]
            steps = [abs(b - a) for a, b in zip(goals, goals[1:])]
            assert steps and max(steps) <= speed / rate / TICK_RAD + 1, (motor, max(steps))
            if motor in target:
                leader_goal = bridge.to_leader(target)[motor]
                assert goals[-1] == bridge.leader_maps[motor].rad_to_ticks(leader_goal), motor

    def run_move(offsets):
        target, req = request(offsets)
        leader_emulator.clear_goal_writes()
        n_states = len(node.states)
        reply = node.call(MoveToPose, 'move_to', req)
        assert reply.success, reply.message
        # One move at a time.
        again = node.call(MoveToPose, 'move_to', req)
        assert not again.success and 'already running' in again.message
        assert wait_for(lambda: not node.node.moving, timeout=reply.duration_s + 5.0)
        assert node.node.move_outcome is MoveOutcome.ARRIVED
        # States kept flowing during the move (rate is not asserted: shared cores).
        assert len(node.states) - n_states >= 3
        writes = leader_emulator.goal_writes
        check_steps(writes, target)
        return target, reply, len(writes)

    def at(target):
        # Within a few leader ticks, seen in follower radians.
        msg = node.states[-1]
        return all(
            abs(p - target[n[len(PREFIX) :]]) < 6 * TICK_RAD
            for n, p in zip(msg.name, msg.position)
            if n[len(PREFIX) :] in target
        )

    # An emulated human is on the arm: it lets go of the torqued servos.
    with EmulatedHuman(leader_emulator, sinusoid(IDS, amplitude=30, period_s=1.0)):
        node.fresh_state()
        present = {PREFIX + m: p for m, p in zip(spec.motor_names, node.fresh_state().position)}
        near_target, near, near_writes = run_move({'shoulder_pan': 0.3, 'elbow_flex': -0.15})
        # Holding the target with torque on; the published pose reaches it.
        assert [leader_emulator.register(i, 'Torque_Enable') for i in IDS] == [1] * 6
        assert wait_for(lambda: at(near_target)), (node.states[-1].position.tolist(), near_target)

    # Farther takes longer: the duration grows with the distance at the same cap.
    present = {PREFIX + m: p for m, p in zip(spec.motor_names, node.fresh_state().position)}
    far_target, far, far_writes = run_move({'shoulder_pan': -0.7, 'wrist_flex': 0.3})
    assert far.duration_s > near.duration_s * 1.5 and far_writes > near_writes, (near, far)
    leader_way = abs(
        bridge.to_leader(far_target)['shoulder_pan']
        - bridge.to_leader({'shoulder_pan': present[PREFIX + 'shoulder_pan']})['shoulder_pan']
    )
    assert far.duration_s == pytest.approx(leader_way / speed, abs=0.02)
    assert wait_for(lambda: at(far_target))

    # A target beyond move_timeout_s at the requested speed is refused; the arm keeps holding.
    _, req = request({'shoulder_pan': 0.5}, max_speed=0.01)
    slow = node.call(MoveToPose, 'move_to', req)
    assert not slow.success and 'move_timeout_s' in slow.message
    assert [leader_emulator.register(i, 'Torque_Enable') for i in IDS] == [1] * 6

    released = node.call(Trigger, 'release', Trigger.Request())
    assert released.success, released.message
    assert [leader_emulator.register(i, 'Torque_Enable') for i in IDS] == [0] * 6


@pytest.mark.parametrize('teleop_type', ['koch_leader'])
def test_move_refused_on_koch_leader(teleop, teleop_type, leader_emulator):
    node = teleop()
    node.node.trigger_configure()
    node.node.trigger_activate()
    msg = JointState(name=[PREFIX + 'shoulder_pan'], position=[0.3])
    leader_emulator.clear_goal_writes()
    reply = node.call(MoveToPose, 'move_to', MoveToPose.Request(target=msg))
    assert not reply.success and 'not actuated' in reply.message and 'koch_leader' in reply.message
    assert leader_emulator.goal_writes == []
    # Release keeps lerobot's gripper spring.
    released = node.call(Trigger, 'release', Trigger.Request())
    assert released.success and 'gripper' in released.message
    assert [leader_emulator.register(i, 'Torque_Enable') for i in IDS] == [0, 0, 0, 0, 0, 1]


def test_missing_leader_calibration_is_a_configure_error(teleop, teleop_type):
    node = teleop(teleop_id='nobody')
    node.node.trigger_configure()
    assert node.node.state_label == 'unconfigured'
    error = node.node.last_error
    assert error.startswith('teleop_id') and 'nobody' in error
    assert f'lerobot-calibrate --teleop.type={teleop_type}' in error


def test_linear_move_steps_never_exceed_the_cap():
    sent = []
    now = [0.0]

    def sleep(s):
        now[0] += s

    outcome = linear_move(
        {'a': 0.0, 'b': 0.0},
        {'a': 1.0, 'b': -0.3},
        max_speed=0.7,
        rate_hz=30,
        send=sent.append,
        timeout_s=10.0,
        sleep=sleep,
        clock=lambda: now[0],
    )
    assert outcome is MoveOutcome.ARRIVED
    a = [0.0] + [g['a'] for g in sent]
    assert max(y - x for x, y in zip(a, a[1:])) <= 0.7 / 30 + 1e-12
    assert sent[-1] == {'a': 1.0, 'b': -0.3}
    assert now[0] == pytest.approx(len(sent) / 30)
    assert linear_move({'a': 0.0}, {'a': 1.0}, 0.1, 30, sent.append, timeout_s=5.0) is MoveOutcome.TOO_FAR
