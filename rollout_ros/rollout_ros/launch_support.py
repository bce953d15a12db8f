# SPDX-License-Identifier: Apache-2.0
"""What the rollout_ros launch files share: their arguments, and the nodes of
the run description (run_description.py) as launch actions.

Imported only by launch files (it needs `launch` and `launch_ros`, which come
with a ROS install); the CLI composes the same description in one process.

Arguments that set a node parameter default to '': not given, the params file
decides (or the node's default when the file has no such key). Only arguments
given on the command line (or by an including launch file) override the file.
"""

import os
from typing import NamedTuple

import yaml
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch_ros.actions import LifecycleNode
from launch_ros.utilities import make_namespace_absolute, prefix_namespace

from rollout_ros.core.errors import ConfigError
from rollout_ros.core.limits import check_value
from rollout_ros.hardware.robots import get_robot_spec
from rollout_ros.recording_config import INPUT_DEVICES, RECORDING_STRATEGIES, RecordingConfig
from rollout_ros.run_description import (
    STRATEGIES,
    Naming,
    NodeSpec,
    RolloutConfig,
    RunDescription,
    assign,
    describe,
    generic,
)

PACKAGE = 'rollout_ros'
# Seconds launch waits before it restarts a respawnable node (use_respawn:=true).
RESPAWN_DELAY_S = 2.0
# launch's SIGINT window (its sigterm_timeout, 5 s by default): on Ctrl-C the
# strategy saves the open episode and takes the nodes down in order while they
# wait for it (spin.MANAGER_GRACE_S), which on a loaded machine takes longer.
STOP_WINDOW_S = 30


