# SPDX-License-Identifier: Apache-2.0
"""One description of a run: which nodes, under which names, with which
parameters, brought up in which order.

The `rollout` CLI composes it in one process (cli.py) and the launch files
start it as one process per node (launch_support.py); both call `describe`,
so the wiring cannot drift between them. Plain data: no rclpy, no launch.

Parameters come in two kinds:
- wiring: names of nodes, topics and services, and what follows from the
  strategy (frames topic, ring buffer on/off); always set;
- settings: values the user chose (fps, ports, repo_id). The CLI sets all of
  them; a launch sets only those given as arguments, so a params file keeps
  every other key (`given`).
Each setting is bound to a field of RolloutConfig by a dotted path
('recording.dataset.repo_id', 'cameras.0.width'); `bindings` lists them so a
launch can fill the config from its params file before it describes the run.
"""

import re
from dataclasses import dataclass, field

from rollout_ros.core.errors import ConfigError
from rollout_ros.hardware.robots import get_robot_spec
from rollout_ros.recording_config import INPUT_STRATEGIES, RECORDING_STRATEGIES, RecordingConfig, session_topics

# Inference types each way of reaching the policy node carries.
POLICY_CALLS = {'direct': ('sync', 'rtc'), 'service': ('sync',), 'topic': ('rtc',)}


@dataclass
class CameraConfig:
    name: str
    index_or_path: str = '0'
    width: int = 640
    height: int = 480
    fps: float = 30.0
    color_mode: str = 'rgb'

    def __post_init__(self):
        # YAML and launch arguments give 30 for 30.0: the node declares exact types.
        self.width, self.height, self.fps = int(self.width), int(self.height), float(self.fps)


@dataclass
class RolloutConfig:
    policy_path: str = ''
    robot_type: str = 'koch_follower'
    robot_port: str = '/dev/ttyACM0'
    arm_ports: dict[str, str] = field(default_factory=dict)  # bimanual: 'left'/'right' -> port
    robot_id: str = 'follower'
    calibration_dir: str = ''
    use_degrees: bool = False
    robot_side: str = ''  # openarm_follower: lerobot's --robot.side (per-side joint limits)
    # CAN robots (openarm_follower; both arms of bi_openarm_follower): the port is the channel.
    can_interface: str = 'socketcan'
    use_can_fd: bool = True
    can_bitrate: int = 1_000_000
    can_data_bitrate: int = 5_000_000
    max_relative_target: float = 0.35
    cameras: list[CameraConfig] = field(default_factory=list)
    strategy: str = 'base'
    fps: float = 30.0
    duration: float = 0.0
    task: str = ''
    device: str = 'cpu'
    rename_map: str = ''
    policy_call: str = 'direct'  # 'direct' (in-process), 'service' (sync) or 'topic' (rtc chunks)
    torch_threads: int = 0
    policy_node_name: str = 'policy'
    inference_type: str = 'sync'
    interpolation_multiplier: int = 1
    max_starved_ticks: int = 15
    queue_threshold: int = 0
    execution_horizon: int = 0
    max_guidance_weight: float = 10.0
    prefix_attention_schedule: str = 'LINEAR'
    use_torch_compile: bool = False
    use_amp: bool = False
    action_log_len: int = 0
    display_data: bool = False
    display_ip: str = ''
    display_port: int = 9876
    recording: RecordingConfig | None = None
    namespace: str = ''  # '' or '/<ns>': every node, topic and service of the run below it
    autostart: bool = True  # false: the strategy waits unconfigured for a lifecycle manager
    camera_topic: str = ''  # image topic per camera ({name}); '' = our camera nodes'
    external: frozenset = frozenset()  # components another stack provides (launch use_<component>:=false)


@dataclass(frozen=True)
class StrategyKind:
    node_class: str  # 'module:Class'
    components: tuple[str, ...]  # managed components, in bring-up order


