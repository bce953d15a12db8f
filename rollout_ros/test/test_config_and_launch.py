# SPDX-License-Identifier: Apache-2.0
"""config/*.yaml must name exactly the parameters their nodes declare, with the
declared types, every key commented; the launch files must compile, be
installed, and, where the launch packages are installed (they come with a ROS
install), build for every strategy and plug-in variant with node parameters
that the nodes declare."""

import importlib.util
import os
import py_compile
import runpy
from pathlib import Path

import pytest
import yaml
from rcl_interfaces.msg import ParameterType

from rollout_ros.core.errors import ConfigError
from rollout_ros.nodes.camera_node import CameraNode
from rollout_ros.nodes.keyboard_node import KeyboardNode
from rollout_ros.nodes.pedal_node import PedalNode
from rollout_ros.nodes.policy_node import PolicyNode
from rollout_ros.nodes.recorder_node import RecorderNode
from rollout_ros.nodes.robot_driver_node import RobotDriverNode
from rollout_ros.nodes.teleop_node import TeleopNode
from rollout_ros.strategies.base_strategy import BaseStrategyNode
from rollout_ros.strategies.dagger import DaggerStrategyNode
from rollout_ros.strategies.episodic import EpisodicStrategyNode
from rollout_ros.strategies.highlight import HighlightStrategyNode
from rollout_ros.strategies.sentry import SentryStrategyNode

PKG = Path(__file__).resolve().parents[1]
CONFIG = PKG / 'config'
LAUNCH = PKG / 'launch'
YAMLS = sorted(CONFIG.glob('*.yaml'))
STRATEGIES = ('base', 'sentry', 'highlight', 'dagger', 'episodic')
# Executable (setup.py console script) -> the node class it runs.
EXECUTABLES = {
    'robot_driver': RobotDriverNode,
    'camera': CameraNode,
    'policy': PolicyNode,
    'teleop': TeleopNode,
    'keyboard': KeyboardNode,
    'pedal': PedalNode,
    'recorder': RecorderNode,
    'base_strategy': BaseStrategyNode,
    'sentry_strategy': SentryStrategyNode,
    'highlight_strategy': HighlightStrategyNode,
    'dagger_strategy': DaggerStrategyNode,
    'episodic_strategy': EpisodicStrategyNode,
}
PY_TYPES = {
    ParameterType.PARAMETER_BOOL: bool,
    ParameterType.PARAMETER_INTEGER: int,
    ParameterType.PARAMETER_DOUBLE: float,
    ParameterType.PARAMETER_STRING: str,
    ParameterType.PARAMETER_STRING_ARRAY: list,
}
# Keys that differ between files on purpose; everything else a node has in
# several files must agree (one robot, camera and recorder setup for all).
PER_STRATEGY = {
    # teleop_node, num_episodes, smooth_handover, handover_speed: dagger's and episodic's mean different things.
    'strategy': {'managed_nodes', 'teleop_node', 'num_episodes', 'smooth_handover', 'handover_speed', 'teleop_type'},
    # recorder.yaml keeps a bare recorder local; the strategies use lerobot's default (push).
    'recorder': {'frames_topic', 'auto_rotate', 'ring_buffer_seconds', 'intervention', 'push_to_hub'},
}


def executable_of(node_name: str) -> str:
    """camera_<name> and robot_driver[_left|_right] run one executable each;
    every other node is named after its executable."""
    for prefix in ('camera', 'robot_driver'):
        if node_name == prefix or node_name.startswith(f'{prefix}_'):
            return prefix
    return node_name


@pytest.fixture(scope='module')
def declared(ros):
    """executable -> {parameter: descriptor} of what its node class declares."""
    out = {}
    for exe, cls in EXECUTABLES.items():
        node = cls(f'declared_{exe}')
        try:
            out[exe] = {
                name: node.describe_parameter(name)
                for name in node._parameters
                if name not in ('use_sim_time', 'start_type_description_service')
            }
        finally:
            node.destroy_node()
    return out


