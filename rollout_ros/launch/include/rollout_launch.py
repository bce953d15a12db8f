"""What the rollout_ros launch files share.

Not a launch file: launch loads launch files by path, not as a package, so
the files beside this one (and the strategy launch files one level up) put
this folder on sys.path and import it. It holds, once:
- the arguments several files declare (launch keeps the first declaration of
  a name, so each must read the same wherever it appears);
- the node names: the sub-launch files start nodes under them and the
  strategy lists the same names in `managed_nodes`;
- the strategy node, and the end of the launch when it exits.
"""

import os
from typing import NamedTuple

from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, IncludeLaunchDescription, OpaqueFunction,
                            RegisterEventHandler)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch_ros.actions import LifecycleNode
from launch_ros.utilities import make_namespace_absolute, prefix_namespace

from rollout_ros.core.errors import ConfigError
from rollout_ros.core.limits import check_value
from rollout_ros.hardware.robots import get_robot_spec

INCLUDE_DIR = os.path.dirname(os.path.abspath(__file__))
# <share>/launch/include -> <share>/config: the same layout in the source tree
# and installed, so the defaults work without sourcing a workspace.
CONFIG_DIR = os.path.normpath(os.path.join(INCLUDE_DIR, os.pardir, os.pardir, 'config'))


class Arg(NamedTuple):
    name: str
    default: str
    description: str
    choices: tuple[str, ...] | None = None


def params_file_arg(config: str) -> Arg:
    return Arg('params_file', os.path.join(CONFIG_DIR, config),
               'YAML with the parameters of all nodes (sections /**/<node>); the arguments of this launch '
               'file override the keys they set.')


NAMESPACE = Arg('namespace', '', 'Namespace of every node and topic (one per robot on a shared ROS graph).')
ROBOT = [
    Arg('robot_type', 'koch_follower', 'lerobot --robot.type (koch_follower, so100_follower, '
        'so101_follower, bi_so_follower: one driver per arm).'),
    Arg('robot_id', 'follower', 'Calibration id (lerobot --robot.id); bi_* arms use <robot_id>_left/_right.'),
    Arg('calibration_dir', '', "lerobot calibration directory; '' = lerobot's default."),
    Arg('use_degrees', 'false', 'Body joints in degrees instead of -100..100 (lerobot --robot.use_degrees; '
        'must match how the policy was trained).'),
]
CAMERA_NAME = Arg('camera_name', 'front', 'Camera name(s), comma-separated: observation.images.<name> '
                  '(the keys of lerobot --robot.cameras).')
CAMERA_SIZE = [
    Arg('camera_width', '640', 'Image width [px], one value or one per camera (lerobot cameras.<name>.width).'),
    Arg('camera_height', '480', 'Image height [px], one value or one per camera.'),
]
CAMERA_TOPIC = Arg('camera_topic', '', "Image topic per camera, {name} = camera name; '' = our camera nodes' "
                   '(<namespace>/camera_<name>/image_raw). Set it with use_camera:=false; camera_width/height '
                   'must then give the recorded image size.')
TASK = Arg('task', '', 'Instruction given to the policy and stored with every recorded frame (lerobot --task, '
           '--dataset.single_task).')
FPS = Arg('fps', '30.0', 'Control rate [Hz] (lerobot --fps); recording strategies record one row per tick, '
          'so it must then be an integer.')

# use_<component>:=false: this launch neither starts nor manages that part;
# another stack provides it under the same topic and service names.
USE = {
    'driver': Arg('use_driver', 'true', 'Start our driver(s); false = your stack publishes joint_states and '
                  'takes joint_commands (sensor_msgs/JointState, radians, lerobot joint names) in the '
                  'namespace.'),
    'camera': Arg('use_camera', 'true', 'Start our camera node(s); false = images come from camera_topic.'),
    'teleop': Arg('use_teleop', 'true', 'Start our teleop (leader arm) node; false = a node of your own named '
                  '<namespace>/teleop offers its joint_states, move_to and release.'),
    'recorder': Arg('use_recorder', 'true', 'Start our recorder; false = a recorder run elsewhere (already '
                    'active) serves <namespace>/recorder/{start,save,discard}_episode and push.'),
    'input': Arg('use_input', 'true', 'Start the input node of input_device; false = you run it yourself, '
                 'e.g. `ros2 run rollout_ros keyboard` in another terminal (<namespace>/<input_device>/events).'),
}


def declare(args) -> list[DeclareLaunchArgument]:
    return [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                                  **({'choices': list(a.choices)} if a.choices else {})) for a in args]


# Launch argument -> its range in core.limits (the nodes declare the same).
ARG_LIMITS = {'fps': 'fps', 'duration': 'duration', 'interpolation_multiplier': 'interpolation_multiplier',
              'torch_threads': 'torch_threads', 'upload_every_n_episodes': 'upload_every_n_episodes',
              'target_video_file_size_mb': 'target_video_file_size_mb',
              'ring_buffer_seconds': 'ring_buffer_seconds', 'ring_buffer_max_memory_mb': 'ring_buffer_max_memory_mb',
              'camera_width': 'camera_size', 'camera_height': 'camera_size', 'camera_fps': 'camera_fps',
              'num_episodes': 'num_episodes'}