# A new strategy is one entry here (and its console script in setup.py, named <strategy>_strategy).
# Hardware last (leader, then follower): everything that can refuse the run
# (checkpoint, cameras, dataset root and name) is configured before anything
# is written to a servo, and the teardown reaches the arms first (hold and
# torque policy before a long save or upload).
STRATEGIES = {
    'base': StrategyKind('rollout_ros.strategies.base_strategy:BaseStrategyNode', ('policy', 'camera', 'driver')),
    'sentry': StrategyKind(
        'rollout_ros.strategies.sentry:SentryStrategyNode', ('policy', 'camera', 'recorder', 'driver')
    ),
    'highlight': StrategyKind(
        'rollout_ros.strategies.highlight:HighlightStrategyNode', ('policy', 'camera', 'recorder', 'input', 'driver')
    ),
    'dagger': StrategyKind(
        'rollout_ros.strategies.dagger:DaggerStrategyNode',
        ('policy', 'camera', 'recorder', 'input', 'teleop', 'driver'),
    ),
    # The teleop only with --teleop.type (teleop_type:=): it drives the resets.
    'episodic': StrategyKind(
        'rollout_ros.strategies.episodic:EpisodicStrategyNode',
        ('policy', 'camera', 'recorder', 'input', 'teleop', 'driver'),
    ),
}
# Executable (console script) -> the node class it runs.
NODE_CLASSES = {
    'policy': 'rollout_ros.nodes.policy_node:PolicyNode',
    'camera': 'rollout_ros.nodes.camera_node:CameraNode',
    'robot_driver': 'rollout_ros.nodes.robot_driver_node:RobotDriverNode',
    'teleop': 'rollout_ros.nodes.teleop_node:TeleopNode',
    'recorder': 'rollout_ros.nodes.recorder_node:RecorderNode',
    'keyboard': 'rollout_ros.nodes.keyboard_node:KeyboardNode',
    'pedal': 'rollout_ros.nodes.pedal_node:PedalNode',
    **{f'{s}_strategy': kind.node_class for s, kind in STRATEGIES.items()},
}
# Components whose process may be restarted by launch (use_respawn): they hold
# no state the run depends on. Never the driver: a restarted driver would come
# back holding whatever pose its bus reports, mid-run.
RESPAWNABLE = ('camera', 'input')


@dataclass(frozen=True)
class NodeSpec:
    name: str  # node name, in the run's namespace
    executable: str  # console script (ros2 run rollout_ros <executable>)
    component: str  # policy, camera, driver, teleop, recorder, input or strategy
    params: dict  # what the run sets; the rest comes from params files or the defaults
    respawn: bool = False

    @property
    def node_class(self) -> str:
        return NODE_CLASSES[self.executable]


@dataclass(frozen=True)
class Binding:
    """Parameter `param` of node `node` carries the config field at `path`."""

    node: str
    param: str
    path: str


@dataclass
class RunDescription:
    namespace: str  # '' or '/<ns>'
    managed: list[NodeSpec]  # started here, in bring-up order (torn down in reverse)
    strategy: NodeSpec
    bindings: list[Binding]

    def full_name(self, spec: NodeSpec) -> str:
        return f'{self.namespace}/{spec.name}'

    @property
    def nodes(self) -> list[NodeSpec]:
        return [*self.managed, self.strategy]


@dataclass
class Naming:
    """How errors name a config field: a CLI flag or a launch argument."""

    names: dict[str, str] = field(default_factory=dict)
    assign: str = '='

    def __call__(self, path: str) -> str:
        return self.names.get(generic(path), path)

    def fix(self, path: str, value: str) -> str:
        return f'{self(path)}{self.assign}{value}'


def generic(path: str) -> str:
    """'cameras.1.width' -> 'cameras.width': how `given` names a per-camera setting."""
    return re.sub(r'\.\d+(?=\.|$)', '', path)


def resolve(cfg, path: str):
    obj = cfg
    for part in path.split('.'):
        if part == 'camera_names' and obj is cfg:
            return [c.name for c in cfg.cameras]
        obj = (
            obj[int(part)] if isinstance(obj, list) else obj.get(part) if isinstance(obj, dict) else getattr(obj, part)
        )
    return obj