def check_values(where: str, values: dict, declared: dict) -> None:
    for name, value in values.items():
        assert name in declared, f'{where}: {name} is not a declared parameter'
        assert declared[name].description, f'{where}: {name} has no description'
        want = PY_TYPES[declared[name].type]
        # Exact types: ROS refuses an int for a double parameter, and a bool is no int.
        assert type(value) is want, f'{where}: {name}={value!r} is not {want.__name__}'
        if want is list:
            assert value and all(type(v) is str for v in value), (
                f'{where}: {name}={value!r}: an empty list reaches the node unset'
            )


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize('path', YAMLS, ids=lambda p: p.name)
def test_yaml_names_exactly_the_declared_parameters(path, declared):
    raw = load(path)
    if path.stem in STRATEGIES:
        # '/**/' makes the sections match in the namespace of a launch.
        assert all(key.startswith('/**/') for key in raw), f'{path.name}: {list(raw)}'
    for key, section in raw.items():
        node = key.removeprefix('/**/')
        exe = executable_of(node)
        assert exe in declared, f'{path.name}: no node class for section {key}'
        values = section['ros__parameters']
        assert set(values) == set(declared[exe]), (path.name, node, set(values) ^ set(declared[exe]))
        # An empty list is how a YAML leaves a string-array parameter unset.
        check_values(f'{path.name} {node}', {k: v for k, v in values.items() if v != []}, declared[exe])


def test_sections_agree_across_files():
    seen = {}
    for path in YAMLS:
        for key, section in load(path).items():
            node = key.removeprefix('/**/')
            kind = 'strategy' if node.endswith('_strategy') else node
            for name, value in section['ros__parameters'].items():
                if name in PER_STRATEGY.get(kind, ()):
                    continue
                first_file, first = seen.setdefault((kind, name), (path.name, value))
                assert value == first, f'{node}.{name}: {value!r} in {path.name}, {first!r} in {first_file}'


def test_every_yaml_key_is_commented():
    for path in YAMLS:
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith('#') or stripped.endswith(':'):
                continue
            if ':' in stripped and '#' not in stripped:
                # A value continued from the previous comment block is fine
                # only for the robot parameters, documented above them.
                assert stripped.split(':')[0] in ('calibration_dir', 'use_degrees', 'joint_prefix', 'robot_side'), (
                    f'{path.name}: no comment on {stripped!r}'
                )


def setup_kwargs(monkeypatch) -> dict:
    import setuptools

    captured = {}
    monkeypatch.setattr(setuptools, 'setup', lambda **kw: captured.update(kw))
    monkeypatch.chdir(PKG)
    runpy.run_path('setup.py')
    return captured


def test_setup_installs_every_launch_and_config_file(monkeypatch):
    kw = setup_kwargs(monkeypatch)
    installed = {str(Path(dest) / Path(src).name) for dest, sources in kw['data_files'] for src in sources}
    files = [p for p in LAUNCH.rglob('*.py')] + [p for p in CONFIG.iterdir() if p.suffix in ('.yaml', '.xml')]
    missing = [str(p.relative_to(PKG)) for p in files if f'share/rollout_ros/{p.relative_to(PKG)}' not in installed]
    assert not missing, f'not installed by setup.py data_files: {missing}'
    scripts = {line.split('=')[0].strip() for line in kw['entry_points']['console_scripts']}
    assert set(EXECUTABLES) <= scripts, set(EXECUTABLES) - scripts


def test_launch_files_compile():
    paths = sorted(LAUNCH.rglob('*.py'))
    assert {f'{s}.launch.py' for s in STRATEGIES} <= {p.name for p in paths}
    for path in paths:
        py_compile.compile(str(path), doraise=True)


# Building the launch descriptions ---------------------------------------------
needs_launch = pytest.mark.skipif(
    importlib.util.find_spec('launch') is None or importlib.util.find_spec('launch_ros') is None,
    reason='launch/launch_ros not installed (a ROS install has them; make setup installs them from ../shared/ros2)',
)