class Args:
    """This launch's configurations, read with the types the nodes declare."""

    def __init__(self, context):
        self.values = context.launch_configurations
        # An including launch file's PushRosNamespace prefixes ours, as it does the nodes'.
        ns = make_namespace_absolute(prefix_namespace(self.values.get('ros_namespace'), self['namespace']))
        self.prefix = ns.rstrip('/')   # '' or '/<ns>': absolute names of nodes and topics

    def __getitem__(self, name: str) -> str:
        return self.values[name]

    def flag(self, name: str) -> bool:
        """true/false as launch conditions read them (any case, or 1/0)."""
        text = self[name].strip().lower()
        if text not in ('true', 'false', '1', '0'):
            raise ConfigError(name, f'{self[name]!r} is not true or false.')
        return text in ('true', '1')

    def number(self, name: str, kind=float, text: str | None = None):
        """The argument (or one `text` of its comma list) as `kind`."""
        text = self[name] if text is None else text
        try:
            value = kind(text)
        except ValueError:
            raise ConfigError(name, f'{text!r} is not {"an integer" if kind is int else "a number"}.') from None
        if name in ARG_LIMITS:
            check_value(name, ARG_LIMITS[name], value)   # here, not as a node's traceback later
        return value

    def per_camera(self, name: str, count: int) -> list[str]:
        """A comma list with one value for every camera, or one value for all."""
        values = [v.strip() for v in self[name].split(',')]
        if len(values) == 1:
            return values * count
        if len(values) != count:
            raise ConfigError(name, f'{len(values)} values for {count} cameras ({self["camera_name"]}).',
                              'give one value for all cameras or one per camera, comma-separated.')
        return values

    def robot(self) -> dict:
        return {'robot_type': self['robot_type'], 'robot_id': self['robot_id'],
                'calibration_dir': self['calibration_dir'], 'use_degrees': self.flag('use_degrees')}


def lifecycle_node(a: Args, executable: str, name: str, **params) -> LifecycleNode:
    return LifecycleNode(package='rollout_ros', executable=executable, name=name, namespace=a['namespace'],
                         output='screen', parameters=[a['params_file'], params])


# Node names -------------------------------------------------------------------
class Driver(NamedTuple):
    name: str
    robot_type: str
    robot_id: str
    port: str
    joint_prefix: str


class CameraSize(NamedTuple):
    name: str
    width: int
    height: int


class Camera(NamedTuple):
    size: CameraSize
    index_or_path: str
    fps: float


def drivers(a: Args) -> list[Driver]:
    """One driver per servo bus: bi_* robots get one per arm, with lerobot's
    left_/right_ joint prefixes and <robot_id>_left/_right calibrations."""
    spec = get_robot_spec(a['robot_type'])
    if not spec.arms:
        return [Driver('robot_driver', a['robot_type'], a['robot_id'], a['robot_port'], '')]
    buses = []
    for prefix, arm in spec.arms:
        side = prefix.rstrip('_')
        port = a[f'{side}_robot_port']
        if not port:
            raise ConfigError(f'{side}_robot_port', f'{a["robot_type"]} needs the port of its {side} arm.',
                              f'pass {side}_robot_port:=/dev/ttyACM0 (or use_driver:=false).')
        buses.append(Driver(f'robot_driver_{side}', arm.type, f'{a["robot_id"]}_{side}', port, prefix))
    return buses


def camera_names(a: Args) -> list[str]:
    names = [n.strip() for n in a['camera_name'].split(',')]
    if not all(names) or len(set(names)) != len(names):
        raise ConfigError('camera_name', f'{a["camera_name"]!r}: names must be non-empty and distinct.')
    return names


def camera_sizes(a: Args) -> list[CameraSize]:
    names = camera_names(a)
    return [CameraSize(name, a.number('camera_width', int, w), a.number('camera_height', int, h))
            for name, w, h in zip(names, a.per_camera('camera_width', len(names)),
                                  a.per_camera('camera_height', len(names)))]


def cameras(a: Args) -> list[Camera]:
    sizes = camera_sizes(a)
    return [Camera(size, src, a.number('camera_fps', float, fps))
            for size, src, fps in zip(sizes, a.per_camera('camera_index_or_path', len(sizes)),
                                      a.per_camera('camera_fps', len(sizes)))]


def input_devices(a: Args) -> list[str]:
    return [] if a['input_device'] == 'none' else [a['input_device']]


NODE_NAMES = {
    'policy': lambda a: ['policy'],
    'camera': lambda a: [f'camera_{name}' for name in camera_names(a)],
    'driver': lambda a: [d.name for d in drivers(a)],
    'teleop': lambda a: ['teleop'],
    'recorder': lambda a: ['recorder'],
    'input': input_devices,
}


def uses(a: Args, component: str) -> bool:
    return component not in USE or a.flag(USE[component].name)