def assign(cfg, path: str, value) -> None:
    """Set the field at `path` (as a params file or an argument gives it)."""
    if path == 'camera_names':
        old = {c.name: c for c in cfg.cameras}
        cfg.cameras = [old.get(str(n), CameraConfig(str(n))) for n in value]
        return
    *head, last = path.split('.')
    obj = cfg
    for part in head:
        obj = obj[int(part)] if isinstance(obj, list) else getattr(obj, part)
    if isinstance(obj, dict):
        obj[last] = value
        return
    current = getattr(obj, last)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    setattr(obj, last, value)


class _Builder:
    def __init__(self, cfg: RolloutConfig, given, naming: Naming):
        self.cfg, self.given, self.naming = cfg, given, naming
        self.bindings: list[Binding] = []

    def settings(self, node: str, out: dict, pairs: dict, skip_empty=()) -> dict:
        """param -> config path: bound for params files, set when given."""
        for param, path in pairs.items():
            self.bindings.append(Binding(node, param, path))
            value = resolve(self.cfg, path)
            if (self.given is None or generic(path) in self.given) and not (param in skip_empty and value == ''):
                out[param] = value
        return out

    def setting(self, out: dict, param: str, path: str, value) -> None:
        """A setting whose value the run derives from its field (not bound: no way back from the file)."""
        if self.given is None or generic(path) in self.given:
            out[param] = value