class Built:
    """What a launch file starts for some arguments, without starting it."""

    def __init__(self, path: Path, **args):
        from launch import LaunchContext
        from launch.actions import RegisterEventHandler
        from launch.launch_description_sources import get_launch_description_from_python_launch_file
        from launch_ros.actions import Node

        self.description = get_launch_description_from_python_launch_file(str(path))
        self.context = LaunchContext()
        self.context.launch_configurations.update(args)
        self.nodes, self.handlers = [], []

        def visit(entities):
            for entity in entities:
                if isinstance(entity, Node):
                    self.nodes.append(entity)
                elif isinstance(entity, RegisterEventHandler):
                    self.handlers.append(entity)
                else:
                    visit(entity.visit(self.context) or [])

        visit([self.description])

    def node(self, node) -> tuple[str, str, list, dict]:
        """(executable, absolute name, parameter files, parameters set by the launch)."""
        from launch_ros.utilities import evaluate_parameters

        files, params = [], {}
        for item in evaluate_parameters(self.context, node._Node__parameters):
            if isinstance(item, dict):
                # Sequences come back as tuples; the node gets them as lists.
                params.update({k: list(v) if isinstance(v, tuple) else v for k, v in item.items()})
            else:
                files.append(str(item))
        ns = node._Node__node_namespace.strip('/')
        return node.node_executable, f'/{ns}/{node._Node__node_name}'.replace('//', '/'), files, params

    @property
    def by_name(self) -> dict[str, tuple]:
        return {name: (exe, files, params) for exe, name, files, params in map(self.node, self.nodes)}


def exit_event(action, returncode: int):
    from launch.events.process import ProcessExited

    return ProcessExited(action=action, name='p', cmd=['p'], cwd=None, env=None, pid=1, returncode=returncode)


def strategy_launch(strategy: str) -> Path:
    return LAUNCH / f'{strategy}.launch.py'


def required_args(strategy: str) -> dict:
    return {'repo_id': 'user/rollout_test'} if strategy != 'base' else {}


VARIANTS = [
    pytest.param(dict(use_driver=use_driver, robot_type=robot), id=f'{robot}-use_driver:={use_driver}')
    for robot in ('koch_follower', 'bi_so_follower')
    for use_driver in ('true', 'false')
]


@needs_launch
@pytest.mark.parametrize('strategy', STRATEGIES)
@pytest.mark.parametrize('variant', VARIANTS)
def test_strategy_launch_builds(strategy, variant, declared, monkeypatch):
    args = dict(variant, policy_path='/ckpt', **required_args(strategy))
    bimanual = args['robot_type'].startswith('bi_')
    if bimanual:
        args.update(left_robot_port='/dev/ttyACM0', right_robot_port='/dev/ttyACM1')
        if strategy == 'dagger':
            args['use_teleop'] = 'false'  # a teleop node of your own (bi_* leaders need two ports)
    built = Built(strategy_launch(strategy), **args)
    scripts = {line.split('=')[0].strip() for line in setup_kwargs(monkeypatch)['entry_points']['console_scripts']}
    nodes = built.by_name
    for name, (exe, files, params) in nodes.items():
        assert exe in scripts, f'{name}: no console script {exe}'
        assert [os.path.realpath(f) for f in files] == [str(CONFIG / f'{strategy}.yaml')], (name, files)
        check_values(f'{strategy}.launch.py {name}', params, declared[exe])

    strategy_node = f'/{strategy}_strategy'
    *managed, last = nodes
    assert last == strategy_node
    # The strategy brings up exactly what this launch started, policy first, operator input last.
    assert nodes[strategy_node][2]['managed_nodes'] == managed
    order = ['policy', 'camera', 'recorder', 'keyboard', 'teleop', 'robot_driver']
    assert [order.index(executable_of(n.strip('/'))) for n in managed] == sorted(
        order.index(executable_of(n.strip('/'))) for n in managed
    )
    drivers = {n: p for n, (exe, _, p) in nodes.items() if exe == 'robot_driver'}
    if args['use_driver'] == 'false':
        assert not drivers
    elif bimanual:
        assert {
            n: (p['robot_type'], p['robot_id'], p['robot_port'], p['joint_prefix']) for n, p in drivers.items()
        } == {
            '/robot_driver_left': ('so101_follower', 'follower_left', '/dev/ttyACM0', 'left_'),
            '/robot_driver_right': ('so101_follower', 'follower_right', '/dev/ttyACM1', 'right_'),
        }
    else:
        assert list(drivers) == ['/robot_driver']
    if strategy != 'base':
        recorder = nodes['/recorder'][2]
        assert recorder['frames_topic'] == f'{strategy_node}/frames'
        assert recorder['intervention'] is (strategy == 'dagger')
        assert recorder['auto_rotate'] is (strategy == 'sentry')
        # highlight's buffer length is the params file's unless given; the others have none.
        assert recorder.get('ring_buffer_seconds') == (None if strategy == 'highlight' else 0.0)
        assert nodes[strategy_node][2]['recorder_node'] == '/recorder'
    # The launch ends when the strategy process exits, as a failure when it failed.
    assert len(built.handlers) == 1
    handler = built.handlers[0].event_handler
    assert not handler.matches(exit_event(built.nodes[0], 0))
    assert handler.matches(exit_event(built.nodes[-1], 0))
    assert [type(e.event).__name__ for e in handler.handle(exit_event(built.nodes[-1], 0), built.context)] == [
        'Shutdown'
    ]
    with pytest.raises(RuntimeError, match='exit code 3'):
        handler.handle(exit_event(built.nodes[-1], 3), built.context)


