# SPDX-License-Identifier: Apache-2.0
"""`rollout`: every node of a rollout in one process, on single-threaded
executors (see nodes/spin.py for why), for machines without `ros2 launch`
(and for the demo and tests).

Flags follow lerobot-rollout's (`--robot.type=... --policy.path=...`), so a
lerobot user keeps their command line. The nodes are the same ones the launch
files start; only the composition differs.
"""

import argparse
import json
import re
import sys
import threading
from pathlib import Path

import yaml

from rollout_ros.core.errors import ConfigError
from rollout_ros.core.limits import LIMITS, check_value
from rollout_ros.recording_config import (
    RECORDING_STRATEGIES,
    add_recording_flags,
    check_dataset_root,
    check_recording,
    parse_flag,
    recording_from_args,
)

# rclpy, torch and lerobot take seconds to import: everything that needs them
# is imported where it is used, so a mistyped flag is reported at once.
from rollout_ros.run_description import (
    STRATEGIES,
    CameraConfig,
    Naming,
    NodeSpec,
    RolloutConfig,  # noqa: F401
    describe,
)

SUMMARY_KEYS = (
    'ticks',
    'rate_hz',
    'period_err_p50_ms',
    'period_err_p99_ms',
    'period_err_max_ms',
    'overruns',
    'starved_ticks',
    'infer_p50_ms',
    'infer_p99_ms',
    # At the bus write (the driver's own clock), what the robot felt:
    'bus_rate_hz',
    'bus_period_err_p50_ms',
    'bus_period_err_p99_ms',
    'bus_period_err_max_ms',
    'bus_max_gap_ms',
    'bus_gaps',
)


# Config fields -> the flags that set them, for errors found while describing the run.
CLI_NAMES = Naming(
    {
        'arm_ports.left': '--robot.left_arm_config.port',
        'arm_ports.right': '--robot.right_arm_config.port',
        'inference_type': '--inference.type',
        'recording.dataset.repo_id': '--dataset.repo_id',
        'fps': '--fps',
        'external.teleop': '--teleop.type',
        'strategy': '--strategy.type',
        'recording.teleop.type': '--teleop.type',
        'recording.teleop.left_port': '--teleop.left_arm_config.port',
        'recording.teleop.right_port': '--teleop.right_arm_config.port',
    }
)


def parse_cameras(text: str) -> list[CameraConfig]:
    if not text:
        return []
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(
            '--robot.cameras',
            f'not valid YAML/JSON ({e}).',
            'e.g. "{front: {type: opencv, index_or_path: 0, width: 640, height: 480, fps: 30}}".',
        ) from e
    if not isinstance(raw, dict):
        raise ConfigError(
            '--robot.cameras', 'must map camera names to settings.', 'e.g. "{front: {type: opencv, index_or_path: 0}}".'
        )
    cams = []
    for name, c in raw.items():
        c = dict(c or {})
        kind = c.pop('type', 'opencv')
        if kind != 'opencv':
            raise ConfigError(
                f'--robot.cameras.{name}.type',
                f'{kind!r} is not supported yet.',
                'use type: opencv, or publish images from your own driver and remap.',
            )
        if 'index_or_path' not in c:
            raise ConfigError(
                f'--robot.cameras.{name}.index_or_path',
                'is missing.',
                'give a device index, /dev/video path or a video file.',
            )
        allowed = {'index_or_path', 'width', 'height', 'fps', 'color_mode'}
        unknown = set(c) - allowed
        if unknown:
            raise ConfigError(f'--robot.cameras.{name}', f'unknown keys {sorted(unknown)}.', f'use {sorted(allowed)}.')
        c['index_or_path'] = str(c['index_or_path'])
        c['color_mode'] = str(c.get('color_mode', 'rgb')).lower()
        cams.append(CameraConfig(name=str(name), **c))
    return cams


class FlagParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (the usage is pages long here)."""

    def error(self, message: str):
        self.exit(2, f'{self.prog}: error: {message}. See {self.prog} --help.\n')


# RolloutConfig field -> (CLI flag, core.limits key), checked before anything starts.
NUMERIC_FLAGS = {
    'fps': ('--fps', 'fps'),
    'duration': ('--duration', 'duration'),
    'max_relative_target': ('--robot.max_relative_target', 'max_relative_target'),
    'interpolation_multiplier': ('--interpolation_multiplier', 'interpolation_multiplier'),
    'max_starved_ticks': ('--max_starved_ticks', 'max_starved_ticks'),
    'torch_threads': ('--torch_threads', 'torch_threads'),
    'queue_threshold': ('--inference.queue_threshold', 'queue_threshold'),
    'execution_horizon': ('--inference.rtc.execution_horizon', 'execution_horizon'),
    'max_guidance_weight': ('--inference.rtc.max_guidance_weight', 'max_guidance_weight'),
    'display_port': ('--display_port', 'display_port'),
}
RECORDING_NUMERIC_FLAGS = {
    'upload_every_n_episodes': ('--strategy.upload_every_n_episodes', 'upload_every_n_episodes'),
    'target_video_file_size_mb': ('--strategy.target_video_file_size_mb', 'target_video_file_size_mb'),
    'ring_buffer_seconds': ('--strategy.ring_buffer_seconds', 'ring_buffer_seconds'),
    'ring_buffer_max_memory_mb': ('--strategy.ring_buffer_max_memory_mb', 'ring_buffer_max_memory_mb'),
    'push_timeout_s': ('--push_timeout_s', 'push_timeout_s'),
}


def check_numbers(cfg: 'RolloutConfig') -> None:
    """Every number a user types, against the ranges the nodes declare: a
    ConfigError naming the flag, before rclpy is even imported."""
    for name, (flag, limit) in NUMERIC_FLAGS.items():
        check_value(flag, limit, getattr(cfg, name))
    for cam in cfg.cameras:
        for key, limit in (('width', 'camera_size'), ('height', 'camera_size'), ('fps', 'camera_fps')):
            check_value(
                f'--robot.cameras ({cam.name}.{key})',
                limit,
                getattr(cam, key),
                f'e.g. {{{cam.name}: {{{key}: {LIMITS[limit].example}}}}}.',
            )
    rec = cfg.recording
    if rec is None:
        return
    for name, (flag, limit) in RECORDING_NUMERIC_FLAGS.items():
        check_value(flag, limit, getattr(rec, name))
    check_value('--dataset.num_episodes', 'num_episodes', rec.dataset.num_episodes)
    check_value('--dataset.episode_time_s', 'episode_time_s', rec.dataset.episode_time_s)
    check_value('--dataset.reset_time_s', 'reset_time_s', rec.dataset.reset_time_s)
    if rec.num_episodes:
        check_value('--strategy.num_episodes', 'num_episodes', rec.num_episodes)
    if round(cfg.fps) < 1:
        raise ConfigError(
            '--fps',
            f'{cfg.fps:g}: a dataset stores a whole number of frames per second.',
            'use --fps=1 or more with a recording strategy.',
        )


# ROS parameter -> CLI flag, for node errors shown to a CLI user.
PARAM_FLAGS = {
    'policy_path': '--policy.path',
    'device': '--policy.device',
    'use_amp': '--policy.use_amp',
    'robot_type': '--robot.type',
    'robot_port': '--robot.port',
    'robot_id': '--robot.id',
    'calibration_dir': '--robot.calibration_dir',
    'use_degrees': '--robot.use_degrees',
    'max_relative_target': '--robot.max_relative_target',
    'camera_names': '--robot.cameras',
    'camera_shapes': '--robot.cameras',
    'index_or_path': '--robot.cameras',
    'color_mode': '--robot.cameras',
    'fps': '--fps',
    'duration': '--duration',
    'interpolation_multiplier': '--interpolation_multiplier',
    'max_starved_ticks': '--max_starved_ticks',
    'rename_map': '--rename_map',
    'use_torch_compile': '--use_torch_compile',
    'torch_threads': '--torch_threads',
    'inference_type': '--inference.type',
    'queue_threshold': '--inference.queue_threshold',
    'execution_horizon': '--inference.rtc.execution_horizon',
    'max_guidance_weight': '--inference.rtc.max_guidance_weight',
    'prefix_attention_schedule': '--inference.rtc.prefix_attention_schedule',
    'repo_id': '--dataset.repo_id',
    'dataset.repo_id': '--dataset.repo_id',
    'root': '--dataset.root',
    'resume': '--resume',
    'push_to_hub': '--dataset.push_to_hub',
    'private': '--dataset.private',
    'vcodec': '--dataset.vcodec',
    'teleop_type': '--teleop.type',
    'teleop_port': '--teleop.port',
    'teleop_id': '--teleop.id',
    'teleop_calibration_dir': '--teleop.calibration_dir',
    'teleop_left_port': '--teleop.left_arm_config.port',
    'teleop_right_port': '--teleop.right_arm_config.port',
    'teleop_side': '--teleop.side',
    'robot_side': '--robot.side',
    'can_interface': '--robot.can_interface',
    'tty_path': '--strategy.tty_path',
    'device_path': '--strategy.pedal.device_path',
    'bag_path': '--bag_path',
    'bag_topics': '--bag_topics',
    'display_port': '--display_port',
    'upload_every_n_episodes': '--strategy.upload_every_n_episodes',
    'episode_time_s': '--dataset.episode_time_s',
    'reset_time_s': '--dataset.reset_time_s',
}
_PARAM_RE = re.compile(
    r'(?<![\w./-])('
    + '|'.join(sorted(map(re.escape, PARAM_FLAGS), key=len, reverse=True))
    + r')(:=|: |\b(?= (?:is|has|must|needs|differs|of)\b))'
)


def cli_terms(text: str) -> str:
    """A node's error in the words of the command line: `resume:=true` ->
    `--resume=true`, `policy_path: ...` -> `--policy.path: ...`."""

    def flag(m):
        sep = {':=': '=', ': ': ': '}.get(m.group(2), m.group(2))
        return PARAM_FLAGS[m.group(1)] + sep

    return _PARAM_RE.sub(flag, text)


def parameter_error(e) -> ConfigError:
    """rclpy's refusal of a parameter value (a range the CLI did not check)
    as a ConfigError naming the flag."""
    from rollout_ros.nodes.spin import parameter_refusal

    param, reason = parameter_refusal(e)
    return ConfigError(PARAM_FLAGS.get(param, param), reason, 'see rollout --help for the allowed values.')


def build_parser() -> argparse.ArgumentParser:
    p = FlagParser(prog='rollout', description=__doc__.splitlines()[0])
    a = p.add_argument
    a(
        '--strategy.type',
        dest='strategy',
        default='base',
        choices=sorted(STRATEGIES),
        help='base: run; sentry: record everything; highlight: keep the last seconds, save on a key; '
        'dagger: human corrections recorded; episodic: num_episodes episodes with resets, as lerobot-record',
    )
    a('--policy.path', dest='policy_path', default='', help='checkpoint dir or Hub id')
    a('--policy.device', '--device', dest='device', default='cpu', help='cpu, cuda, mps or auto')
    a('--robot.type', dest='robot_type', default='koch_follower')
    a('--robot.port', dest='robot_port', default='/dev/ttyACM0')
    a('--robot.left_arm_config.port', dest='left_port', default='', help='bi_* robots: left arm port')
    a('--robot.right_arm_config.port', dest='right_port', default='', help='bi_* robots: right arm port')
    a('--robot.id', dest='robot_id', default='follower')
    a('--robot.calibration_dir', dest='calibration_dir', default='')
    a('--robot.use_degrees', dest='use_degrees', default='false')
    a('--robot.side', dest='robot_side', default='', help='openarm_follower: left or right joint limits')
    # CAN robots (openarm_follower; both arms of bi_openarm_follower).
    a(
        '--robot.can_interface',
        '--robot.left_arm_config.can_interface',
        '--robot.right_arm_config.can_interface',
        dest='can_interface',
        default='socketcan',
        help='python-can interface; the port is the channel (can0)',
    )
    a(
        '--robot.use_can_fd',
        '--robot.left_arm_config.use_can_fd',
        '--robot.right_arm_config.use_can_fd',
        dest='use_can_fd',
        default='true',
    )
    a(
        '--robot.can_bitrate',
        '--robot.left_arm_config.can_bitrate',
        '--robot.right_arm_config.can_bitrate',
        dest='can_bitrate',
        type=int,
        default=1_000_000,
    )
    a(
        '--robot.can_data_bitrate',
        '--robot.left_arm_config.can_data_bitrate',
        '--robot.right_arm_config.can_data_bitrate',
        dest='can_data_bitrate',
        type=int,
        default=5_000_000,
    )
    a(
        '--robot.max_relative_target',
        dest='max_relative_target',
        type=float,
        default=0.35,
        help='largest step per command from the present position [rad]; 0 turns the limit off '
        '(not recommended), allowed 0 to 6.3',
    )
    a('--robot.cameras', dest='cameras', default='', help='YAML map of cameras (lerobot syntax)')
    a('--fps', type=float, default=30.0, help='control-loop and policy rate [Hz], 0.1 to 1000')
    a('--duration', type=float, default=0.0, help='seconds; 0 = until Ctrl-C')
    a(
        '--interpolation_multiplier',
        type=int,
        default=1,
        help='commands per policy action (robot commanded at fps*N, policy at fps), 1 to 20',
    )
    a(
        '--max_starved_ticks',
        type=int,
        default=15,
        help='policy ticks without a fresh action (stale joint states or frames, no action in time) after '
        'which the run stops with an error and the arm holds, 1 or more',
    )
    a('--task', default='')
    a('--rename_map', default='', help="JSON map of our image keys to the policy's")
    a(
        '--policy_call',
        choices=('direct', 'service', 'topic'),
        default='direct',
        help="direct: in-process call; service: through the policy node's ~/infer service (sync); "
        "topic: rtc chunks over the policy node's ~/observation and ~/action_chunk topics",
    )
    a(
        '--use_torch_compile',
        nargs='?',
        const='true',
        default='false',
        help='torch.compile the policy, compiled and warmed up before the loop starts',
    )
    a(
        '--policy.use_amp',
        dest='use_amp',
        nargs='?',
        const='true',
        default='false',
        help='mixed-precision inference: float16 on cuda, bfloat16 on cpu',
    )
    a(
        '--torch_threads',
        type=int,
        default=0,
        help='torch intra-op CPU threads; 0 = every core but one (the loop keeps a core)',
    )
    a(
        '--inference.type',
        dest='inference_type',
        choices=('sync', 'rtc'),
        default='sync',
        help='sync: one policy call per tick; rtc: background chunking, the loop never waits',
    )
    a(
        '--inference.queue_threshold',
        dest='queue_threshold',
        type=int,
        default=0,
        help='rtc: start the next inference at this many queued actions; 0 = half a chunk',
    )
    a(
        '--inference.rtc.execution_horizon',
        '--inference.execution_horizon',
        dest='execution_horizon',
        type=int,
        default=0,
        help='rtc: guided overlap; 0 = auto',
    )
    a(
        '--inference.rtc.max_guidance_weight',
        '--inference.max_guidance_weight',
        dest='max_guidance_weight',
        type=float,
        default=10.0,
    )
    a(
        '--inference.rtc.prefix_attention_schedule',
        '--inference.prefix_attention_schedule',
        dest='prefix_attention_schedule',
        default='LINEAR',
        choices=('LINEAR', 'EXP', 'ONES', 'ZEROS'),
    )
    a(
        '--display_data',
        nargs='?',
        const='true',
        default='false',
        help='stream observations and actions to a Rerun viewer (off the control loop)',
    )
    a('--display_ip', default='', help="Rerun viewer host; '' = spawn a local viewer")
    a('--display_port', type=int, default=9876)
    a('--summary_json', default='', help='also write the summary to this file')
    a(
        '--namespace',
        default='',
        help='ROS namespace of every node, topic and service of this run (one per robot '
        "on a shared ROS graph, e.g. arm1); '' = the root",
    )
    add_recording_flags(p)
    return p


def namespace_from(text: str) -> str:
    """--namespace as an absolute ROS namespace ('' stays the root)."""
    ns = '/' + text.strip().strip('/')
    if ns == '/':
        return ''
    # rcl's rule for namespaces, checked here without importing rclpy (seconds).
    if not re.fullmatch(r'(/[A-Za-z_][A-Za-z0-9_]*)+', ns):
        raise ConfigError(
            '--namespace',
            f'{text!r} is not a ROS namespace.',
            'use letters, digits and underscores, segments separated by / and not starting with '
            'a digit, e.g. arm1 or lab/arm1.',
        )
    return ns


def config_from_args(ns) -> RolloutConfig:
    recording = recording_from_args(ns)
    check_recording(ns.strategy, ns.fps, ns.task, recording)
    cfg = RolloutConfig(
        policy_path=ns.policy_path,
        robot_type=ns.robot_type,
        robot_port=ns.robot_port,
        arm_ports={side: port for side, port in (('left', ns.left_port), ('right', ns.right_port)) if port},
        robot_id=ns.robot_id,
        calibration_dir=ns.calibration_dir,
        use_degrees=parse_flag('--robot.use_degrees', ns.use_degrees),
        robot_side=ns.robot_side,
        can_interface=ns.can_interface,
        use_can_fd=parse_flag('--robot.use_can_fd', ns.use_can_fd),
        can_bitrate=ns.can_bitrate,
        can_data_bitrate=ns.can_data_bitrate,
        max_relative_target=ns.max_relative_target,
        cameras=parse_cameras(ns.cameras),
        strategy=ns.strategy,
        fps=ns.fps,
        duration=ns.duration,
        task=ns.task or ns.dataset_single_task,
        device=ns.device,
        recording=recording if ns.strategy in RECORDING_STRATEGIES else None,
        rename_map=ns.rename_map,
        policy_call=ns.policy_call,
        torch_threads=ns.torch_threads,
        inference_type=ns.inference_type,
        queue_threshold=ns.queue_threshold,
        interpolation_multiplier=ns.interpolation_multiplier,
        max_starved_ticks=ns.max_starved_ticks,
        execution_horizon=ns.execution_horizon,
        max_guidance_weight=ns.max_guidance_weight,
        prefix_attention_schedule=ns.prefix_attention_schedule,
        use_torch_compile=parse_flag('--use_torch_compile', ns.use_torch_compile),
        use_amp=parse_flag('--policy.use_amp', ns.use_amp),
        display_data=parse_flag('--display_data', ns.display_data),
        display_ip=ns.display_ip,
        display_port=ns.display_port,
        namespace=namespace_from(ns.namespace),
    )
    check_numbers(cfg)
    return cfg


def _params(params: dict) -> list:
    from rclpy.parameter import Parameter

    # An empty list carries no element type; camera lists are string arrays.
    return [
        Parameter(k, Parameter.Type.STRING_ARRAY, v) if v == [] else Parameter(k, value=v) for k, v in params.items()
    ]


def make_node(spec: NodeSpec, namespace: str = ''):
    """The node a description entry names, in this process."""
    import importlib

    module, cls = spec.node_class.split(':')
    node_cls = getattr(importlib.import_module(module), cls)
    return node_cls(spec.name, namespace=namespace or None, parameter_overrides=_params(spec.params))


def build_nodes(cfg: RolloutConfig):
    """The strategy and the nodes it manages, parameterised from one config."""
    run = describe(cfg, naming=CLI_NAMES)
    made = []
    try:
        for spec in (*run.managed, run.strategy):
            made.append(make_node(spec, run.namespace))
    except BaseException:
        # A node that cannot be made (a bad port, a wrong leader) must not
        # leave the ones made before it in the graph: a later run in this
        # process would see two servers of their services.
        for node in made:
            node.destroy_node()
        raise
    *managed, strategy = made
    strategy.local_nodes = {run.full_name(spec).strip('/'): node for spec, node in zip(run.managed, managed)}
    if cfg.policy_call == 'direct':
        strategy.local_policy = managed[0]
    strategy.action_log_len = cfg.action_log_len
    return strategy, managed


class Rollout:
    """A composed rollout: start() brings it up, wait() runs it, stop() tears it down."""

    def __init__(self, cfg: RolloutConfig):
        from rclpy.exceptions import InvalidParameterValueException

        check_numbers(cfg)
        check_dataset_root(cfg.recording)
        self.cfg = cfg
        try:
            self.strategy, self.managed = build_nodes(cfg)
        except InvalidParameterValueException as e:
            raise parameter_error(e) from None
        self.dataset_root = ''
        from rollout_ros.nodes.spin import fail_node, make_executor, spin_guarded

        self.executor = make_executor()
        for node in (self.strategy, *self.managed):
            self.executor.add_node(node)
        # A callback that raises ends the executor: the run then stops with that error.
        self._fail_strategy = fail_node(self.strategy)
        self._spinner = spin_guarded(self.executor, self._executor_died)

    def _executor_died(self, message: str) -> None:
        self._fail_strategy(message)
        self.strategy.finished.set()

    def start(self) -> None:
        for step, want in ((self.strategy.trigger_configure, 'inactive'), (self.strategy.trigger_activate, 'active')):
            step()
            if self.strategy.state_label != want:
                raise RuntimeError(self.strategy.last_error or 'strategy failed to start')
        recorder = next((n for n in self.managed if n.get_name() == 'recorder'), None)
        if recorder is not None:
            self.dataset_root = recorder.status()['root']  # resolved: stamp, HF_LEROBOT_HOME

    def wait(self, stop: threading.Event | None = None, status_stream=None) -> None:
        """Until the strategy finishes or `stop`; with a terminal, the status
        line is refreshed in place once a second."""
        stop = stop or threading.Event()
        shown = ''
        if status_stream is not None:
            # The line is refreshed in place here: no status log lines between.
            from rclpy.parameter import Parameter

            self.strategy.set_parameters([Parameter('status_log_period_s', value=0.0)])
        while not self.strategy.finished.wait(0.1):
            if stop.is_set():
                break
            text = self.strategy.status_text
            if status_stream is not None and text and text != shown:
                status_stream.write('\r\033[K' + text)
                status_stream.flush()
                shown = text
        if shown:
            status_stream.write('\n')

    def stop(self, abort: bool = False) -> dict:
        """Ordered teardown (the open episode saved, uploads awaited); with
        `abort`, or on a StopRequest (second Ctrl-C) during it, only what must
        not be skipped: every node's abort() (the drivers' torque policy).
        Finished episodes are on disk either way."""
        from rollout_ros.nodes.spin import StopRequest

        s = self.strategy
        try:
            if abort:
                raise StopRequest
            if s.state_label == 'active':
                s.trigger_deactivate()
            if s.state_label == 'inactive':
                s.trigger_cleanup()
            for node in (s, *self.managed):
                if node.state_label == 'finalized':
                    continue
                try:
                    node.trigger_shutdown()
                except Exception as e:  # noqa: BLE001 - one node caught mid-transition must not keep the rest up
                    message = f'{node.get_name()}: shutdown failed ({type(e).__name__}: {e})'
                    s.get_logger().error(message)
                    s.last_error = s.last_error or message
        except StopRequest:
            self._abort()
            return s.summary
        recorder = next((n for n in self.managed if n.get_name() == 'recorder'), None)
        self.executor.shutdown(timeout_sec=2.0)
        for node in (s, *self.managed):
            node.destroy_node()
        self._add_dataset_figures()
        if recorder is not None and getattr(recorder, 'upload_result', None):
            s.summary['upload'] = recorder.upload_result
        return s.summary

    def _add_dataset_figures(self) -> None:
        if self.dataset_root:
            s = self.strategy
            figures = dataset_figures(self.dataset_root)
            # Last in the summary, whatever the strategy counted under the same names.
            s.summary = {**{k: v for k, v in s.summary.items() if k not in figures}, **figures}

    def _abort(self) -> None:
        s = self.strategy
        if s.loop is not None:
            s.loop.stop()
        for node in reversed(self.managed):  # drivers first
            try:
                node.abort()
            except Exception as e:  # noqa: BLE001 - the next node's abort must still run
                print(f'rollout: {node.get_name()}: abort: {type(e).__name__}: {e}', file=sys.stderr)
        # No thread may still spin on the context when rclpy shuts down.
        self.executor.shutdown(timeout_sec=1.0)
        for node in (s, *self.managed):
            try:
                node.destroy_node()
            except Exception:  # noqa: BLE001 - half torn down; the process ends next
                pass
        if not s.summary and s.loop is not None and s.loop.pacer.started:
            s.summary = {**s.loop.summary(), 'strategy': s.strategy_type}
        s.summary['aborted'] = True
        self._add_dataset_figures()


def dataset_figures(root: str) -> dict:
    """The dataset's totals on disk once the recorder has finalized (with --resume, more than this
    run's `episodes` and `frames`)."""
    info_path = Path(root) / 'meta' / 'info.json'
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    return {
        'dataset_root': str(root),
        'dataset_episodes': info.get('total_episodes', 0),
        'dataset_frames': info.get('total_frames', 0),
    }


