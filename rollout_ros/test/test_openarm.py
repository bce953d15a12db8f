# SPDX-License-Identifier: Apache-2.0
"""OpenArm followers on emulated Damiao motors (python-can virtual bus): the
driver node's limits, gains, watchdog and fault trip; and proof against
LeRobot's own OpenArmFollower on the same emulated motors: the same
observation for the same motor states, the same MIT frames for the same
action, the same feature names and calibration paths."""

import math
import time

import pytest
from helpers import spin_in_background, wait_for
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState

from rollout_ros.core.calibration import calibration_path, save_calibration
from rollout_ros.core.features import FeatureMapper
from rollout_ros.hardware.damiao.calibration import lerobot_calibration
from rollout_ros.hardware.emulator.damiao_emulator import DamiaoBusEmulator, openarm_motors
from rollout_ros.hardware.follower_arm import FollowerArm
from rollout_ros.hardware.robots import get_robot_spec, load_robot_calibration
from rollout_ros.nodes.robot_driver_node import RobotDriverNode

LEFT = get_robot_spec('openarm_follower', side='left')
INITIAL = [0.1, -0.2, 0.3, 0.4, -0.5, 0.3, -0.7, -0.3]
ROBOT_ID = 'arm'


@pytest.fixture
def emulator():
    with DamiaoBusEmulator(openarm_motors(INITIAL)) as emu:
        yield emu


@pytest.fixture
def calib_dir(tmp_path):
    for robot_id in (ROBOT_ID, f'{ROBOT_ID}_left', f'{ROBOT_ID}_right'):
        save_calibration(calibration_path(tmp_path, 'openarm_follower', robot_id), lerobot_calibration(LEFT))
    return tmp_path


def make_driver(emulator, calib_dir, **params):
    base = dict(
        robot_port=emulator.port,
        robot_type='openarm_follower',
        robot_side='left',
        robot_id=ROBOT_ID,
        calibration_dir=str(calib_dir),
        can_interface='virtual',
        max_relative_target=0.0,
    )
    base.update(params)
    node = RobotDriverNode(parameter_overrides=[Parameter(k, value=v) for k, v in base.items()])
    return node, spin_in_background(node)


def stop(node, ex):
    node.trigger_shutdown()
    ex.shutdown(timeout_sec=1.0)
    node.destroy_node()


def test_driver_clips_to_side_limits_with_per_joint_gains(ros, emulator, calib_dir):
    node, ex = make_driver(emulator, calib_dir, command_timeout_s=5.0)
    try:
        node.trigger_configure()
        assert node.state_label == 'inactive', node.last_error
        assert not any(m.enabled for m in emulator.motors.values())
        node.trigger_activate()
        assert all(m.enabled for m in emulator.motors.values())
        pub = node.create_publisher(JointState, 'joint_commands', 10)
        # joint_1 beyond the left arm's 75 deg, joint_2 within its -90..9 deg.
        pub.publish(JointState(name=['joint_1', 'joint_2', 'joint_5'], position=[2.0, -1.0, 0.2]))
        assert wait_for(lambda: abs(emulator.motor(1).target[0] - math.radians(75)) < 1e-3)
        q2, _, kp2, kd2, _ = emulator.motor(2).target
        q5, _, kp5, kd5, _ = emulator.motor(5).target
        assert q2 == pytest.approx(-1.0, abs=1e-3) and q5 == pytest.approx(0.2, abs=1e-3)
        # lerobot's position_kp/kd: 240/5 on the shoulder, 24/0.3 on joint_5.
        assert (kp2, kd2) == pytest.approx((240.0, 5.0), abs=0.13)
        assert (kp5, kd5) == pytest.approx((24.0, 0.3), abs=0.13)
        assert wait_for(lambda: abs(emulator.motor(1).position - math.radians(75)) < 0.01)
        node.trigger_deactivate()
        node.trigger_cleanup()
        assert not any(m.enabled for m in emulator.motors.values())  # torque off at cleanup
    finally:
        stop(node, ex)