def describe(
    cfg: RolloutConfig, given: set[str] | None = None, naming: Naming | None = None, validate: bool = True, started=None
) -> RunDescription:
    """The run's nodes and their parameters.

    `given`: the config paths the user set (None: all of them, as on the CLI).
    `validate`: refuse what cannot run, naming the flag or argument
    (`naming`), for the components the caller starts (`started`; None = all
    but the external ones)."""
    naming = naming or Naming()
    b = _Builder(cfg, given, naming)
    if cfg.strategy not in STRATEGIES:
        raise ConfigError(
            naming('strategy'), f'{cfg.strategy!r} is not a strategy.', f'use one of {sorted(STRATEGIES)}.'
        )
    kind = STRATEGIES[cfg.strategy]
    started = set(kind.components) - set(cfg.external) if started is None else set(started)
    checks = started if validate else set()
    if validate and cfg.inference_type not in POLICY_CALLS.get(cfg.policy_call, ()):
        raise ConfigError(
            naming('inference_type'),
            f'{cfg.inference_type} does not run over --policy_call={cfg.policy_call}.',
            'use --policy_call=service with sync, --policy_call=topic with rtc, or direct with either.',
        )
    recording = cfg.strategy in RECORDING_STRATEGIES
    rec = cfg.recording or RecordingConfig()
    ns = cfg.namespace.rstrip('/')
    if ns and not ns.startswith('/'):
        ns = '/' + ns
    strategy_name = f'{cfg.strategy}_strategy'
    camera_template = cfg.camera_topic or f'{ns}/camera_{{name}}/image_raw'
    robot_paths = {
        'robot_type': 'robot_type',
        'robot_id': 'robot_id',
        'calibration_dir': 'calibration_dir',
        'use_degrees': 'use_degrees',
        'robot_side': 'robot_side',
    }
    cam_names = [c.name for c in cfg.cameras]
    if recording and 'recorder' in checks:
        _check_recording(cfg, rec, naming)

    components: dict[str, list[NodeSpec]] = {}
    policy = cfg.policy_node_name
    components['policy'] = [
        NodeSpec(
            policy,
            'policy',
            'policy',
            b.settings(
                policy,
                {
                    'camera_names': cam_names,
                    # In-process calls hand the frames over directly: no camera subscriptions.
                    'camera_topic_template': '' if cfg.policy_call == 'direct' else camera_template,
                },
                {
                    'policy_path': 'policy_path',
                    'device': 'device',
                    'robot_type': 'robot_type',
                    'task': 'task',
                    'rename_map': 'rename_map',
                    'torch_threads': 'torch_threads',
                    'inference_type': 'inference_type',
                    'fps': 'fps',
                    'queue_threshold': 'queue_threshold',
                    'execution_horizon': 'execution_horizon',
                    'max_guidance_weight': 'max_guidance_weight',
                    'prefix_attention_schedule': 'prefix_attention_schedule',
                    'use_torch_compile': 'use_torch_compile',
                    'use_amp': 'use_amp',
                },
            ),
        )
    ]
    b.bindings.append(Binding(policy, 'camera_names', 'camera_names'))
    components['camera'] = [
        NodeSpec(
            f'camera_{c.name}',
            'camera',
            'camera',
            b.settings(
                f'camera_{c.name}',
                {'camera_name': c.name},
                {p: f'cameras.{i}.{p}' for p in ('index_or_path', 'width', 'height', 'fps', 'color_mode')},
            ),
            respawn=True,
        )
        for i, c in enumerate(cfg.cameras)
    ]
    components['driver'] = _drivers(b, cfg, robot_paths, naming, 'driver' in checks, f'{ns}/{strategy_name}')
    teleop = cfg.strategy == 'dagger' or (cfg.strategy == 'episodic' and bool(rec.teleop.type))
    if teleop:
        if 'teleop' in checks:
            _check_leader_pairing(cfg, rec, naming)
        components['teleop'] = [
            NodeSpec(
                'teleop',
                'teleop',
                'teleop',
                b.settings(
                    'teleop',
                    {},
                    {
                        'teleop_type': 'recording.teleop.type',
                        'teleop_port': 'recording.teleop.port',
                        'teleop_id': 'recording.teleop.id',
                        'teleop_left_port': 'recording.teleop.left_port',
                        'teleop_right_port': 'recording.teleop.right_port',
                        'teleop_side': 'recording.teleop.side',
                        'teleop_calibration_dir': 'recording.teleop.calibration_dir',
                        **robot_paths,
                    },
                ),
            )
        ]
    if recording:
        components['recorder'] = [
            NodeSpec(
                'recorder', 'recorder', 'recorder', _recorder_params(b, cfg, rec, ns, strategy_name, camera_template)
            )
        ]
    input_device = rec.input_device if cfg.strategy in INPUT_STRATEGIES else 'none'
    if input_device != 'none':
        param, path = {
            'pedal': ('device_path', 'recording.pedal_device_path'),
            'keyboard': ('tty_path', 'recording.tty_path'),
        }[input_device]
        components['input'] = [
            NodeSpec(
                input_device,
                input_device,
                'input',
                b.settings(input_device, {}, {param: path}, skip_empty=(param,)),
                respawn=True,
            )
        ]

    managed = [spec for c in kind.components if c not in cfg.external for spec in components.get(c, [])]
    params = {
        'camera_names': cam_names,
        'camera_topic_template': camera_template,
        'managed_nodes': [f'{ns}/{spec.name}' for spec in managed],
        'policy_service': f'{ns}/{policy}/infer',
        'policy_transport': 'topic' if cfg.policy_call == 'topic' else 'service',
    }
    b.bindings.append(Binding(strategy_name, 'camera_names', 'camera_names'))
    b.settings(
        strategy_name,
        params,
        {
            **robot_paths,
            'fps': 'fps',
            'duration': 'duration',
            'task': 'task',
            'interpolation_multiplier': 'interpolation_multiplier',
            'max_starved_ticks': 'max_starved_ticks',
            'display_data': 'display_data',
            'display_ip': 'display_ip',
            'display_port': 'display_port',
            'autostart': 'autostart',
        },
    )
    if recording:
        params['recorder_node'] = f'{ns}/recorder'
        # The recorder's cleanup waits up to push_timeout_s for the last upload.
        b.setting(
            params, 'transition_timeout_s', 'recording.push_timeout_s', max(120.0, float(rec.push_timeout_s) + 30.0)
        )
        b.settings(strategy_name, params, {'play_sounds': 'recording.play_sounds'})
        topics = ([f'{ns}/{input_device}/events'] if input_device != 'none' else []) + list(rec.input_topics)
        if topics:
            params['input_topics'] = topics
    if cfg.strategy == 'highlight':
        b.settings(
            strategy_name,
            params,
            {
                'save_key': 'recording.save_key',
                'push_key': 'recording.push_key',
                'discard_key': 'recording.discard_key',
            },
        )
    if cfg.strategy == 'dagger':
        params['teleop_node'] = f'{ns}/teleop'
        keys = rec.pedal_keys if input_device == 'pedal' else rec.keyboard_keys
        b.settings(
            strategy_name,
            params,
            {
                'teleop_type': 'recording.teleop.type',
                'record_autonomous': 'recording.record_autonomous',
                'smooth_handover': 'recording.smooth_handover',
            },
        )
        b.setting(params, 'num_episodes', 'recording.num_episodes', rec.num_episodes or rec.dataset.num_episodes)
        b.bindings.append(Binding(strategy_name, 'num_episodes', 'recording.num_episodes'))
        for event in ('pause_resume', 'correction', 'upload'):
            source = 'pedal_keys' if input_device == 'pedal' else 'keyboard_keys'
            b.setting(params, f'{event}_keys', f'recording.{source}.{event}', [keys[event]])
    if cfg.strategy == 'episodic':
        if teleop:
            params['teleop_node'] = f'{ns}/teleop'
            b.settings(strategy_name, params, {'teleop_type': 'recording.teleop.type'})
        b.settings(
            strategy_name,
            params,
            {
                'num_episodes': 'recording.dataset.num_episodes',
                'episode_time_s': 'recording.dataset.episode_time_s',
                'reset_time_s': 'recording.dataset.reset_time_s',
                'smooth_handover': 'recording.smooth_handover',
                'reset_to_initial_position': 'recording.reset_to_initial_position',
                'smooth_leader_to_follower_handover': 'recording.smooth_leader_to_follower_handover',
            },
        )
        source = 'pedal_keys' if input_device == 'pedal' else 'keyboard_keys'
        for event in ('next', 'redo'):
            b.setting(params, f'{event}_keys', f'recording.{source}.{event}', [getattr(rec, source)[event]])
    strategy = NodeSpec(strategy_name, strategy_name, 'strategy', params)
    return RunDescription(ns, managed, strategy, b.bindings)