@needs_launch
def test_namespace_cameras_and_input_reach_every_node():
    built = Built(
        strategy_launch('highlight'),
        namespace='arm1',
        camera_name='front,wrist',
        camera_index_or_path='0,/dev/video2',
        camera_width='640,1280',
        camera_height='480,720',
        input_device='pedal',
        pedal_device_path='/dev/input/event7',
        **required_args('highlight'),
    )
    nodes = built.by_name
    assert list(nodes) == [
        '/arm1/policy',
        '/arm1/camera_front',
        '/arm1/camera_wrist',
        '/arm1/recorder',
        '/arm1/pedal',
        '/arm1/robot_driver',
        '/arm1/highlight_strategy',
    ]
    strategy = nodes['/arm1/highlight_strategy'][2]
    assert strategy['managed_nodes'] == list(nodes)[:-1]
    assert strategy['camera_topic_template'] == '/arm1/camera_{name}/image_raw'
    assert strategy['policy_service'] == '/arm1/policy/infer'
    assert strategy['input_topics'] == ['/arm1/pedal/events']
    assert strategy['recorder_node'] == '/arm1/recorder'
    assert strategy['policy_transport'] == 'service' and 'inference_type' not in nodes['/arm1/policy'][2]
    # camera_fps was not given: the params file (or the node's default) decides.
    assert nodes['/arm1/camera_wrist'][2] == {
        'camera_name': 'wrist',
        'index_or_path': '/dev/video2',
        'width': 1280,
        'height': 720,
    }
    recorder = nodes['/arm1/recorder'][2]
    assert recorder['camera_shapes'] == ['480x640', '720x1280']
    assert recorder['frames_topic'] == '/arm1/highlight_strategy/frames'
    assert nodes['/arm1/pedal'][2] == {'device_path': '/dev/input/event7'}


@needs_launch
def test_plugging_into_an_existing_stack():
    built = Built(
        strategy_launch('dagger'),
        use_driver='false',
        use_camera='false',
        use_teleop='false',
        use_recorder='false',
        use_input='false',
        camera_topic='/cam/{name}/color',
        inference_type='rtc',
        teleop_type='so101_leader',
        **required_args('dagger'),
    )
    nodes = built.by_name
    assert list(nodes) == ['/policy', '/dagger_strategy']
    strategy = nodes['/dagger_strategy'][2]
    assert strategy['managed_nodes'] == ['/policy']
    assert strategy['camera_topic_template'] == '/cam/{name}/color'
    # Still wired to the names the stack's own nodes must use.
    assert (strategy['teleop_node'], strategy['recorder_node'], strategy['input_topics']) == (
        '/teleop',
        '/recorder',
        ['/keyboard/events'],
    )
    assert strategy['teleop_type'] == 'so101_leader'
    assert strategy['policy_transport'] == 'topic' and nodes['/policy'][2]['inference_type'] == 'rtc'
    assert nodes['/policy'][2]['camera_topic_template'] == '/cam/{name}/color'