def test_watchdog_holds_the_present_position(ros, emulator, calib_dir):
    node, ex = make_driver(emulator, calib_dir, command_timeout_s=0.1, state_rate_hz=50.0)
    try:
        node.trigger_configure()
        node.trigger_activate()
        emulator.motor(7).stiffness_s = 40.0  # a slow joint: still on its way when commands stop
        pub = node.create_publisher(JointState, 'joint_commands', 10)
        emulator.clear_mit_commands()
        pub.publish(JointState(name=['joint_7'], position=[1.0]))
        assert wait_for(lambda: any(i == 7 and abs(q - 1.0) < 1e-3 for _, i, q in emulator.mit_commands))
        # The hold: a later command for joint_7 whose goal is where the motor was, short of 1.0.
        assert wait_for(lambda: any(i == 7 and q < 0.9 for _, i, q in emulator.mit_commands[1:]), timeout=3.0), [
            c for c in emulator.mit_commands if c[1] == 7
        ]
        time.sleep(0.3)
        held = emulator.motor(7).target[0]
        assert held < 0.9 and abs(emulator.motor(7).position - held) < 0.01
    finally:
        stop(node, ex)


def test_silent_motor_trips_the_driver_like_a_dead_bus(ros, emulator, calib_dir):
    node, ex = make_driver(emulator, calib_dir, max_bus_errors=3, command_timeout_s=0.05)
    try:
        node.trigger_configure()
        node.trigger_activate()
        emulator.silence(4)  # one motor loses power
        assert wait_for(lambda: node.state_label == 'unconfigured', timeout=5.0), node.state_label
        assert node.faulted and 'servo bus failed 3 times' in node.last_error and 'joint_4' in node.last_error
        emulator.clear_mit_commands()
        pub = node.create_publisher(JointState, 'joint_commands', 10)
        for _ in range(5):
            pub.publish(JointState(name=['joint_1'], position=[0.3]))
            time.sleep(0.03)
        assert emulator.mit_commands == []  # nothing more is written
        assert emulator.motor(1).enabled  # the others keep holding their last goal
    finally:
        stop(node, ex)


def test_bus_off_trips_the_driver(ros, emulator, calib_dir):
    node, ex = make_driver(emulator, calib_dir, max_bus_errors=2)
    try:
        node.trigger_configure()
        node.trigger_activate()
        emulator.bus_off()
        assert wait_for(lambda: node.state_label == 'unconfigured', timeout=5.0), node.state_label
        assert 'bus-off' in node.last_error
    finally:
        stop(node, ex)


def test_unreachable_can_interface_is_a_configure_error(ros, emulator, calib_dir):
    node, ex = make_driver(emulator, calib_dir, robot_port='rollout_can9', can_interface='socketcan')
    try:
        node.trigger_configure()
        assert node.state_label == 'unconfigured'
        assert 'robot_port' in node.last_error and 'ip link set rollout_can9 up' in node.last_error
    finally:
        stop(node, ex)


# -- proof against LeRobot ----------------------------------------------------------------


def lerobot_openarm(channel, calib_dir, side='left'):
    pytest.importorskip('can')
    from lerobot.robots.openarm_follower import OpenArmFollower, OpenArmFollowerConfig

    return OpenArmFollower(
        OpenArmFollowerConfig(
            port=channel,
            can_interface='virtual',
            side=side,
            id=ROBOT_ID,
            calibration_dir=calibration_path(calib_dir, 'openarm_follower', ROBOT_ID).parent,
        )
    )