def format_summary(summary: dict, log_dir: str) -> str:
    s = summary
    lines = [
        f'ticks {s["ticks"]}  rate {s["rate_hz"]:.2f} Hz',
        f'loop: tick lateness p50 {s["period_err_p50_ms"]:.2f} ms  p99 {s["period_err_p99_ms"]:.2f} ms  '
        f'max {s["period_err_max_ms"]:.2f} ms  overruns {s["overruns"]}  starved {s["starved_ticks"]}',
    ]
    if 'bus_max_gap_ms' in s:
        lines.append(
            f'at the bus: {s["bus_rate_hz"]:.2f} Hz  period error p50 {s["bus_period_err_p50_ms"]:.2f} ms  '
            f'p99 {s["bus_period_err_p99_ms"]:.2f} ms  max {s["bus_period_err_max_ms"]:.2f} ms  '
            f'longest gap {s["bus_max_gap_ms"]:.1f} ms  gaps > 2 periods {s["bus_gaps"]}'
            + (f'  watchdog holds {s["bus_holds"]}' if s.get('bus_holds') else '')
        )
    if s.get('infer_measures') == 'queue_pop':
        chunk = (
            f'  chunk inference (background) p50 {s["chunk_infer_p50_ms"]:.2f} ms  p99 {s["chunk_infer_p99_ms"]:.2f} ms'
            if 'chunk_infer_p50_ms' in s
            else ''
        )
        lines.append(
            f'next action from the queue p50 {s["infer_p50_ms"]:.2f} ms  p99 {s["infer_p99_ms"]:.2f} ms{chunk}'
        )
    else:
        lines.append(f'inference p50 {s["infer_p50_ms"]:.2f} ms  p99 {s["infer_p99_ms"]:.2f} ms')
    if 'dataset_root' in s:
        lines.append(
            f'recorded {s.get("episodes", 0)} episodes, {s.get("frames", 0)} frames this run; '
            f'the dataset holds {s["dataset_episodes"]} episodes, {s["dataset_frames"]} frames '
            f'({s["dataset_root"]})'
        )
    lines += [
        f'logs: {log_dir}',
        json.dumps({k: s[k] for k in (*(k for k in SUMMARY_KEYS if k in s), *(k for k in s if k not in SUMMARY_KEYS))}),
    ]
    return '\n'.join(lines)


