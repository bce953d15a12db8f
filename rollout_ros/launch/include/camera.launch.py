# SPDX-License-Identifier: Apache-2.0
"""Camera(s): one lifecycle node per camera (`camera_<name>`), publishing
`camera_<name>/image_raw` (sensor_msgs/Image) in the namespace.

Several cameras: comma lists, e.g. `camera_name:=front,wrist
camera_index_or_path:=0,/dev/video2`; camera_width/height/fps take one value
for all or one per camera.
"""

from rollout_ros.launch_support import component_launch


def generate_launch_description():
    return component_launch('camera')