@needs_launch
@pytest.mark.parametrize(
    'strategy, args, param',
    [
        ('sentry', {}, 'repo_id'),
        ('sentry', {'repo_id': 'u/rollout_x', 'fps': '29.97'}, 'fps'),
        ('base', {'robot_type': 'bi_so_follower'}, 'left_robot_port'),
        ('dagger', {'repo_id': 'u/rollout_x', 'robot_type': 'bi_so_follower', 'use_driver': 'false'}, 'teleop_type'),
        ('base', {'camera_name': 'front,wrist', 'camera_index_or_path': '0,1,2'}, 'camera_index_or_path'),
        ('base', {'robot_type': 'kuka'}, 'robot_type'),
        ('base', {'fps': 'fast'}, 'fps'),
        ('base', {'fps': '0'}, 'fps'),
        ('base', {'interpolation_multiplier': '0'}, 'interpolation_multiplier'),
        ('base', {'use_driver': 'maybe'}, 'use_driver'),
    ],
)
def test_bad_arguments_fail_the_launch_naming_the_argument(strategy, args, param):
    with pytest.raises(ConfigError) as err:
        Built(strategy_launch(strategy), **args)
    assert err.value.param == param, err.value


@needs_launch
def test_choices_are_checked_by_launch():
    with pytest.raises(Exception, match='input_device.*mouse.*not valid'):
        Built(strategy_launch('highlight'), input_device='mouse', **required_args('highlight'))


@needs_launch
@pytest.mark.parametrize('path', sorted((LAUNCH / 'include').glob('*.launch.py')), ids=lambda p: p.name)
def test_sub_launch_file_builds_alone(path, declared):
    built = Built(path, repo_id='u/rollout_x')
    assert built.nodes
    for exe, name, files, params in map(built.node, built.nodes):
        assert Path(files[0]).is_file(), files
        check_values(f'{path.name} {name}', params, declared[exe])


@needs_launch
def test_every_argument_is_described_and_shown():
    shown = {}
    for strategy in STRATEGIES:
        from launch.launch_description_sources import get_launch_description_from_python_launch_file

        arguments = get_launch_description_from_python_launch_file(
            str(strategy_launch(strategy))
        ).get_launch_arguments()
        for argument in arguments:
            assert argument.description and not argument.description.startswith('no description'), (
                f'{strategy}: {argument.name}'
            )
            assert not argument._conditionally_included, f'{strategy}: {argument.name} hidden behind a condition'
        shown[strategy] = {a.name for a in arguments}
    assert {
        'robot_port',
        'camera_name',
        'policy_path',
        'use_driver',
        'use_camera',
        'params_file',
        'namespace',
    } <= shown['base']
    assert not shown['base'] & {'repo_id', 'teleop_type', 'input_device'}
    assert {
        'repo_id',
        'dataset_root',
        'push_to_hub',
        'private',
        'resume',
        'upload_every_n_episodes',
        'target_video_file_size_mb',
        'ring_buffer_seconds',
        'ring_buffer_max_memory_mb',
        'use_recorder',
    } <= shown['sentry'] - shown['base']
    assert {'input_device', 'pedal_device_path', 'use_input'} <= shown['highlight'] - shown['sentry']
    assert {'teleop_type', 'teleop_port', 'teleop_id', 'record_autonomous', 'num_episodes', 'use_teleop'} <= shown[
        'dagger'
    ] - shown['highlight']


@needs_launch
def test_params_file_wins_over_arguments_not_given(tmp_path):
    raw = load(CONFIG / 'sentry.yaml')
    raw['/**/recorder']['ros__parameters'].update(repo_id='me/rollout_from_file', fps=15)
    raw['/**/robot_driver']['ros__parameters']['robot_port'] = '/dev/ttyFILE'
    raw['/**/sentry_strategy']['ros__parameters'].update(fps=15.0, camera_names=['top'])
    path = tmp_path / 'mine.yaml'
    path.write_text(yaml.safe_dump(raw))
    # repo_id only in the file: the launch no longer refuses it, and sets none of those keys itself.
    nodes = Built(strategy_launch('sentry'), params_file=str(path)).by_name
    assert list(nodes) == ['/policy', '/camera_top', '/recorder', '/robot_driver', '/sentry_strategy']
    assert not {'repo_id', 'fps'} & set(nodes['/recorder'][2])
    assert 'robot_port' not in nodes['/robot_driver'][2] and 'fps' not in nodes['/sentry_strategy'][2]
    assert nodes['/recorder'][2]['camera_names'] == ['top']
    # An argument given on the command line wins over the file.
    nodes = Built(strategy_launch('sentry'), params_file=str(path), fps='10', robot_port='/dev/ttyARG').by_name
    assert nodes['/sentry_strategy'][2]['fps'] == 10.0 and nodes['/recorder'][2]['fps'] == 10
    assert nodes['/robot_driver'][2]['robot_port'] == '/dev/ttyARG'
    with pytest.raises(ConfigError, match='integer'):
        Built(strategy_launch('sentry'), params_file=str(path), fps='7.5')


