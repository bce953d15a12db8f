# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures: a tiny ACT checkpoint, a demo calibration, a test video and
an emulated Koch follower on a pty; ROS isolated on a domain of its own."""

import os

from rollout_ros.core.ros_domain import isolate

# Before rclpy is imported anywhere: test traffic stays on this host, on a
# domain no other session or demo here holds (whatever ROS_DOMAIN_ID the shell
# exports: CI on a shared host and a live robot never see it), unless
# ROLLOUT_TEST_ROS_DOMAIN_ID names one to watch with the ros2 tools.
os.environ['ROS_DOMAIN_ID'] = os.environ.get('ROLLOUT_TEST_ROS_DOMAIN_ID', '')
isolate(keep_domain=True)
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('HF_HUB_OFFLINE', '1')

import pytest  # noqa: E402

from rollout_ros.demo import CAMERA, IMAGE_HW, ROBOT_ID, ROBOT_TYPE, prepare  # noqa: E402
from rollout_ros.hardware.emulator.servo_bus_emulator import KOCH_IDS, KOCH_MODELS, ServoBusEmulator  # noqa: E402,E501


@pytest.fixture(scope='session')
def assets(tmp_path_factory):
    """Calibration, tiny ACT checkpoint and video, as the demo makes them."""
    return prepare(tmp_path_factory.mktemp('assets'))


@pytest.fixture
def emulator(assets):
    initial = dict(zip(KOCH_IDS, assets['initial']))
    with ServoBusEmulator(dict(zip(KOCH_IDS, KOCH_MODELS)), initial_positions=initial) as emu:
        yield emu


@pytest.fixture(scope='session')
def ros():
    """One rclpy context for the session: re-creating the DDS participant
    between tests left a later subprocess's service replies undelivered."""
    import rclpy

    rclpy.init()
    yield
    rclpy.try_shutdown()


@pytest.fixture
def rollout_config(assets, emulator):
    from rollout_ros.cli import CameraConfig, RolloutConfig

    def make(**overrides):
        cfg = RolloutConfig(
            policy_path=str(assets['checkpoint']),
            robot_type=ROBOT_TYPE,
            robot_port=emulator.port,
            robot_id=ROBOT_ID,
            calibration_dir=str(assets['calibration_dir']),
            cameras=[CameraConfig(CAMERA, str(assets['video']), IMAGE_HW[1], IMAGE_HW[0], 30.0)],
            fps=30.0,
            duration=2.0,
            task='test',
        )
        for k, v in overrides.items():
            setattr(cfg, k, v)
        return cfg

    return make
