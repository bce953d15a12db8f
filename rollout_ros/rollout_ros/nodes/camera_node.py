# SPDX-License-Identifier: Apache-2.0
"""OpenCV camera node: publishes `~/image_raw` and `~/camera_info`
(sensor-data QoS) stamped with the capture time, from the capture thread so a
slow executor never delays frames. Run one node per camera.

Both carry a frame_id usable as a TF frame (`frame_id`, by default
`<namespace>_camera_<name>_optical_frame`, no leading slash); the
CameraInfo gives the published size, and intrinsics all zero (uncalibrated,
the ROS convention) since OpenCV capture knows none."""

import sys

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.qos import qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image

from rollout_ros.core.limits import LIMITS
from rollout_ros.hardware.camera import Frame, OpenCVCamera
from rollout_ros.nodes.managed_node import ManagedNode
from rollout_ros.nodes.spin import run_node


class CameraNode(ManagedNode):
    def __init__(self, node_name: str = 'camera', **kwargs):
        super().__init__(node_name, **kwargs)
        self.declare('camera_name', 'front', 'Camera name: the <cam> of observation.images.<cam>.')
        self.declare(
            'frame_id',
            '',
            "TF frame of the images and camera info; '' = "
            '<namespace>_camera_<camera_name>_optical_frame (camera_<camera_name>_optical_frame at the '
            'root namespace).',
        )
        self.declare('index_or_path', '0', 'Device index, /dev/video path, or a video file (loops).')
        self.declare(
            'width',
            640,
            'Image width [px] (frames are resized if the source differs).',
            **LIMITS['camera_size'].kwargs(),
        )
        self.declare('height', 480, 'Image height [px].', **LIMITS['camera_size'].kwargs())
        self.declare('fps', 30.0, 'Capture rate [Hz] (a video file is paced to it).', **LIMITS['camera_fps'].kwargs())
        self.declare('color_mode', 'rgb', "Channel order of published images: 'rgb' or 'bgr'.")
        self.declare('fourcc', '', "Capture format for devices, e.g. 'MJPG'; '' = driver default.")
        self.declare('rotation', 0, 'Rotate published images clockwise by 0, 90, 180 or -90 degrees.')
        self.declare(
            'warmup_s',
            1.0,
            'Frames read and dropped at configure so exposure settles [s] (devices only).',
            min_value=0.0,
        )
        self.declare(
            'stall_timeout_s',
            0.5,
            'No new frame for this long = stalled: reported on /diagnostics and in the log [s].',
            min_value=0.01,
        )
        self.camera: OpenCVCamera | None = None
        self._pub = None
        self._info_pub = None
        self.frame_id = ''
        self._diag_pub = None
        self._diag_timer = None
        self._active = False
        self.published = 0
        self.stalled = False

    def configure(self) -> None:
        cam = OpenCVCamera(
            self.param('index_or_path'),
            self.param('width'),
            self.param('height'),
            self.param('fps'),
            self.param('color_mode'),
            self.param('fourcc'),
            self.param('rotation'),
            self.param('warmup_s'),
        )
        cam.open()
        self.camera = cam
        self._pub = self.create_lifecycle_publisher(Image, '~/image_raw', qos_profile_sensor_data)
        self._info_pub = self.create_lifecycle_publisher(CameraInfo, '~/camera_info', qos_profile_sensor_data)
        self.frame_id = self.param('frame_id').strip().lstrip('/') or optical_frame(
            self.get_namespace(), self.param('camera_name')
        )
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        cam.on_frame = self._publish

    def activate(self) -> None:
        self._active = True
        self.stalled = False
        self.camera.start()
        self._diag_timer = self.create_timer(min(1.0, self.param('stall_timeout_s') / 2), self._check)

    def deactivate(self) -> None:
        self._active = False
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self.camera is not None:
            self.camera.stop()

    def _check(self) -> None:
        """Report the frame age: consumers see the capture stamp, operators see this."""
        age = self.camera.age_s() if self.camera is not None else None
        stalled = age is None or age > self.param('stall_timeout_s')
        if stalled and not self.stalled:
            self.get_logger().error(
                f'camera {self.param("camera_name")!r} stalled: no frame for '
                f'{age if age is not None else float("inf"):.2f} s'
            )
        elif self.stalled and not stalled:
            self.get_logger().info(f'camera {self.param("camera_name")!r} delivers frames again')
        self.stalled = stalled
        status = DiagnosticStatus(
            level=DiagnosticStatus.ERROR if stalled else DiagnosticStatus.OK,
            name=f'{self.get_fully_qualified_name()}: camera {self.param("camera_name")}',
            hardware_id=str(self.param('index_or_path')),
            message=f'stalled for {age:.2f} s'
            if stalled and age is not None
            else ('no frame yet' if stalled else 'streaming'),
            values=[
                KeyValue(key='frame_age_s', value=f'{age:.3f}' if age is not None else 'none'),
                KeyValue(key='frames_published', value=str(self.published)),
            ],
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)

    def cleanup(self) -> None:
        if self.camera is not None:
            self.camera.close()
            self.camera = None
        for pub in (self._pub, self._info_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self._pub = self._info_pub = None
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None

    def abort(self) -> None:
        # The capture thread must not publish through a node being destroyed.
        self._active = False
        if self.camera is not None:
            self.camera.stop()

    def _publish(self, frame: Frame) -> None:
        if not self._active:
            return
        msg = Image()
        msg.header.stamp = Time(nanoseconds=int(frame.capture_time * 1e9)).to_msg()
        msg.header.frame_id = self.frame_id
        msg.height, msg.width = frame.image.shape[:2]  # after rotation
        msg.encoding = 'rgb8' if self.param('color_mode') == 'rgb' else 'bgr8'
        msg.step = msg.width * 3
        msg.data = frame.image.tobytes()
        self._pub.publish(msg)
        self._info_pub.publish(CameraInfo(header=msg.header, height=msg.height, width=msg.width))
        self.published += 1


def optical_frame(namespace: str, camera: str) -> str:
    """`<namespace>_camera_<name>_optical_frame`: a TF frame name (no leading
    slash, unique per run) in the optical convention (z forward, x right)."""
    prefix = namespace.strip('/').replace('/', '_')
    return f'{prefix}_camera_{camera}_optical_frame' if prefix else f'camera_{camera}_optical_frame'


def main(args=None):
    return run_node(CameraNode, args)


if __name__ == '__main__':
    sys.exit(main())
