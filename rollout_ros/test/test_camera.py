# SPDX-License-Identifier: Apache-2.0
"""The camera node over a video file: images carry their capture time, a
stall is reported on /diagnostics and recovers, rotation swaps the shape."""

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from helpers import spin_in_background, wait_for
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image

from rollout_ros.core.errors import ConfigError
from rollout_ros.hardware.camera import OpenCVCamera
from rollout_ros.nodes.camera_node import CameraNode


@pytest.fixture
def camera_node(ros, assets):
    nodes = []

    def make(**params):
        base = dict(index_or_path=str(assets['video']), width=128, height=96, fps=30.0, stall_timeout_s=0.3)
        base.update(params)
        node = CameraNode('camera_test', parameter_overrides=[Parameter(k, value=v) for k, v in base.items()])
        nodes.append((node, spin_in_background(node)))
        return node

    yield make
    for node, ex in nodes:
        node.trigger_shutdown()
        ex.shutdown(timeout_sec=1.0)
        node.destroy_node()


def test_images_stamped_with_capture_time_and_stall_reported(camera_node):
    node = camera_node()
    images, diags = [], []
    node.create_subscription(Image, '~/image_raw', images.append, qos_profile_sensor_data)
    node.create_subscription(DiagnosticArray, '/diagnostics', diags.append, 10)
    node.trigger_configure()
    node.trigger_activate()
    assert wait_for(lambda: len(images) > 10)
    img = images[-1]
    assert (img.width, img.height, img.encoding) == (128, 96, 'rgb8')
    age = (node.get_clock().now() - Time.from_msg(img.header.stamp)).nanoseconds * 1e-9
    assert 0 <= age < 1.0
    assert np.frombuffer(img.data, np.uint8).size == 128 * 96 * 3
    assert wait_for(lambda: diags and diags[-1].status[0].level == DiagnosticStatus.OK)

    node.camera.stall(1.2)
    count = len(images)
    assert wait_for(lambda: node.stalled and diags[-1].status[0].level == DiagnosticStatus.ERROR)
    assert 'stalled' in diags[-1].status[0].message
    assert len(images) <= count + 1  # nothing new while stalled
    assert wait_for(lambda: not node.stalled and diags[-1].status[0].level == DiagnosticStatus.OK)
    assert len(images) > count + 1


def test_rotation_swaps_width_and_height(camera_node):
    node = camera_node(rotation=90)
    images = []
    node.create_subscription(Image, '~/image_raw', images.append, qos_profile_sensor_data)
    node.trigger_configure()
    node.trigger_activate()
    assert wait_for(lambda: images)
    assert (images[-1].width, images[-1].height) == (96, 128)


def test_bad_source_and_rotation_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match='index_or_path'):
        OpenCVCamera(str(tmp_path / 'missing.mp4'), 64, 48, 30)
    with pytest.raises(ConfigError, match='rotation'):
        OpenCVCamera('0', 64, 48, 30, rotation=45)


def test_camera_info_and_a_tf_frame_with_every_image(camera_node):
    node = camera_node(camera_name='wrist')
    images, infos = [], []
    node.create_subscription(Image, '~/image_raw', images.append, qos_profile_sensor_data)
    node.create_subscription(CameraInfo, '~/camera_info', infos.append, qos_profile_sensor_data)
    node.trigger_configure()
    node.trigger_activate()
    assert wait_for(lambda: len(images) > 10 and len(infos) > 10)
    info = infos[-1]
    assert (info.width, info.height) == (128, 96) and info.k[0] == 0.0  # size; uncalibrated
    frames = {m.header.frame_id for m in images + infos}
    assert frames == {'camera_wrist_optical_frame'}
    # Every image has its camera info under the same capture stamp.
    info_stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in infos}
    assert len(info_stamps & {(m.header.stamp.sec, m.header.stamp.nanosec) for m in images}) >= 10


def test_optical_frame_names_are_tf_frames():
    from rollout_ros.nodes.camera_node import optical_frame

    assert optical_frame('/', 'front') == 'camera_front_optical_frame'
    assert optical_frame('/lab/arm1', 'front') == 'lab_arm1_camera_front_optical_frame'