def test_observation_and_commands_equal_lerobots_openarm_follower(emulator, calib_dir):
    calibration = load_robot_calibration(LEFT, calib_dir, ROBOT_ID)
    mapper = FeatureMapper(LEFT.joint_maps(calibration))
    arm = FollowerArm(LEFT, emulator.port, calibration, can_options={'interface': 'virtual'})
    arm.connect()
    try:
        present = arm.read()  # torque off: the motors stay where they are for lerobot's read
        ours_obs = mapper.observation_state(list(present), list(present.values()))
    finally:
        arm.disconnect()
    action = {f'{n}.pos': v for n, v in zip(LEFT.motor_names, (100.0, -30.0, 12.5, 140.0, -20.0, 10.0, 5.0, -70.0))}

    robot = lerobot_openarm(emulator.port, calib_dir)
    robot.connect(calibrate=False)
    try:
        # lerobot waits 10 ms for the refresh replies and keeps its last states
        # on a miss (a loaded machine): ask again until it heard every motor.
        for _ in range(5):
            theirs_obs = robot.get_observation()
            if theirs_obs == pytest.approx(ours_obs, abs=1e-9):
                break
        theirs_sent = robot.send_action(action)
        # lerobot does not wait for the replies: let the motors take the frames in.
        assert wait_for(lambda: all(m.target[2] > 0 for m in emulator.motors.values()))
        theirs_frames = {i: m.target for i, m in emulator.motors.items()}
    finally:
        robot.disconnect()
    assert ours_obs == pytest.approx({k: float(v) for k, v in theirs_obs.items()}, abs=1e-9)
    assert ours_obs['joint_3.pos'] == pytest.approx(math.degrees(0.3), abs=0.05)

    arm.connect()
    try:
        arm.read()
        arm.enable_torque()
        names, rad = mapper.joint_command(action)
        sent = arm.send(dict(zip(names, rad)))
        ours_sent = {f'{m}.pos': math.degrees(r) for m, r in sent.items()}
        # Same clipping to the left arm's limits (joint_1 to 75, joint_4 to 135, gripper to -65) ...
        assert ours_sent == pytest.approx(theirs_sent, abs=1e-9)
        # ... and the same MIT frames on the wire (goal, gains, zero velocity and torque).
        assert {i: m.target for i, m in emulator.motors.items()} == theirs_frames
    finally:
        arm.disconnect()


def test_zeroing_writes_lerobots_calibration_file(emulator, tmp_path):
    import json

    from rollout_ros.hardware.buses import make_bus
    from rollout_ros.hardware.damiao.calibration import zero_and_save

    bus = make_bus(LEFT, emulator.port, {'interface': 'virtual'})
    bus.connect()
    try:
        path = zero_and_save(bus, LEFT, tmp_path, ROBOT_ID)
        assert bus.sync_read('Present_Position') == pytest.approx({n: 0.0 for n in LEFT.motor_names}, abs=1e-3)
    finally:
        bus.disconnect()
    assert path == calibration_path(tmp_path, 'openarm_follower', ROBOT_ID) == tmp_path / f'{ROBOT_ID}.json'
    # What lerobot's OpenArmFollower.calibrate() saves: id, drive_mode 0, homing 0, range -90..90.
    saved = json.loads(path.read_text())
    assert saved['joint_1'] == {'id': 1, 'drive_mode': 0, 'homing_offset': 0, 'range_min': -90, 'range_max': 90}
    assert list(saved) == LEFT.motor_names
    robot = lerobot_openarm(emulator.port, tmp_path)
    assert robot.calibration_fpath == path and robot.calibration['gripper'].id == 8


def test_bimanual_names_and_calibration_paths_are_lerobots(calib_dir):
    pytest.importorskip('can')
    from lerobot.robots.bi_openarm_follower import BiOpenArmFollower, BiOpenArmFollowerConfig
    from lerobot.robots.openarm_follower import OpenArmFollowerConfigBase

    bi = get_robot_spec('bi_openarm_follower')
    robot = BiOpenArmFollower(
        BiOpenArmFollowerConfig(
            id=ROBOT_ID,
            calibration_dir=None,
            left_arm_config=OpenArmFollowerConfigBase(port='can0', side='left'),
            right_arm_config=OpenArmFollowerConfigBase(port='can1', side='right'),
        )
    )
    assert bi.feature_names == list(robot.action_features) and len(bi.feature_names) == 16
    left_dir = robot.left_arm.calibration_fpath.parent
    assert robot.left_arm.calibration_fpath.name == f'{ROBOT_ID}_left.json'
    assert left_dir.name == 'openarm_follower' and left_dir.parent.name == 'robots'
    assert bi.calibration_dir_name == 'openarm_follower'
    assert set(load_robot_calibration(bi, calib_dir, ROBOT_ID)) == set(bi.motor_names)
    # Per-side limits, as lerobot's LEFT/RIGHT defaults.
    maps = bi.joint_maps({})
    for side, arm in (('left', robot.left_arm), ('right', robot.right_arm)):
        for joint, (lo, hi) in arm.config.joint_limits.items():
            assert maps[f'{side}_{joint}'].limits_rad == pytest.approx((math.radians(lo), math.radians(hi)))


