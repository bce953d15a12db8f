"""Camera(s): one lifecycle node per camera (`camera_<name>`), publishing
`camera_<name>/image_raw` (sensor_msgs/Image) in the namespace.

Several cameras: comma lists, e.g. `camera_name:=front,wrist
camera_index_or_path:=0,/dev/video2`; camera_width/height/fps take one value
for all or one per camera.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # launch files are not a package
from rollout_launch import CAMERA_NAME, CAMERA_SIZE, Arg, cameras, component, lifecycle_node  # noqa: E402

ARGS = [
    CAMERA_NAME,
    Arg('camera_index_or_path', '0', 'Device index, /dev/video path or video file, one per camera '
        '(lerobot cameras.<name>.index_or_path).'),
    *CAMERA_SIZE,
    Arg('camera_fps', '30.0', 'Capture rate [Hz], one value or one per camera (lerobot cameras.<name>.fps).'),
]


def nodes(a):
    return [lifecycle_node(a, 'camera', f'camera_{c.size.name}', camera_name=c.size.name,
                           index_or_path=c.index_or_path, width=c.size.width, height=c.size.height, fps=c.fps)
            for c in cameras(a)]


def generate_launch_description():
    return component('camera', ARGS, nodes)