def _drivers(
    b: _Builder, cfg: RolloutConfig, robot_paths: dict, naming: Naming, check: bool, command_source: str
) -> list[NodeSpec]:
    """One driver per bus: a bimanual robot gets one per arm, with the joint
    prefixes and calibration ids lerobot uses for its bi_* robots. Each
    executes only the commands of the run's strategy (`command_source`)."""
    try:
        spec = get_robot_spec(cfg.robot_type, cfg.use_degrees)
    except ConfigError:
        spec = None  # the driver's configure reports it, before anything moves
    # What the driver's ~/command_timing figures compare the bus writes with.
    rate = {'command_rate_hz': float(cfg.fps * cfg.interpolation_multiplier), 'command_source': command_source}
    can = {p: p for p in ('can_interface', 'use_can_fd', 'can_bitrate', 'can_data_bitrate')}
    if spec is None or not spec.arms:
        return [
            NodeSpec(
                'robot_driver',
                'robot_driver',
                'driver',
                b.settings(
                    'robot_driver',
                    rate,
                    {**robot_paths, **can, 'robot_port': 'robot_port', 'max_relative_target': 'max_relative_target'},
                ),
            )
        ]
    drivers = []
    for prefix, arm in spec.arms:
        side = prefix.rstrip('_')
        name = f'robot_driver_{side}'
        if check and not cfg.arm_ports.get(side):
            path = f'arm_ports.{side}'
            raise ConfigError(
                naming(path),
                f'{cfg.robot_type} needs the port of its {side} arm.',
                f'pass {naming.fix(path, "/dev/ttyACM0")}.',
            )
        # The arm's type, prefix and calibration id follow from the robot: wiring.
        # (and its side: OpenArm's per-side joint limits).
        params = {
            'robot_type': arm.type,
            'joint_prefix': prefix,
            'robot_id': f'{cfg.robot_id}_{side}',
            'robot_side': arm.side,
            **rate,
        }
        b.settings(
            name,
            params,
            {
                'calibration_dir': 'calibration_dir',
                'use_degrees': 'use_degrees',
                **can,
                'robot_port': f'arm_ports.{side}',
                'max_relative_target': 'max_relative_target',
            },
        )
        drivers.append(NodeSpec(name, 'robot_driver', 'driver', params))
    return drivers


