# SPDX-License-Identifier: Apache-2.0
"""OpenArm Mini leaders (Feetech) mapped into the OpenArm follower's joint
space: for a set of raw servo positions, the follower values we derive equal
LeRobot's OpenArmMini.get_action on the same calibration (joint_6/joint_7
swap, per-side flips, gripper 0..100 -> degrees), and the way back equals its
write_goal_positions. Names and calibration paths are LeRobot's, single and
bimanual; bi_so_leader pairs with bi_so_follower the same way."""

import random

import pytest

from rollout_ros.core.calibration import MotorCalibration, save_calibration
from rollout_ros.hardware.leaders import (
    LeaderFollowerMap,
    get_leader_spec,
    leader_calibration_paths,
    load_leader_calibration,
)
from rollout_ros.hardware.robots import get_robot_spec

TELEOP_ID = 'mini'


def mini_calibration(seed: int) -> dict[str, MotorCalibration]:
    """What lerobot's openarm_mini calibrate() records: full range for the
    joints around a half-turn homing offset, the gripper's measured range."""
    rng = random.Random(seed)
    calib = {f'joint_{i}': MotorCalibration(i, 0, rng.randint(-2000, 2000), 0, 4095) for i in range(1, 8)}
    calib['gripper'] = MotorCalibration(8, rng.randint(0, 1), rng.randint(-2000, 2000), 1800, 2700)
    return calib


def lerobot_mini(monkeypatch, tmp_path, side):
    mod = pytest.importorskip('lerobot.teleoperators.openarm_mini.openarm_mini')
    from lerobot.motors.feetech import FeetechMotorsBus
    from lerobot.motors.motors_bus import SerialMotorsBus

    def bus_without_port(port, motors, calibration):
        # Only the serial plumbing (feetech-servo-sdk) is left out: the
        # normalisation under test lives in lerobot's base class.
        bus = object.__new__(FeetechMotorsBus)
        SerialMotorsBus.__init__(bus, port, motors, calibration)
        return bus

    monkeypatch.setattr(mod, 'FeetechMotorsBus', bus_without_port)
    return mod.OpenArmMini(mod.OpenArmMiniConfig(port='/dev/null', side=side, id=TELEOP_ID, calibration_dir=tmp_path))


@pytest.mark.parametrize('side', ['left', 'right', ''])
def test_follower_values_equal_lerobots_openarm_mini(monkeypatch, tmp_path, side):
    calib = mini_calibration(seed=len(side))
    spec = get_leader_spec('openarm_mini', side=side)
    save_calibration(leader_calibration_paths(tmp_path, spec, TELEOP_ID)[0], calib)
    robot = lerobot_mini(monkeypatch, tmp_path, side or None)
    lr_bus = robot.bus
    ours_calib = load_leader_calibration(tmp_path, spec, TELEOP_ID)
    assert ours_calib == calib
    follower = get_robot_spec('openarm_follower', side=side)
    bridge = LeaderFollowerMap(spec.joint_maps(ours_calib), follower.joint_maps({}), spec.follower_map)
    leader_maps = spec.joint_maps(ours_calib)

    rng = random.Random(7)
    for _ in range(20):
        raw = {m.name: rng.randint(calib[m.name].range_min - 50, calib[m.name].range_max + 50) for m in spec.motors}
        normalized = lr_bus._normalize({lr_bus.motors[n].id: t for n, t in raw.items()})
        monkeypatch.setattr(
            lr_bus,
            'sync_read',
            lambda *_a, normalized=normalized, **_k: {n: normalized[lr_bus.motors[n].id] for n in lr_bus.motors},
        )
        theirs = type(robot).get_action.__wrapped__(robot)
        follower_rad = bridge.to_follower({n: leader_maps[n].ticks_to_rad(t) for n, t in raw.items()})
        ours = {f'{n}.pos': follower.joint_maps({})[n].rad_to_feature(r) for n, r in follower_rad.items()}
        assert ours == pytest.approx(theirs, abs=1e-9)

        # And back: a follower pose sent to the leader (lerobot's send_feedback).
        written = {}
        monkeypatch.setattr(
            lr_bus,
            'sync_write',
            lambda _reg, goals, written=written: written.update(
                {
                    n: t
                    for n, t in zip(
                        goals, lr_bus._unnormalize({lr_bus.motors[n].id: v for n, v in goals.items()}).values()
                    )
                }
            ),
        )
        robot.write_goal_positions(theirs)
        back = bridge.to_leader(follower_rad)
        ours_ticks = {n: leader_maps[n].rad_to_ticks(r) for n, r in back.items()}
        assert set(ours_ticks) == set(written)
        for n in written:
            assert abs(ours_ticks[n] - written[n]) <= 1, (n, ours_ticks[n], written[n])