def managed_nodes(a: Args, components) -> list[str]:
    """Absolute names of the nodes this launch starts, in the strategy's
    bring-up order (policy first so a bad checkpoint fails before any servo
    moves, hardware next, operator input last)."""
    return [f'{a.prefix}/{n}' for c in NODE_NAMES if c in components and uses(a, c) for n in NODE_NAMES[c](a)]


def camera_topic(a: Args) -> str:
    return a['camera_topic'] or f'{a.prefix}/camera_{{name}}/image_raw'


# Sub-launch files -----------------------------------------------------------------
def component(name: str, args, make_nodes, config: str = 'base.yaml') -> LaunchDescription:
    """A sub-launch file: its arguments, then its nodes (none with use_<name>:=false).

    Included by a strategy launch file, or launched alone into a stack with a
    manager of its own; either way its nodes start unconfigured."""
    def nodes(context):
        a = Args(context)
        return make_nodes(a) if uses(a, name) else []

    use = [USE[name]] if name in USE else []
    return LaunchDescription(declare([NAMESPACE, params_file_arg(config), *use, *args])
                             + [OpaqueFunction(function=nodes)])


# Strategies --------------------------------------------------------------------
LOOP = [
    FPS,
    Arg('duration', '0.0', 'Run time [s]; 0 = until stopped (lerobot --duration).'),
    TASK,
    Arg('interpolation_multiplier', '1', 'Commands per policy action: the robot is commanded at fps*N '
        '(lerobot --interpolation_multiplier).'),
    CAMERA_TOPIC,
]
RECORDING = [
    Arg('play_sounds', 'true', 'Speak events (episode saved, paused, ...) with spd-say/espeak where there '
        'is one (lerobot --play_sounds).'),
]
DAGGER = [
    Arg('record_autonomous', 'false', 'Record the autonomous and paused stretches too, in episodes rotated '
        'like sentry; false = corrections only, one episode each (lerobot --strategy.record_autonomous).'),
    Arg('num_episodes', '50', 'Corrections-only mode: stop after this many saved corrections (lerobot '
        '--strategy.num_episodes).'),
]


class Strategy(NamedTuple):
    components: tuple[str, ...]    # sub-launch files, in include order
    args: list


STRATEGIES = {
    'base': Strategy(('policy', 'camera', 'driver'), LOOP),
    'sentry': Strategy(('policy', 'camera', 'driver', 'recorder'), LOOP + RECORDING),
    'highlight': Strategy(('policy', 'camera', 'driver', 'recorder', 'input'), LOOP + RECORDING),
    'dagger': Strategy(('policy', 'camera', 'driver', 'teleop', 'recorder', 'input'), LOOP + RECORDING + DAGGER),
}


def strategy_launch(strategy: str) -> LaunchDescription:
    """A strategy launch file: its own arguments, the sub-launch files of its
    components, then the strategy node that brings them up and ends the launch."""
    spec = STRATEGIES[strategy]
    # The recorder's rotation, ring buffer and intervention feature follow the strategy.
    includes = [IncludeLaunchDescription(os.path.join(INCLUDE_DIR, f'{c}.launch.py'),
                                         launch_arguments=[('strategy', strategy)]) for c in spec.components]
    return LaunchDescription(
        declare([NAMESPACE, params_file_arg(f'{strategy}.yaml'), *spec.args]) + includes
        + [OpaqueFunction(function=lambda context: _strategy_node(Args(context), strategy))])


def _strategy_node(a: Args, strategy: str) -> list:
    components = STRATEGIES[strategy].components
    params = dict(
        a.robot(), fps=a.number('fps'), duration=a.number('duration'), task=a['task'],
        interpolation_multiplier=a.number('interpolation_multiplier', int),
        camera_names=camera_names(a), managed_nodes=managed_nodes(a, components),
        policy_service=f'{a.prefix}/policy/infer', camera_topic_template=camera_topic(a),
        # rtc chunks come from the policy's background thread, not from one call per tick.
        policy_transport='topic' if a['inference_type'] == 'rtc' else 'service')
    if 'recorder' in components:
        params.update(recorder_node=f'{a.prefix}/recorder', play_sounds=a.flag('play_sounds'))
    if 'input' in components and input_devices(a):
        # An empty list would reach the node as an unset parameter: with no
        # device the strategy keeps its default topics.
        params['input_topics'] = [f'{a.prefix}/{d}/events' for d in input_devices(a)]
    if strategy == 'dagger':
        params.update(teleop_node=f'{a.prefix}/teleop', teleop_type=a['teleop_type'],
                      record_autonomous=a.flag('record_autonomous'),
                      num_episodes=a.number('num_episodes', int))
    name = f'{strategy}_strategy'
    node = lifecycle_node(a, name, name, **params)
    return [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=_end_launch(name)))]


def _end_launch(name: str):
    """The strategy ends when its duration or episodes are done, on Esc, or when
    it fails: the launch ends with it."""
    def on_exit(event, _context):
        if event.returncode != 0:
            # Launch counts an exception as a failed run: ros2 launch then
            # exits non-zero, which a Shutdown event alone would not do.
            raise RuntimeError(f'{name} failed (exit code {event.returncode}); see its log')
        return [EmitEvent(event=Shutdown(reason=f'{name} finished'))]
    return on_exit