def run(cfg: RolloutConfig, stop: threading.Event | None = None, status_stream=None, on_started=None) -> dict:
    """Bring up, run until duration/stop, tear down in order; returns the summary.

    `on_started(rollout)` runs once everything is active (a scripted operator
    starts there) and may return a callable that runs before the teardown."""
    from rollout_ros.nodes.spin import StopRequest

    rollout = Rollout(cfg)
    error = None
    finish = None
    aborted = False
    try:
        rollout.start()
        if on_started is not None:
            finish = on_started(rollout)
        rollout.wait(stop, status_stream)
        error = rollout.strategy.last_error or None
    except StopRequest:
        aborted = True
    finally:
        if finish is not None:
            finish()
        summary = rollout.stop(abort=aborted)
    # A stop that failed (torque left on, a node that did not answer) fails the run too.
    error = error or rollout.strategy.last_error or None
    if error:
        raise RuntimeError(error)
    return summary


def stop_notice(live: list) -> str:
    """What the first Ctrl-C promises."""
    strategy = live[0].strategy if live else None
    if getattr(strategy, 'recording', False):
        return 'rollout: saving the episode - press Ctrl-C again to abort (finished episodes are kept)'
    return 'rollout: stopping - press Ctrl-C again to abort'


def split_ros_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """(our flags, the `--ros-args ... [--]` blocks), without importing rclpy."""
    ours, ros = [], []
    args = iter(argv)
    for arg in args:
        if arg != '--ros-args':
            ours.append(arg)
            continue
        ros.append(arg)
        for inner in args:
            ros.append(inner)
            if inner == '--':
                break
    return ours, ros