def test_bimanual_mini_is_named_and_filed_as_lerobots(monkeypatch, tmp_path):
    mod = pytest.importorskip('lerobot.teleoperators.bi_openarm_mini')
    single = pytest.importorskip('lerobot.teleoperators.openarm_mini.openarm_mini')
    from lerobot.motors.feetech import FeetechMotorsBus
    from lerobot.motors.motors_bus import SerialMotorsBus
    from lerobot.teleoperators.openarm_mini import OpenArmMiniConfigBase

    def bus_without_port(port, motors, calibration):
        bus = object.__new__(FeetechMotorsBus)
        SerialMotorsBus.__init__(bus, port, motors, calibration)
        return bus

    monkeypatch.setattr(single, 'FeetechMotorsBus', bus_without_port)
    teleop = mod.BiOpenArmMini(
        mod.BiOpenArmMiniConfig(
            id=TELEOP_ID,
            calibration_dir=tmp_path,
            left_arm_config=OpenArmMiniConfigBase(port='/dev/null'),
            right_arm_config=OpenArmMiniConfigBase(port='/dev/null'),
        )
    )
    spec = get_leader_spec('bi_openarm_mini')
    follower = get_robot_spec('bi_openarm_follower')
    assert list(teleop.action_features) == follower.feature_names
    for side in ('left', 'right'):
        arm_spec = dict(spec.arms)[f'{side}_']
        path = leader_calibration_paths(tmp_path, arm_spec, f'{TELEOP_ID}_{side}')[0]
        assert path == getattr(teleop, f'{side}_arm').calibration_fpath
        save_calibration(path, mini_calibration(seed=3))
    calib = load_leader_calibration(tmp_path, spec, TELEOP_ID)
    bridge = LeaderFollowerMap(spec.joint_maps(calib), follower.joint_maps({}), spec.follower_map)
    # The right arm's own flips: its joint_2 turns the other way, the left's does not.
    leader_maps = spec.joint_maps(calib)
    pose = {n: leader_maps[n].feature_to_rad(10.0) for n in spec.motor_names if 'gripper' not in n}
    pose.update({n: leader_maps[n].feature_to_rad(50.0) for n in spec.motor_names if 'gripper' in n})
    out = {n: follower.joint_maps({})[n].rad_to_feature(r) for n, r in bridge.to_follower(pose).items()}
    assert out['left_joint_2'] == pytest.approx(10.0) and out['right_joint_2'] == pytest.approx(-10.0)
    assert out['left_joint_1'] == pytest.approx(-10.0) and out['right_gripper'] == pytest.approx(-32.5)


def test_bi_so_leader_pairs_with_bi_so_follower(tmp_path):
    spec = get_leader_spec('bi_so_leader')
    follower = get_robot_spec('bi_so_follower')
    assert spec.motor_names == follower.motor_names and spec.actuated
    calib = {}
    for side in ('left', 'right'):
        arm_calib = {m.name: MotorCalibration(m.id, 0, 0, 1000, 3000) for m in dict(spec.arms)[f'{side}_'].motors}
        save_calibration(
            tmp_path / f'{TELEOP_ID}_{side}.json', arm_calib
        )  # lerobot: <calibration_dir>/<id>_<side>.json
        calib.update({f'{side}_{n}': c for n, c in arm_calib.items()})
    assert load_leader_calibration(tmp_path, spec, TELEOP_ID) == calib
    bridge = LeaderFollowerMap(spec.joint_maps(calib), follower.joint_maps(calib))
    assert bridge.to_follower({'right_gripper': 0.3}) == pytest.approx({'right_gripper': 0.3})


def test_mini_cannot_drive_a_single_arm_follower_of_another_kind():
    from rollout_ros.core.errors import ConfigError

    spec = get_leader_spec('openarm_mini')
    with pytest.raises(ConfigError, match='pair a leader with a follower of the same arm'):
        LeaderFollowerMap(
            spec.joint_maps(mini_calibration(1)),
            get_robot_spec('bi_openarm_follower').joint_maps({}),
            spec.follower_map,
        )


def dagger_config(robot_type, teleop_type, left='', right='', port=''):
    from rollout_ros.recording_config import DatasetConfig, RecordingConfig, TeleopConfig
    from rollout_ros.run_description import RolloutConfig

    return RolloutConfig(
        strategy='dagger',
        robot_type=robot_type,
        robot_id='arms',
        arm_ports={'left': 'can0', 'right': 'can1'},
        task='fold the t-shirt',
        recording=RecordingConfig(
            dataset=DatasetConfig(repo_id='u/rollout_fold'),
            teleop=TeleopConfig(teleop_type, port, 'minis', left, right),
        ),
    )


@pytest.mark.parametrize(
    'robot_type, teleop_type', [('bi_openarm_follower', 'bi_openarm_mini'), ('bi_so_follower', 'bi_so_leader')]
)
def test_bimanual_dagger_run_has_one_teleop_node_with_both_ports(robot_type, teleop_type):
    from rollout_ros.cli import CLI_NAMES
    from rollout_ros.run_description import describe

    run = describe(dagger_config(robot_type, teleop_type, '/dev/ttyACM2', '/dev/ttyACM3'), naming=CLI_NAMES)
    teleop = [n for n in run.managed if n.component == 'teleop']
    assert len(teleop) == 1
    params = teleop[0].params
    assert (params['teleop_type'], params['teleop_left_port'], params['teleop_right_port'], params['robot_type']) == (
        teleop_type,
        '/dev/ttyACM2',
        '/dev/ttyACM3',
        robot_type,
    )
    drivers = {n.name: n.params for n in run.managed if n.component == 'driver'}
    assert {p['robot_side'] for p in drivers.values()} == ({'left', 'right'} if 'openarm' in robot_type else {''})


@pytest.mark.parametrize(
    'robot_type, teleop_type, flag',
    [
        ('bi_openarm_follower', 'openarm_mini', '--teleop.type'),  # one mini for two arms
        ('bi_so_follower', 'so101_leader', '--teleop.type'),
        ('openarm_follower', 'bi_openarm_mini', '--teleop.type'),
        ('bi_openarm_follower', 'bi_openarm_mini', '--teleop.right_arm_config.port'),
    ],
)
def test_leader_that_cannot_drive_the_robot_is_refused_naming_the_flag(robot_type, teleop_type, flag):
    from rollout_ros.cli import CLI_NAMES
    from rollout_ros.core.errors import ConfigError
    from rollout_ros.run_description import describe

    right = '' if flag.startswith('--teleop.right') else '/dev/ttyACM3'
    with pytest.raises(ConfigError) as err:
        describe(dagger_config(robot_type, teleop_type, '/dev/ttyACM2', right), naming=CLI_NAMES)
    assert err.value.param == flag, err.value
