"""OpenCV camera node: publishes `~/image_raw` (sensor-data QoS) stamped with
the capture time, from the capture thread so a slow executor never delays
frames. Run one node per camera."""

import sys

from rclpy.qos import qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import Image

from rollout_ros.hardware.camera import Frame, OpenCVCamera
from rollout_ros.nodes.managed_node import ManagedNode
from rollout_ros.nodes.spin import run_node


class CameraNode(ManagedNode):

    def __init__(self, node_name: str = 'camera', **kwargs):
        super().__init__(node_name, **kwargs)
        self.declare('camera_name', 'front',
                     'Camera name: the <cam> of observation.images.<cam>; also the frame_id.')
        self.declare('index_or_path', '0', 'Device index, /dev/video path, or a video file (loops).')
        self.declare('width', 640, 'Image width [px] (frames are resized if the source differs).',
                     min_value=1, max_value=8192)
        self.declare('height', 480, 'Image height [px].', min_value=1, max_value=8192)
        self.declare('fps', 30.0, 'Capture rate [Hz] (a video file is paced to it).',
                     min_value=0.1, max_value=1000.0)
        self.declare('color_mode', 'rgb', "Channel order of published images: 'rgb' or 'bgr'.")
        self.declare('fourcc', '', "Capture format for devices, e.g. 'MJPG'; '' = driver default.")
        self.camera: OpenCVCamera | None = None
        self._pub = None
        self._active = False
        self.published = 0

    def configure(self) -> None:
        cam = OpenCVCamera(self.param('index_or_path'), self.param('width'), self.param('height'),
                           self.param('fps'), self.param('color_mode'), self.param('fourcc'))
        cam.open()
        self.camera = cam
        self._pub = self.create_lifecycle_publisher(Image, '~/image_raw', qos_profile_sensor_data)
        cam.on_frame = self._publish

    def activate(self) -> None:
        self._active = True
        self.camera.start()

    def deactivate(self) -> None:
        self._active = False
        if self.camera is not None:
            self.camera.stop()

    def cleanup(self) -> None:
        if self.camera is not None:
            self.camera.close()
            self.camera = None
        if self._pub is not None:
            self.destroy_lifecycle_publisher(self._pub)
            self._pub = None

    def shutdown(self) -> None:
        self.cleanup()

    def _publish(self, frame: Frame) -> None:
        if not self._active:
            return
        msg = Image()
        msg.header.stamp = Time(nanoseconds=int(frame.capture_time * 1e9)).to_msg()
        msg.header.frame_id = self.param('camera_name')
        msg.height, msg.width = frame.image.shape[:2]
        msg.encoding = 'rgb8' if self.param('color_mode') == 'rgb' else 'bgr8'
        msg.step = msg.width * 3
        msg.data = frame.image.tobytes()
        self._pub.publish(msg)
        self.published += 1


def main(args=None):
    return run_node(CameraNode, args)


if __name__ == '__main__':
    sys.exit(main())
