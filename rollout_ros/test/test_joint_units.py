# SPDX-License-Identifier: Apache-2.0
"""Our per-joint affine maps must reproduce lerobot's motor normalisation for
the same servo ticks, or a checkpoint trained with lerobot sees other numbers
here than on the bench."""

import math

import numpy as np
import pytest
from helpers import lerobot_motor_bus

from rollout_ros.core.calibration import MotorCalibration, load_calibration, save_calibration
from rollout_ros.core.errors import ConfigError
from rollout_ros.core.features import FeatureMapper
from rollout_ros.core.joint_units import JointMap, NormMode
from rollout_ros.hardware.robots import get_robot_spec

CALIB = {
    'shoulder_pan': MotorCalibration(1, 0, -1024, 0, 4095),
    'shoulder_lift': MotorCalibration(2, 0, 312, 830, 3100),
    'elbow_flex': MotorCalibration(3, 1, -77, 1100, 3050),
    'wrist_flex': MotorCalibration(4, 0, 0, 900, 3300),
    'wrist_roll': MotorCalibration(5, 0, 5, 0, 4095),
    'gripper': MotorCalibration(6, 1, -1500, 2000, 3400),
}


def lerobot_bus(use_degrees, apply_drive_mode=False):
    spec = get_robot_spec('koch_follower', use_degrees)
    bus = lerobot_motor_bus(spec, CALIB)
    bus.apply_drive_mode = apply_drive_mode
    return spec, bus


@pytest.mark.parametrize('use_degrees', [False, True])
@pytest.mark.parametrize('apply_drive_mode', [False, True])
def test_ticks_to_feature_equals_lerobot(use_degrees, apply_drive_mode):
    spec, bus = lerobot_bus(use_degrees, apply_drive_mode)
    maps = {m.name: JointMap(m.name, m.norm_mode, CALIB[m.name], 4096, apply_drive_mode) for m in spec.motors}
    rng = np.random.default_rng(0)
    for motor in spec.motors:
        jmap = maps[motor.name]
        c = CALIB[motor.name]
        # Inside the range, at its edges, and outside it (lerobot clamps).
        ticks = list(rng.integers(c.range_min, c.range_max + 1, 50))
        ticks += [c.range_min, c.range_max, c.range_min - 40, c.range_max + 40]
        for t in ticks:
            expected = bus._normalize({motor.id: int(t)})[motor.id]
            ours = jmap.rad_to_feature(jmap.ticks_to_rad(int(t)))
            assert ours == pytest.approx(expected, abs=1e-9), (motor.name, t)


@pytest.mark.parametrize('use_degrees', [False, True])
def test_feature_to_ticks_matches_lerobot_unnormalize(use_degrees):
    spec, bus = lerobot_bus(use_degrees)
    maps = spec.joint_maps(CALIB)
    for motor in spec.motors:
        jmap = maps[motor.name]
        for value in np.linspace(-120, 120, 97):
            if motor.norm_mode is NormMode.RANGE_0_100:
                value = (value + 120) / 2.4 - 5
            expected = bus._unnormalize({motor.id: float(value)})[motor.id]
            ours = jmap.rad_to_ticks(jmap.feature_to_rad(float(value)))
            # lerobot truncates with int(); we round to the nearest tick.
            assert abs(ours - expected) <= 1, (motor.name, value, ours, expected)


def test_radians_are_zero_mid_range_and_degrees_consistent():
    jmap = JointMap('j', NormMode.DEGREES, MotorCalibration(1, 0, 0, 1000, 3000), 4096)
    assert jmap.ticks_to_rad(2000) == 0.0
    assert jmap.rad_to_feature(math.pi / 2) == pytest.approx(90.0)
    assert jmap.rad_to_ticks(jmap.ticks_to_rad(2345)) == 2345


def test_mapper_goes_by_name_not_position():
    spec = get_robot_spec('koch_follower')
    mapper = FeatureMapper(spec.joint_maps(CALIB))
    names = spec.motor_names
    rad = [0.1 * i for i in range(len(names))]
    forward = mapper.observation_state(names, rad)
    shuffled = mapper.observation_state(list(reversed(names)), list(reversed(rad)))
    assert forward == shuffled
    with pytest.raises(KeyError, match='gripper'):
        mapper.observation_state(names[:-1], rad[:-1])
    cmd_names, cmd = mapper.joint_command(forward)
    assert cmd_names == names
    for n, r in zip(cmd_names, cmd):
        assert r == pytest.approx(rad[names.index(n)], abs=1e-9)


def test_calibration_file_roundtrip_and_errors(tmp_path):
    spec = get_robot_spec('koch_follower')
    path = tmp_path / 'robots' / 'koch_follower' / 'arm.json'
    save_calibration(path, CALIB)
    assert load_calibration(path, spec.motor_names) == CALIB
    with pytest.raises(ConfigError, match='lerobot-calibrate'):
        load_calibration(tmp_path / 'nope.json', spec.motor_names, 'koch_follower')
    with pytest.raises(ConfigError, match='robot_type'):
        get_robot_spec('kotch_follower')


def test_calibration_dir_means_what_it_means_in_lerobot(tmp_path, monkeypatch):
    """--robot.calibration_dir is the folder holding <id>.json; without it, LeRobot's default
    location (robots/<class name>/) under HF_LEROBOT_CALIBRATION."""
    from lerobot.robots import make_robot_from_config
    from lerobot.robots.koch_follower import KochFollowerConfig

    from rollout_ros.core import calibration as calibration_mod
    from rollout_ros.hardware.robots import load_robot_calibration

    config_cls = KochFollowerConfig  # (the SO classes need feetech-servo-sdk, which we do not use)
    spec = get_robot_spec('koch_follower')
    calib = {m.name: MotorCalibration(m.id, 0, 0, 1000, 3000) for m in spec.motors}
    given = tmp_path / 'given'
    save_calibration(given / 'arm.json', calib)
    lerobot_robot = make_robot_from_config(config_cls(port='/dev/null', id='arm', calibration_dir=given))
    assert lerobot_robot.calibration_fpath == calibration_mod.calibration_path(given, spec.calibration_dir_name, 'arm')
    assert load_robot_calibration(spec, str(given), 'arm') == calib

    root = tmp_path / 'default'
    monkeypatch.setattr('lerobot.robots.robot.HF_LEROBOT_CALIBRATION', root)
    monkeypatch.setenv('HF_LEROBOT_CALIBRATION', str(root))
    lerobot_robot = make_robot_from_config(config_cls(port='/dev/null', id='arm'))
    save_calibration(lerobot_robot.calibration_fpath, calib)
    assert load_robot_calibration(spec, '', 'arm') == calib