def main(argv=None) -> int:
    """The `rollout` command. As the process entry (no `argv`), a run that
    started ends the process at once after its teardown (spin.exit_process)."""
    process_entry = argv is None
    # `--ros-args ...` (remaps, log levels) applies to every node of the run,
    # as it would to each node's own process under launch.
    argv, ros_args = split_ros_args(sys.argv[1:] if argv is None else list(argv))
    ns = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(ns)
        check_dataset_root(cfg.recording)  # before seconds of imports
    except ConfigError as e:
        print(f'rollout: error: {e}', file=sys.stderr)
        return 2
    from rollout_ros.nodes.spin import exit_process

    rc = _run_main(ns, cfg, ros_args)
    if process_entry:
        exit_process(rc)
    return rc


def _run_main(ns, cfg, ros_args: list[str]) -> int:
    import rclpy
    import rclpy.logging
    from rclpy.signals import SignalHandlerOptions

    from rollout_ros.nodes.spin import install_stop_signals

    rclpy.init(args=['rollout', *ros_args], signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    live = []
    install_stop_signals(stop, lambda: stop_notice(live))
    try:
        summary = run(cfg, stop, sys.stderr if sys.stderr.isatty() else None, on_started=live.append)
    except (ConfigError, RuntimeError) as e:
        print(f'rollout: error: {cli_terms(str(e))}', file=sys.stderr)
        return 2
    finally:
        rclpy.try_shutdown()
    print(format_summary(summary, rclpy.logging.get_logging_directory()))
    if ns.summary_json:
        with open(ns.summary_json, 'w') as f:
            json.dump(summary, f)
    upload = summary.get('upload', {})
    if upload.get('error'):
        print(f'rollout: error: {upload["error"]}', file=sys.stderr)
        return 1
    if summary.get('aborted'):
        kept = (
            f'; {summary["dataset_episodes"]} finished episode(s) kept in {summary["dataset_root"]}'
            if 'dataset_root' in summary
            else ''
        )
        print(
            f'rollout: error: aborted by a second Ctrl-C: the open episode was not saved{kept}; '
            'drivers stopped with their torque policy',
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
