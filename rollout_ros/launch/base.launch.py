"""Base rollout: driver, camera, policy and the base strategy, each its own process.

    ros2 launch rollout_ros base.launch.py policy_path:=<ckpt> robot_port:=/dev/ttyACM0 \
        camera_index_or_path:=0 duration:=60

`use_driver:=false` leaves the robot to your own driver: it must publish
`joint_states` and accept `joint_commands` (sensor_msgs/JointState, radians,
lerobot joint names) in the launch namespace. The strategy configures and
activates the other nodes itself and ends the launch when it stops.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from rollout_ros.hardware.robots import get_robot_spec

ARGS = [
    ('namespace', '', 'Namespace of every node and topic.'),
    ('params_file', os.path.join(get_package_share_directory('rollout_ros'), 'config', 'base.yaml'),
     'YAML with the parameters of all nodes; the arguments below override it.'),
    ('policy_path', '', 'Checkpoint directory or Hub id (lerobot --policy.path).'),
    ('device', 'cpu', 'Torch device: cpu, cuda, mps or auto (lerobot --policy.device).'),
    ('robot_type', 'koch_follower', 'lerobot --robot.type.'),
    ('robot_port', '/dev/ttyACM0', 'Servo bus port (lerobot --robot.port).'),
    ('left_robot_port', '', 'bi_* robots: left arm port (lerobot --robot.left_arm_config.port).'),
    ('right_robot_port', '', 'bi_* robots: right arm port (lerobot --robot.right_arm_config.port).'),
    ('robot_id', 'follower', 'Calibration id (lerobot --robot.id).'),
    ('calibration_dir', '', "lerobot calibration directory; '' = lerobot's default."),
    ('task', '', 'Instruction given to the policy (lerobot --task).'),
    ('duration', '0.0', 'Run time in seconds; 0 = until stopped (lerobot --duration).'),
    ('fps', '30.0', 'Control rate in Hz (lerobot --fps).'),
    ('interpolation_multiplier', '1', 'Commands per policy action (lerobot --interpolation_multiplier).'),
    ('camera_name', 'front', 'Camera name: observation.images.<camera_name>.'),
    ('camera_index_or_path', '0', 'Camera device index, /dev/video path or video file.'),
    ('camera_width', '640', 'Camera width [px].'),
    ('camera_height', '480', 'Camera height [px].'),
    ('camera_fps', '30.0', 'Camera rate [Hz].'),
    ('camera_topic', '', "Image topic fed to the policy; '' = our camera node's "
     '(<namespace>/camera_<camera_name>/image_raw). Set it with use_camera:=false.'),
    ('torch_threads', '1', 'Torch CPU threads of the policy process; 0 = torch default.'),
    ('use_driver', 'true', 'Start our driver; false = your stack provides joint_states/joint_commands.'),
    ('use_camera', 'true', 'Start our camera node; false = use camera_topic from your own driver.'),
]


def _nodes(context):
    arg = {name: LaunchConfiguration(name).perform(context) for name, _, _ in ARGS}
    ns, params_file = arg['namespace'], arg['params_file']
    cam = arg['camera_name']
    robot = {'robot_type': arg['robot_type'], 'robot_id': arg['robot_id'],
             'calibration_dir': arg['calibration_dir']}
    use_driver = arg['use_driver'].lower() == 'true'
    use_camera = arg['use_camera'].lower() == 'true'
    # One driver per bus: bi_* robots get one per arm (left_/right_ joints).
    spec = get_robot_spec(arg['robot_type'])
    drivers = {'robot_driver': (arg['robot_type'], arg['robot_id'], arg['robot_port'], '')}
    if spec.arms:
        drivers = {f'robot_driver_{p.rstrip("_")}': (arm.type, f'{arg["robot_id"]}_{p.rstrip("_")}',
                                                      arg[f'{p}robot_port'], p) for p, arm in spec.arms}
    if not use_driver:
        drivers = {}
    managed = ['policy'] + ([f'camera_{cam}'] if use_camera else []) + list(drivers)
    prefix = f'/{ns.strip("/")}' if ns.strip('/') else ''

    nodes = [LifecycleNode(
        package='rollout_ros', executable='policy', name='policy', namespace=ns, output='screen',
        parameters=[params_file, {'policy_path': arg['policy_path'], 'device': arg['device'],
                                  'robot_type': arg['robot_type'], 'camera_names': [cam],
                                  'task': arg['task'], 'torch_threads': int(arg['torch_threads'])}])]
    if use_camera:
        nodes.append(LifecycleNode(
            package='rollout_ros', executable='camera', name=f'camera_{cam}', namespace=ns,
            output='screen',
            parameters=[params_file, {'camera_name': cam, 'index_or_path': arg['camera_index_or_path'],
                                      'width': int(arg['camera_width']), 'height': int(arg['camera_height']),
                                      'fps': float(arg['camera_fps'])}]))
    for name, (arm_type, arm_id, port, joint_prefix) in drivers.items():
        nodes.append(LifecycleNode(
            package='rollout_ros', executable='robot_driver', name=name, namespace=ns, output='screen',
            parameters=[params_file, {**robot, 'robot_type': arm_type, 'robot_id': arm_id,
                                      'robot_port': port, 'joint_prefix': joint_prefix}]))
    strategy = LifecycleNode(
        package='rollout_ros', executable='base_strategy', name='base_strategy', namespace=ns,
        output='screen',
        parameters=[params_file, {
            **robot, 'fps': float(arg['fps']), 'duration': float(arg['duration']), 'task': arg['task'],
            'interpolation_multiplier': int(arg['interpolation_multiplier']),
            'camera_names': [cam], 'managed_nodes': [f'{prefix}/{n}' for n in managed],
            'policy_service': f'{prefix}/policy/infer',
            'camera_topic_template': arg['camera_topic'] or f'{prefix}/camera_{{name}}/image_raw'}])
    nodes.append(strategy)
    # The strategy ends when its duration is over or it fails: end the launch.
    nodes.append(RegisterEventHandler(OnProcessExit(
        target_action=strategy,
        on_exit=lambda event, _: [EmitEvent(event=Shutdown(
            reason='base_strategy finished' if event.returncode == 0
            else f'base_strategy failed (exit code {event.returncode}); see its log'))])))
    return nodes


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=desc) for name, default, desc in ARGS]
        + [OpaqueFunction(function=_nodes)])