def share_dir() -> str:
    """<prefix>/share/rollout_ros where the package is installed, else the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return get_package_share_directory(PACKAGE)
    except (ImportError, LookupError, OSError):  # not installed: the source tree
        return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))


def config_path(name: str) -> str:
    return os.path.join(share_dir(), 'config', name)


class Arg(NamedTuple):
    name: str
    default: str
    description: str
    path: str = ''  # the RolloutConfig field it sets ('' = not a node parameter)
    kind: type = str  # str, float, int, bool or list (comma-separated)
    choices: tuple[str, ...] | None = None


FROM_FILE = "'' = the params file's value"


def setting(name: str, path: str, kind: type, description: str) -> Arg:
    return Arg(name, '', f'{description}; {FROM_FILE}.', path, kind)


NAMESPACE = Arg('namespace', '', 'Namespace of every node and topic (one per robot on a shared ROS graph).')
COMMON = [
    NAMESPACE,
    Arg(
        'log_level',
        'info',
        'Log level of every node: debug, info, warn, error or fatal.',
        choices=('debug', 'info', 'warn', 'error', 'fatal'),
    ),
    Arg(
        'use_respawn',
        'false',
        'Restart a camera or input node whose process died (never the driver: it would come back mid-run).',
    ),
]
ROBOT = [
    setting(
        'robot_type',
        'robot_type',
        str,
        'lerobot --robot.type (koch_follower, so100_follower, '
        'so101_follower, openarm_follower; bi_so_follower, bi_openarm_follower: one driver per arm)',
    ),
    setting('robot_id', 'robot_id', str, 'Calibration id (lerobot --robot.id); bi_* arms use <robot_id>_left/_right'),
    setting(
        'calibration_dir',
        'calibration_dir',
        str,
        "Folder holding <robot_id>.json (lerobot --robot.calibration_dir; its default: lerobot's)",
    ),
    setting(
        'use_degrees',
        'use_degrees',
        bool,
        'Body joints in degrees instead of -100..100 (lerobot '
        '--robot.use_degrees; must match how the policy was trained)',
    ),
]
CAMERA_NAME = setting(
    'camera_name',
    'camera_names',
    list,
    'Camera name(s), comma-separated: observation.images.<name> (the keys of lerobot --robot.cameras)',
)
CAMERA_SIZE = [
    setting(
        'camera_width',
        'cameras.width',
        int,
        'Image width [px], one value or one per camera (lerobot cameras.<name>.width)',
    ),
    setting('camera_height', 'cameras.height', int, 'Image height [px], one value or one per camera'),
]
CAMERA_TOPIC = Arg(
    'camera_topic',
    '',
    "Image topic per camera, {name} = camera name; '' = our camera nodes' "
    '(<namespace>/camera_<name>/image_raw). Set it with use_camera:=false; camera_width/height '
    'must then give the recorded image size.',
)
TASK = setting(
    'task',
    'task',
    str,
    'Instruction given to the policy and stored with every recorded frame (lerobot --task, --dataset.single_task)',
)
FPS = setting(
    'fps',
    'fps',
    float,
    'Control rate [Hz] (lerobot --fps); recording strategies record one row per tick, so it must then be an integer',
)
STRATEGY = Arg(
    'strategy',
    'sentry',
    "Strategy whose ~/frames are recorded; it decides rotation (sentry, dagger's "
    'record_autonomous), the ring buffer (highlight) and the intervention feature (dagger). The '
    'strategy launch files set it.',
    choices=tuple(s for s in STRATEGIES if s in RECORDING_STRATEGIES),
)
INPUT_DEVICE = Arg(
    'input_device',
    'keyboard',
    'keyboard, pedal (evdev foot switch) or none (lerobot --strategy.input_device).',
    choices=INPUT_DEVICES,
)

# The arguments of each component's sub-launch file (launch/include/<component>.launch.py).
COMPONENT_ARGS = {
    'policy': [
        setting(
            'policy_path',
            'policy_path',
            str,
            'Checkpoint directory or Hub id, from the local cache (lerobot --policy.path)',
        ),
        setting('device', 'device', str, 'Torch device: cpu, cuda, mps or auto (lerobot --policy.device)'),
        setting(
            'inference_type',
            'inference_type',
            str,
            'sync: one policy call per tick over policy/infer; rtc: '
            'the policy node computes action chunks on a background thread and streams them to the '
            'strategy (lerobot --inference.type)',
        ),
        setting(
            'torch_threads', 'torch_threads', int, 'Torch CPU threads of the policy process; 0 = every core but one'
        ),
        setting(
            'use_torch_compile',
            'use_torch_compile',
            bool,
            'torch.compile the policy, with warm-up inferences at configure (lerobot --use_torch_compile)',
        ),
        setting('use_amp', 'use_amp', bool, 'Mixed-precision inference (lerobot --policy.use_amp)'),
        ROBOT[0],
        CAMERA_NAME,
        CAMERA_TOPIC,
        TASK,
        FPS,
    ],
    'camera': [
        CAMERA_NAME,
        setting(
            'camera_index_or_path',
            'cameras.index_or_path',
            str,
            'Device index, /dev/video path or video file, one per camera (lerobot cameras.<name>.index_or_path)',
        ),
        *CAMERA_SIZE,
        setting(
            'camera_fps',
            'cameras.fps',
            float,
            'Capture rate [Hz], one value or one per camera (lerobot cameras.<name>.fps)',
        ),
    ],
    'driver': [
        *ROBOT,
        setting('robot_port', 'robot_port', str, 'Servo bus port (lerobot --robot.port)'),
        setting(
            'left_robot_port',
            'arm_ports.left',
            str,
            'bi_* robots: left arm port (lerobot --robot.left_arm_config.port)',
        ),
        setting(
            'right_robot_port',
            'arm_ports.right',
            str,
            'bi_* robots: right arm port (lerobot --robot.right_arm_config.port)',
        ),
        setting(
            'max_relative_target',
            'max_relative_target',
            float,
            'Largest step of one command from the present position [rad] (lerobot --robot.max_relative_target)',
        ),
        setting(
            'robot_side',
            'robot_side',
            str,
            'openarm_follower: left or right joint limits (lerobot '
            '--robot.side); bi_openarm_follower arms get their own',
        ),
        setting(
            'can_interface',
            'can_interface',
            str,
            'CAN robots: python-can interface, socketcan on the '
            'robot (lerobot --robot.can_interface); the ports are CAN channels (can0, can1)',
        ),
    ],
    'teleop': [
        setting(
            'teleop_type',
            'recording.teleop.type',
            str,
            'Leader arm: koch_leader, so100_leader, '
            'so101_leader, openarm_mini, bi_so_leader or bi_openarm_mini (lerobot --teleop.type)',
        ),
        setting('teleop_port', 'recording.teleop.port', str, 'Leader arm port (lerobot --teleop.port)'),
        setting(
            'teleop_left_port',
            'recording.teleop.left_port',
            str,
            'Bimanual leaders (bi_so_leader, bi_openarm_mini): left arm port (lerobot --teleop.left_arm_config.port)',
        ),
        setting(
            'teleop_right_port',
            'recording.teleop.right_port',
            str,
            'Bimanual leaders: right arm port (lerobot --teleop.right_arm_config.port)',
        ),
        setting('teleop_side', 'recording.teleop.side', str, 'openarm_mini: left or right (lerobot --teleop.side)'),
        setting('teleop_id', 'recording.teleop.id', str, 'Leader calibration id (lerobot --teleop.id)'),
        setting(
            'teleop_calibration_dir',
            'recording.teleop.calibration_dir',
            str,
            "Folder holding <teleop_id>.json (lerobot --teleop.calibration_dir; its default: lerobot's)",
        ),
        *ROBOT,  # the follower's: the leader pose is published in its joint space
    ],
    'recorder': [
        STRATEGY,
        setting(
            'repo_id',
            'recording.dataset.repo_id',
            str,
            'Dataset id <user>/rollout_<name>, required (lerobot --dataset.repo_id)',
        ),
        setting(
            'dataset_root',
            'recording.dataset.root',
            str,
            'Dataset folder; empty in the file = $HF_LEROBOT_HOME/<repo_id> (lerobot --dataset.root)',
        ),
        setting(
            'push_to_hub',
            'recording.dataset.push_to_hub',
            bool,
            'Upload to the Hugging Face Hub in the background; needs a login (lerobot --dataset.push_to_hub)',
        ),
        setting(
            'private', 'recording.dataset.private', bool, 'Create the Hub repo private (lerobot --dataset.private)'
        ),
        setting('resume', 'recording.resume', bool, 'Append to the dataset at dataset_root (lerobot --resume)'),
        setting(
            'upload_every_n_episodes',
            'recording.upload_every_n_episodes',
            int,
            'Push after this many saved episodes (lerobot --strategy.upload_every_n_episodes)',
        ),
        setting(
            'target_video_file_size_mb',
            'recording.target_video_file_size_mb',
            float,
            'sentry, dagger with '
            "record_autonomous: episode rotation at this video size [MB]; 0 = lerobot's 200 (lerobot "
            '--strategy.target_video_file_size_mb)',
        ),
        setting(
            'ring_buffer_seconds',
            'recording.ring_buffer_seconds',
            float,
            'highlight: seconds kept in memory before a save press (lerobot --strategy.ring_buffer_seconds)',
        ),
        setting(
            'ring_buffer_max_memory_mb',
            'recording.ring_buffer_max_memory_mb',
            float,
            'highlight: memory cap of that buffer [MB] (lerobot --strategy.ring_buffer_max_memory_mb)',
        ),
        ROBOT[0],
        CAMERA_NAME,
        *CAMERA_SIZE,
        CAMERA_TOPIC,
        FPS,
    ],
    'input': [
        INPUT_DEVICE,
        setting(
            'pedal_device_path',
            'recording.pedal_device_path',
            str,
            'pedal: evdev device (/dev/input/by-id/...-event-kbd; lerobot --strategy.pedal.device_path)',
        ),
        setting(
            'tty_path',
            'recording.tty_path',
            str,
            "keyboard: terminal to read keys from (the file's default: the terminal of ros2 launch)",
        ),
    ],
}
# Default params file of a sub-launch file launched alone.
COMPONENT_CONFIG = {'recorder': 'recorder.yaml', 'input': 'input.yaml', 'teleop': 'dagger.yaml'}
# The strategy a sub-launch file describes its nodes for, launched alone.
COMPONENT_STRATEGY = {'teleop': 'dagger', 'input': 'highlight'}

# use_<component>:=false: this launch neither starts nor manages that part;
# another stack provides it under the same topic and service names.
USE = {
    'driver': Arg(
        'use_driver',
        'true',
        'Start our driver(s); false = your stack publishes joint_states and '
        'takes joint_commands (sensor_msgs/JointState, radians, lerobot joint names) in the '
        'namespace.',
    ),
    'camera': Arg('use_camera', 'true', 'Start our camera node(s); false = images come from camera_topic.'),
    'teleop': Arg(
        'use_teleop',
        'true',
        'Start our teleop (leader arm) node; false = a node of your own named '
        '<namespace>/teleop offers its joint_states, move_to and release.',
    ),
    'recorder': Arg(
        'use_recorder',
        'true',
        'Start our recorder; false = a recorder run elsewhere (already '
        'active) serves <namespace>/recorder/{start,save,discard}_episode and push.',
    ),
    'input': Arg(
        'use_input',
        'true',
        'Start the input node of input_device; false = you run it yourself, '
        'e.g. `ros2 run rollout_ros keyboard` in another terminal (<namespace>/<input_device>/events).',
    ),
}

LOOP = [
    setting(
        'autostart',
        'autostart',
        bool,
        'true: the strategy configures and activates the run at start; '
        'false: every node waits unconfigured until a lifecycle manager (ros2 lifecycle set <ns>/'
        '<strategy>_strategy configure, then activate; or nav2 lifecycle_manager) brings them up in order',
    ),
    FPS,
    setting('duration', 'duration', float, 'Run time [s]; 0 = until stopped (lerobot --duration)'),
    TASK,
    setting(
        'interpolation_multiplier',
        'interpolation_multiplier',
        int,
        'Commands per policy action: the robot is commanded at fps*N (lerobot --interpolation_multiplier)',
    ),
    CAMERA_TOPIC,
]
RECORDING = [
    setting(
        'play_sounds',
        'recording.play_sounds',
        bool,
        'Speak events (episode saved, paused, ...) with spd-say/espeak where there is one (lerobot --play_sounds)',
    ),
]
DAGGER = [
    setting(
        'record_autonomous',
        'recording.record_autonomous',
        bool,
        'Record the autonomous and paused '
        'stretches too, in episodes rotated like sentry; false = corrections only, one episode each (lerobot '
        '--strategy.record_autonomous)',
    ),
    setting(
        'num_episodes',
        'recording.num_episodes',
        int,
        'Corrections-only mode: stop after this many saved corrections (lerobot --strategy.num_episodes)',
    ),
]
EPISODIC = [
    setting(
        'num_episodes',
        'recording.dataset.num_episodes',
        int,
        'Episodes to record; the launch ends after the last (lerobot --dataset.num_episodes)',
    ),
    setting(
        'episode_time_s',
        'recording.dataset.episode_time_s',
        float,
        'Longest episode [s] (lerobot --dataset.episode_time_s)',
    ),
    setting(
        'reset_time_s',
        'recording.dataset.reset_time_s',
        float,
        'Reset after each episode but the last [s], not recorded (lerobot --dataset.reset_time_s)',
    ),
    setting(
        'reset_to_initial_position',
        'recording.reset_to_initial_position',
        bool,
        'Without a teleop: resets '
        'bring the robot back to its starting pose (lerobot --strategy.reset_to_initial_position)',
    ),
    setting(
        'smooth_leader_to_follower_handover',
        'recording.smooth_leader_to_follower_handover',
        bool,
        'At a '
        'reset, drive an actuated leader to the follower before releasing it (lerobot '
        '--strategy.smooth_leader_to_follower_handover)',
    ),
    setting(
        'smooth_handover',
        'recording.smooth_handover',
        bool,
        'At a reset, move an actuated leader at all (lerobot --strategy.smooth_handover)',
    ),
]
STRATEGY_ARGS = {
    'base': LOOP,
    'sentry': LOOP + RECORDING,
    'highlight': LOOP + RECORDING,
    'dagger': LOOP + RECORDING + DAGGER,
    'episodic': LOOP + RECORDING + EPISODIC,
}


def params_file_arg(config: str) -> Arg:
    return Arg(
        'params_file',
        config_path(config),
        'YAML with the parameters of all nodes (sections /**/<node>); an argument given on the command '
        'line overrides the key it sets, every other key comes from here.',
    )


def unique(args) -> list[Arg]:
    """Launch keeps the first declaration of a name: declare each once."""
    seen, out = set(), []
    for a in args:
        if a.name not in seen:
            seen.add(a.name)
            out.append(a)
    return out


def declare(args) -> list[DeclareLaunchArgument]:
    return [
        DeclareLaunchArgument(
            a.name,
            default_value=a.default,
            description=a.description,
            **({'choices': list(a.choices)} if a.choices else {}),
        )
        for a in unique(args)
    ]


# Reading the arguments --------------------------------------------------------
def _flag(name: str, text: str) -> bool:
    """true/false as launch conditions read them (any case, or 1/0)."""
    value = text.strip().lower()
    if value not in ('true', 'false', '1', '0'):
        raise ConfigError(name, f'{text!r} is not true or false.', f'use {name}:=true or {name}:=false.')
    return value in ('true', '1')


# Launch argument -> its range in core.limits (the nodes declare the same).
ARG_LIMITS = {
    'fps': 'fps',
    'duration': 'duration',
    'interpolation_multiplier': 'interpolation_multiplier',
    'torch_threads': 'torch_threads',
    'upload_every_n_episodes': 'upload_every_n_episodes',
    'target_video_file_size_mb': 'target_video_file_size_mb',
    'ring_buffer_seconds': 'ring_buffer_seconds',
    'ring_buffer_max_memory_mb': 'ring_buffer_max_memory_mb',
    'camera_width': 'camera_size',
    'camera_height': 'camera_size',
    'camera_fps': 'camera_fps',
    'num_episodes': 'num_episodes',
    'max_relative_target': 'max_relative_target',
}


def _parse(arg: Arg, text: str):
    if arg.kind is bool:
        return _flag(arg.name, text)
    if arg.kind is list:
        return [v.strip() for v in text.split(',')]
    if arg.kind in (int, float):
        try:
            value = arg.kind(text)
        except ValueError:
            raise ConfigError(arg.name, f'{text!r} is not {"an integer" if arg.kind is int else "a number"}.') from None
        if arg.name in ARG_LIMITS:
            check_value(arg.name, ARG_LIMITS[arg.name], value)  # here, not as a node's traceback later
        return value
    return text


def _per_camera(arg: Arg, text: str, names: list[str]) -> list[str]:
    """A comma list with one value for every camera, or one value for all."""
    values = [v.strip() for v in text.split(',')]
    if len(values) == 1:
        return values * len(names)
    if len(values) != len(names):
        raise ConfigError(
            arg.name,
            f'{len(values)} values for {len(names)} cameras ({",".join(names)}).',
            'give one value for all cameras or one per camera, comma-separated.',
        )
    return values


def file_sections(raw: dict, full_name: str) -> dict:
    """The parameters a params file gives node `full_name`, as rcl matches its
    sections: /**, /**/<name>, and the node's own full name."""
    name = full_name.rsplit('/', 1)[-1]
    out = {}
    for key, section in (raw or {}).items():
        if key in ('/**', f'/**/{name}') or key.lstrip('/') == full_name.lstrip('/'):
            out.update((section or {}).get('ros__parameters', {}) or {})
    return out