def _check_leader_pairing(cfg: RolloutConfig, rec: RecordingConfig, naming: Naming) -> None:
    """A bimanual robot takes a bimanual leader and a one-arm robot a one-arm
    leader; said before anything connects."""
    from rollout_ros.hardware.leaders import get_leader_spec

    try:
        robot_arms = len(get_robot_spec(cfg.robot_type).arms) or 1
        leader = get_leader_spec(rec.teleop.type, cfg.use_degrees)
    except ConfigError:
        return  # the nodes' configure names the bad type
    leader_arms = len(leader.arms) or 1
    if robot_arms != leader_arms:
        kind = 'a bimanual leader (bi_so_leader, bi_openarm_mini)' if robot_arms > 1 else 'a one-arm leader'
        own = naming('external.teleop')
        own = f' ({own})' if own != naming('recording.teleop.type') else ''
        raise ConfigError(
            naming('recording.teleop.type'),
            f'{rec.teleop.type} has {leader_arms} arm(s), {cfg.robot_type} has {robot_arms}.',
            f'use {kind}, or run a teleop node of your own that publishes every joint{own}.',
        )
    if leader.arms:
        for side in ('left', 'right'):
            path = f'recording.teleop.{side}_port'
            if not getattr(rec.teleop, f'{side}_port'):
                raise ConfigError(
                    naming(path),
                    f'{rec.teleop.type} needs the port of its {side} arm.',
                    f'pass {naming.fix(path, "/dev/ttyACM2")}.',
                )


def _recorder_params(
    b: _Builder, cfg: RolloutConfig, rec: RecordingConfig, ns: str, strategy_name: str, camera_template: str
) -> dict:
    strategy = cfg.strategy
    params = {
        'camera_names': [c.name for c in cfg.cameras],
        'camera_shapes': [f'{c.height}x{c.width}' for c in cfg.cameras],
        'camera_topic_template': camera_template,
        'frames_topic': f'{ns}/{strategy_name}/frames',
        'intervention': strategy == 'dagger',
        'auto_rotate': strategy == 'sentry' or (strategy == 'dagger' and rec.record_autonomous),
    }
    b.settings(
        'recorder',
        params,
        {
            'repo_id': 'recording.dataset.repo_id',
            'root': 'recording.dataset.root',
            'resume': 'recording.resume',
            'stamp_repo_id': 'recording.dataset.stamp_repo_id',
            'robot_type': 'robot_type',
            'vcodec': 'recording.dataset.vcodec',
            'push_to_hub': 'recording.dataset.push_to_hub',
            'private': 'recording.dataset.private',
            'tags': 'recording.dataset.tags',
            'upload_every_n_episodes': 'recording.upload_every_n_episodes',
            'target_video_file_size_mb': 'recording.target_video_file_size_mb',
            'ring_buffer_max_memory_mb': 'recording.ring_buffer_max_memory_mb',
            'bag_path': 'recording.bag_path',
        },
    )
    b.setting(params, 'fps', 'fps', int(round(cfg.fps)))
    b.setting(params, 'push_timeout_s', 'recording.push_timeout_s', float(rec.push_timeout_s))
    if strategy == 'highlight':
        b.settings('recorder', params, {'ring_buffer_seconds': 'recording.ring_buffer_seconds'})
    else:
        params['ring_buffer_seconds'] = 0.0
    if rec.bag_path:
        b.setting(
            params,
            'bag_topics',
            'recording.bag_topics',
            rec.bag_topics or session_topics(ns, strategy_name, cfg.cameras),
        )
    # Empty lists left to the node's defaults: an override of [] carries no element type.
    return {k: v for k, v in params.items() if v != []}


def _check_recording(cfg: RolloutConfig, rec: RecordingConfig, naming: Naming) -> None:
    """What a recording run needs before any node starts."""
    if not rec.dataset.repo_id:
        raise ConfigError(
            naming('recording.dataset.repo_id'),
            'a recording strategy needs the dataset name.',
            f'pass {naming.fix("recording.dataset.repo_id", "<user>/rollout_<name>")}.',
        )
    if cfg.fps != round(cfg.fps):
        raise ConfigError(
            naming('fps'),
            f'{cfg.fps:g} Hz: a LeRobot dataset stores an integer rate, one row per tick.',
            'use an integer fps to record.',
        )
