# SPDX-License-Identifier: Apache-2.0
"""Base rollout: driver, camera, policy and the base strategy, each its own
process; nothing is recorded (lerobot-rollout --strategy.type=base).

    ros2 launch rollout_ros base.launch.py policy_path:=<ckpt> robot_port:=/dev/ttyACM0 \\
        camera_index_or_path:=0 duration:=60

`use_driver:=false` leaves the robot to your own driver: it must publish
`joint_states` and accept `joint_commands` (sensor_msgs/JointState, radians,
lerobot joint names) in the launch namespace; `use_camera:=false
camera_topic:=/my/image_raw` reads any sensor_msgs/Image topic. The strategy
configures and activates the other nodes itself and ends the launch when it
stops. Arguments: `ros2 launch rollout_ros base.launch.py --show-args`.
"""

from rollout_ros.launch_support import strategy_launch


def generate_launch_description():
    return strategy_launch('base')