def _load_params_file(path: str) -> dict:
    try:
        with open(path) as f:
            return yaml.safe_load(f) or {}
    except OSError as e:
        raise ConfigError(
            'params_file', f'cannot read {path!r} ({e.strerror}).', 'give an existing YAML file.'
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError('params_file', f'{path!r} is not valid YAML ({e}).') from None


class RunArgs:
    """A launch's configurations as a RolloutConfig: given arguments, else the params file."""

    def __init__(self, context, strategy: str, args: list[Arg], external=()):
        self.values = context.launch_configurations
        self.args = {a.name: a for a in unique(args)}
        # An including launch file's PushRosNamespace prefixes ours, as it does the nodes'.
        ns = make_namespace_absolute(prefix_namespace(self.values.get('ros_namespace'), self['namespace']))
        self.naming = Naming(
            {a.path: a.name for a in self.args.values() if a.path}
            | {'external.teleop': 'use_teleop', 'strategy': 'strategy'},
            assign=':=',
        )
        self.given: set[str] = set()
        cfg = RolloutConfig(
            strategy=strategy,
            namespace=ns.rstrip('/'),
            torch_threads=1,
            recording=RecordingConfig() if strategy in RECORDING_STRATEGIES else None,
            external=frozenset(external),
        )
        if 'input_device' in self.args:
            cfg.recording = cfg.recording or RecordingConfig()
            cfg.recording.input_device = self['input_device']
        cfg.camera_topic = self.values.get('camera_topic', '')
        per_camera = []
        for arg in self.args.values():
            text = self.values.get(arg.name, '')
            if not arg.path or text == '':
                continue
            if arg.path.startswith('cameras.'):
                per_camera.append((arg, text))
                continue
            if arg.path.startswith('recording.') and cfg.recording is None:
                continue
            assign(cfg, arg.path, _parse(arg, text))
            self.given.add(arg.path)
        if 'camera_names' in self.given:
            names = [c.name for c in cfg.cameras]
            if not all(names) or len(set(names)) != len(names):
                raise ConfigError('camera_name', f'{self["camera_name"]!r}: names must be non-empty and distinct.')
        self._fill_from_file(cfg, _load_params_file(self['params_file']))
        names = [c.name for c in cfg.cameras]
        for arg, text in per_camera:
            field_name = arg.path.split('.', 1)[1]
            for i, value in enumerate(_per_camera(arg, text, names)):
                assign(cfg, f'cameras.{i}.{field_name}', _parse(arg, value))
            self.given.add(arg.path)
        # A launch reaches the policy in another process: over a service call
        # per tick (sync) or streamed chunks (rtc).
        if cfg.inference_type not in ('sync', 'rtc'):
            raise ConfigError(
                'inference_type',
                f'{cfg.inference_type!r} is not an inference type.',
                'use inference_type:=sync or inference_type:=rtc.',
            )
        cfg.policy_call = 'topic' if cfg.inference_type == 'rtc' else 'service'
        get_robot_spec(cfg.robot_type)  # an unknown robot fails the launch, naming robot_type
        self.cfg = cfg

    def __getitem__(self, name: str) -> str:
        return self.values[name]

    def flag(self, name: str) -> bool:
        return _flag(name, self[name])

    def _fill_from_file(self, cfg: RolloutConfig, raw: dict) -> None:
        """Config fields the arguments left open take the params file's values.
        Node names follow from the values (camera names, bimanual arms): a
        second pass reads the sections of the nodes the first one named."""
        filled = set()
        for _ in range(3):
            run = describe(cfg, validate=False)
            changed = False
            for b in run.bindings:
                if generic(b.path) in self.given or (b.node, b.path) in filled:
                    continue
                if b.path.startswith('recording.') and cfg.recording is None:
                    continue
                values = file_sections(raw, f'{run.namespace}/{b.node}')
                if b.param in values and values[b.param] != []:
                    assign(cfg, b.path, values[b.param])
                    filled.add((b.node, b.path))
                    changed = True
            if not changed:
                return


def _lifecycle_node(a: RunArgs, spec: NodeSpec, params_file: str) -> LifecycleNode:
    # An empty list would reach the node as an unset parameter of no type.
    params = {k: v for k, v in spec.params.items() if v != []}
    respawn = spec.respawn and a.flag('use_respawn')
    return LifecycleNode(
        package=PACKAGE,
        executable=spec.executable,
        name=spec.name,
        namespace=a['namespace'],
        output='screen',
        parameters=[params_file, params],
        ros_arguments=['--log-level', a['log_level']],
        respawn=respawn,
        respawn_delay=RESPAWN_DELAY_S if respawn else None,
        sigterm_timeout=str(STOP_WINDOW_S),
    )


def _describe(a: RunArgs, components) -> RunDescription:
    return describe(a.cfg, a.given, a.naming, started=components)


# Sub-launch files ---------------------------------------------------------------
def uses(a: RunArgs, component: str) -> bool:
    return component not in USE or USE[component].name not in a.values or a.flag(USE[component].name)


def component_launch(component: str) -> LaunchDescription:
    """A sub-launch file: its arguments, then the nodes of that component in
    the run description (none with use_<component>:=false), unconfigured:
    they wait for a manager (a strategy, or one of your stack's)."""
    args = [
        *COMMON,
        params_file_arg(COMPONENT_CONFIG.get(component, 'base.yaml')),
        *([USE[component]] if component in USE else []),
        *COMPONENT_ARGS[component],
    ]

    def nodes(context):
        strategy = context.launch_configurations.get('strategy', COMPONENT_STRATEGY.get(component, 'base'))
        a = RunArgs(context, strategy, args)
        if not uses(a, component):
            return []
        run = _describe(a, {component})
        return [_lifecycle_node(a, spec, a['params_file']) for spec in run.managed if spec.component == component]

    return LaunchDescription(declare(args) + [OpaqueFunction(function=nodes)])


# Strategies ---------------------------------------------------------------------
def strategy_arguments(strategy: str) -> list[Arg]:
    components = STRATEGIES[strategy].components
    return unique(
        [
            *COMMON,
            params_file_arg(f'{strategy}.yaml'),
            *STRATEGY_ARGS.get(strategy, LOOP),
            *(USE[c] for c in components if c in USE),
            *(a for c in components for a in COMPONENT_ARGS[c] if a.name != 'strategy'),
        ]
    )


def strategy_launch(strategy: str) -> LaunchDescription:
    """A strategy launch file: its arguments, every node of the run, and the
    strategy node that brings them up and ends the launch. The whole run is
    described before any process starts, so a bad argument starts nothing."""
    args = strategy_arguments(strategy)
    return LaunchDescription(
        declare(args) + [OpaqueFunction(function=lambda context: _strategy_nodes(context, strategy, args))]
    )


def _strategy_nodes(context, strategy: str, args) -> list:
    components = STRATEGIES[strategy].components
    values = context.launch_configurations
    external = [c for c in components if c in USE and not _flag(USE[c].name, values[USE[c].name])]
    a = RunArgs(context, strategy, args, external)
    run = _describe(a, set(components) - set(external))
    nodes = [_lifecycle_node(a, spec, a['params_file']) for spec in run.managed]
    strategy_node = _lifecycle_node(a, run.strategy, a['params_file'])
    return [
        *nodes,
        strategy_node,
        RegisterEventHandler(OnProcessExit(target_action=strategy_node, on_exit=_end_launch(run.strategy.name))),
    ]


def _end_launch(name: str):
    """The strategy ends when its duration or episodes are done, on Esc, or when
    it fails: the launch ends with it."""

    def on_exit(event, context):
        if event.returncode != 0:
            # Launch counts an exception as a failed run: ros2 launch then
            # exits non-zero, which a Shutdown event alone would not do.
            raise RuntimeError(f'{name} failed (exit code {event.returncode}); see its log')
        if context.is_shutdown:
            # Ctrl-C: launch is stopping already; a second Shutdown event would
            # shut its ROS adapter down twice and make ros2 launch exit 1.
            return None
        return [EmitEvent(event=Shutdown(reason=f'{name} finished'))]

    return on_exit