def test_bimanual_rollout_commands_are_lerobots_unnormalised_actions(ros, tmp_path, calib_dir):
    """bi_openarm_follower through the CLI's composition: one driver per CAN
    channel, one policy over 16 joints; every action reaches the motors as
    the MIT goal LeRobot's OpenArmFollower would send (clipped to its side's
    joint limits, degrees to radians)."""
    from helpers import run_logged
    from lerobot.robots.openarm_follower.config_openarm_follower import (
        LEFT_DEFAULT_JOINTS_LIMITS,
        RIGHT_DEFAULT_JOINTS_LIMITS,
    )

    from rollout_ros.cli import CameraConfig, Rollout, RolloutConfig
    from rollout_ros.demo import CAMERA, IMAGE_HW, prepare
    from rollout_ros.policy.tiny_checkpoint import make_tiny_act_checkpoint

    bi = get_robot_spec('bi_openarm_follower')
    ckpt = make_tiny_act_checkpoint(tmp_path / 'ckpt', bi.feature_names, {CAMERA: (3, *IMAGE_HW)})
    video = prepare(tmp_path / 'assets')['video']
    start = [math.radians(d) for d in (0.0, -10.0, 0.0, 30.0, 0.0, 0.0, 0.0, -20.0)]
    with (
        DamiaoBusEmulator(openarm_motors(start)) as left,
        DamiaoBusEmulator(openarm_motors([-q if i == 1 else q for i, q in enumerate(start)])) as right,
    ):
        cfg = RolloutConfig(
            policy_path=str(ckpt),
            robot_type='bi_openarm_follower',
            robot_id=ROBOT_ID,
            arm_ports={'left': left.port, 'right': right.port},
            can_interface='virtual',
            calibration_dir=str(calib_dir),
            cameras=[CameraConfig(CAMERA, str(video), IMAGE_HW[1], IMAGE_HW[0])],
            duration=1.5,
            max_relative_target=6.3,
            action_log_len=10_000,
            task='test',
        )
        summary, actions = run_logged(Rollout(cfg))
        assert summary['ticks'] >= 20 and summary['starved_ticks'] == 0
        assert set(actions[0]) == set(bi.feature_names) and len(actions[0]) == 16
        for side, emu, limits in (
            ('left', left, LEFT_DEFAULT_JOINTS_LIMITS),
            ('right', right, RIGHT_DEFAULT_JOINTS_LIMITS),
        ):
            names = list(limits)
            expected = [
                tuple(math.radians(min(limits[n][1], max(limits[n][0], a[f'{side}_{n}.pos']))) for n in names)
                for a in actions
            ]
            # The motors' goals, one tuple per command to the whole arm (holds sit between).
            received, current = [], {}
            for _, motor_id, goal in emu.mit_commands:
                current[motor_id] = goal
                if motor_id == 8:
                    if len(current) == 8:
                        received.append(tuple(current[i] for i in range(1, 9)))
                    current = {}
            matched = 0
            for got in received:
                if matched < len(expected) and all(abs(g - e) < 1e-3 for g, e in zip(got, expected[matched])):
                    matched += 1
            # Every matched goal is LeRobot's; on a loaded machine a command can still
            # fail on the bus (the driver counts it as a bus error), hence not all.
            assert matched >= 0.8 * len(expected), (side, matched, len(expected), expected[:1], received[:2])
        # Torque off on both arms after the ordered shutdown.
        assert not any(m.enabled for emu in (left, right) for m in emu.motors.values())