@needs_launch
@pytest.mark.parametrize('strategy', STRATEGIES)
def test_cli_and_launch_describe_the_same_run(strategy, monkeypatch):
    """One description: the same choices give the same nodes and wiring from
    the CLI's flags and from the launch arguments."""
    from rollout_ros.cli import build_parser, config_from_args
    from rollout_ros.run_description import describe

    flags = [
        f'--strategy.type={strategy}',
        '--policy.path=/ckpt',
        '--policy_call=service',
        '--robot.cameras={front: {index_or_path: 0}, wrist: {index_or_path: 1}}',
    ]
    if strategy != 'base':
        flags.append('--dataset.repo_id=u/rollout_x')
    if strategy == 'dagger':
        flags.append('--teleop.type=koch_leader')
    run = describe(config_from_args(build_parser().parse_args(flags)))
    cli = {run.full_name(s): s.params for s in run.nodes}
    launched = Built(strategy_launch(strategy), camera_name='front,wrist', **required_args(strategy)).by_name
    assert list(launched) == list(cli)
    wiring = (
        'managed_nodes',
        'camera_names',
        'camera_topic_template',
        'policy_service',
        'policy_transport',
        'recorder_node',
        'teleop_node',
        'input_topics',
        'frames_topic',
        'camera_shapes',
        'intervention',
        'auto_rotate',
        'camera_name',
    )
    for name, params in cli.items():
        assert {k: v for k, v in params.items() if k in wiring} == {
            k: v for k, v in launched[name][2].items() if k in wiring
        }, name


@needs_launch
def test_episodic_launch_teleop_only_when_given_and_episode_arguments_reach_the_strategy():
    bare = Built(
        strategy_launch('episodic'),
        num_episodes='3',
        episode_time_s='20',
        reset_time_s='5',
        reset_to_initial_position='false',
        **required_args('episodic'),
    ).by_name
    assert list(bare) == ['/policy', '/camera_front', '/recorder', '/keyboard', '/robot_driver', '/episodic_strategy']
    strategy = bare['/episodic_strategy'][2]
    assert (
        strategy['num_episodes'],
        strategy['episode_time_s'],
        strategy['reset_time_s'],
        strategy['reset_to_initial_position'],
    ) == (3, 20.0, 5.0, False)
    assert 'teleop_node' not in strategy and strategy['input_topics'] == ['/keyboard/events']
    recorder = bare['/recorder'][2]
    assert recorder['frames_topic'] == '/episodic_strategy/frames' and recorder['intervention'] is False
    led = Built(
        strategy_launch('episodic'),
        teleop_type='so101_leader',
        teleop_port='/dev/ttyACM1',
        input_device='pedal',
        **required_args('episodic'),
    ).by_name
    assert list(led)[:3] == ['/policy', '/camera_front', '/recorder']
    assert list(led)[-3:-1] == ['/teleop', '/robot_driver']
    strategy = led['/episodic_strategy'][2]
    assert (strategy['teleop_node'], strategy['teleop_type']) == ('/teleop', 'so101_leader')
    assert strategy['managed_nodes'] == list(led)[:-1] and strategy['input_topics'] == ['/pedal/events']
    # The params file's keys serve keyboard and pedal alike (right/left arrows, KEY_C/KEY_A).
    assert 'next_keys' not in strategy and 'redo_keys' not in strategy


@needs_launch
def test_respawn_and_log_level_reach_the_right_nodes():
    from launch.utilities.type_utils import perform_typed_substitution

    built = Built(
        strategy_launch('highlight'),
        use_respawn='true',
        log_level='debug',
        input_device='pedal',
        **required_args('highlight'),
    )

    def respawns(node):
        return perform_typed_substitution(built.context, node._ExecuteLocal__respawn, bool)

    # Only what holds no state the run depends on: never the driver, the policy or the recorder.
    assert [node._Node__node_name for node in built.nodes if respawns(node)] == ['camera_front', 'pedal']
    for node in built.nodes:
        assert list(node._Node__ros_arguments) == ['--log-level', 'debug'], node._Node__node_name
