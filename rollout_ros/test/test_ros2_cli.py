# SPDX-License-Identifier: Apache-2.0
"""End to end with the upstream `ros2` command-line tools, as a ROS user runs
rollout_ros: `ros2 launch` of the strategy launch files against an emulated
Koch arm, a tiny checkpoint and a video camera, driven from outside with
`ros2 param`, `ros2 lifecycle` and `ros2 topic`, stopped with Ctrl-C.

The tools come from ../shared/ros2 (make setup installs them with the package
in the venv's ament index); without them these tests skip, saying so."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rollout_ros.demo import CAMERA, IMAGE_HW, LEADER_ID, ROBOT_ID, emulated_leader

PREFIX = Path(sys.prefix)
ROS2 = PREFIX / 'bin' / 'ros2'
CONFIG = Path(__file__).resolve().parents[1] / 'config'
# Startup imports torch and lerobot in several processes at once: minutes on a loaded 2-core machine.
UP_TIMEOUT_S = 240.0


def _installed() -> str:
    if not ROS2.is_file():
        return f'no {ROS2}: the ros2 tools are not installed (make setup installs them from ../shared/ros2)'
    if not (PREFIX / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'rollout_ros').exists():
        return 'rollout_ros is not in the ament index of the venv (run make setup)'
    import importlib.util

    if importlib.util.find_spec('launch_ros') is None or importlib.util.find_spec('composition_interfaces') is None:
        return 'launch_ros or composition_interfaces missing (make setup installs them from ../shared/ros2)'
    return ''


pytestmark = pytest.mark.skipif(bool(_installed()), reason=_installed() or 'installed')


@pytest.fixture(scope='module')
def env():
    e = dict(os.environ, HF_HUB_OFFLINE='1', PYTHONUNBUFFERED='1')
    e['AMENT_PREFIX_PATH'] = os.pathsep.join([str(PREFIX), *filter(None, [os.environ.get('AMENT_PREFIX_PATH')])])
    e['PATH'] = os.pathsep.join([str(PREFIX / 'bin'), e.get('PATH', '')])
    return e


def ros2(env, *args, timeout: float = 60.0) -> subprocess.CompletedProcess:
    if '--no-daemon' in args:
        # Without the daemon each call discovers the graph itself: give it time on a loaded machine.
        args = (*args, '--spin-time', '3')
    return subprocess.run([str(ROS2), *args], env=env, capture_output=True, text=True, timeout=timeout)


def state_of(env, node: str) -> str:
    """`ros2 lifecycle get` of a node, retried while discovery has not found it."""
    for _ in range(5):
        out = ros2(env, 'lifecycle', 'get', node, '--no-daemon')
        if out.returncode == 0:
            return out.stdout.split()[0]
    raise AssertionError(f'ros2 lifecycle get {node}: {out.stderr}')


class Launch:
    """`ros2 launch rollout_ros <file> <args>` in a process group of its own, as
    in a terminal: Ctrl-C reaches launch and every node at once."""

    def __init__(self, env, tmp_path: Path, launch_file: str, *args: str):
        self.log_path = tmp_path / f'{launch_file}.log'
        self.proc = subprocess.Popen(
            [str(ROS2), 'launch', 'rollout_ros', launch_file, *args],
            env=env,
            stdout=open(self.log_path, 'w'),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.nodes: list = []

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for_log(self, text: str, timeout: float = UP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log:
            assert self.proc.poll() is None, (
                f'launch ended ({self.proc.returncode}) before {text!r}:\n{self.log[-4000:]}'
            )
            assert time.monotonic() < deadline, f'no {text!r} within {timeout} s:\n{self.log[-4000:]}'
            time.sleep(0.5)

    def remember_nodes(self) -> None:
        import psutil

        self.nodes = psutil.Process(self.proc.pid).children(recursive=True)
        assert self.nodes

    def ctrl_c(self) -> float:
        """SIGINT to the whole group, as a terminal's Ctrl-C; seconds until launch exited."""
        start = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(timeout=120)
        return time.monotonic() - start

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def left_behind(self) -> list:
        return [p for p in self.nodes if p.is_running() and p.status() != 'zombie']

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        for p in self.left_behind():
            p.kill()


@pytest.fixture
def launches():
    started = []
    yield started
    for launch in started:
        launch.kill()


def params_file(tmp_path: Path, strategy: str, assets, port: str, **strategy_params) -> Path:
    """The strategy's shipped params file with this machine's arm, camera and checkpoint in it."""
    raw = yaml.safe_load((CONFIG / f'{strategy}.yaml').read_text())

    def section(node):
        return raw.setdefault(f'/**/{node}', {'ros__parameters': {}})['ros__parameters']

    robot = dict(robot_id=ROBOT_ID, calibration_dir=str(assets['calibration_dir']))
    section('robot_driver').update(robot_port=port, **robot)
    section(f'camera_{CAMERA}').update(index_or_path=str(assets['video']), width=IMAGE_HW[1], height=IMAGE_HW[0])
    section('policy').update(policy_path=str(assets['checkpoint']))
    section(f'{strategy}_strategy').update(task='test', status_log_period_s=1.0, **robot, **strategy_params)
    if strategy != 'base':
        section('recorder').update(
            repo_id='test/rollout_launch',
            root=str(tmp_path / 'dataset'),
            stamp_repo_id=False,
            push_to_hub=False,
            camera_shapes=[f'{IMAGE_HW[0]}x{IMAGE_HW[1]}'],
            vcodec='h264',
        )
    if strategy == 'dagger':
        # emulated_leader(tmp_path) calibrates the leader there.
        section('teleop').update(teleop_id=LEADER_ID, teleop_calibration_dir=str(tmp_path / 'calibration'), **robot)
    path = tmp_path / f'{strategy}.yaml'
    path.write_text(yaml.safe_dump(raw))
    return path


def assert_clean(log: str, stop: str = '') -> None:
    """A normal run and stop: no escalation, no process dying, no traceback;
    no error line at all in `stop` (the output from the stop on)."""
    for bad in ('SIGTERM', 'Traceback', 'process has died', 'exit code'):
        assert bad not in log, f'{bad!r} in the launch output:\n' + '\n'.join(
            line for line in log.splitlines() if bad in line
        )
    assert '[ERROR]' not in stop, f'an error line while stopping:\n{stop}'


def test_ros2_finds_the_installed_package(env, tmp_path):
    out = ros2(env, 'pkg', 'prefix', 'rollout_ros')
    assert out.returncode == 0 and Path(out.stdout.strip()).resolve() == PREFIX.resolve(), out
    executables = ros2(env, 'pkg', 'executables', 'rollout_ros').stdout.split()
    assert {
        'teleop',
        'robot_driver',
        'camera',
        'policy',
        'recorder',
        'base_strategy',
        'sentry_strategy',
        'highlight_strategy',
        'dagger_strategy',
    } <= set(executables)
    shown = ros2(env, 'launch', 'rollout_ros', 'base.launch.py', '--show-args')
    assert shown.returncode == 0, shown.stderr
    for name in ('autostart', 'log_level', 'use_respawn', 'params_file', 'namespace'):
        assert f"'{name}':" in shown.stdout, shown.stdout
    # `source .venv/bin/activate` alone gives the tools their AMENT_PREFIX_PATH.
    bare = {k: v for k, v in env.items() if k != 'AMENT_PREFIX_PATH'}
    activated = subprocess.run(
        ['bash', '-c', f'source {PREFIX}/bin/activate && ros2 pkg prefix rollout_ros'],
        env=bare,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert activated.returncode == 0 and Path(activated.stdout.strip()).resolve() == PREFIX.resolve(), activated
    # ros2 run: the node comes up unconfigured and leaves on Ctrl-C with exit 0.
    name = f'teleop_{os.getpid()}'
    proc = subprocess.Popen(
        [str(ROS2), 'run', 'rollout_ros', 'teleop', '--ros-args', '-r', f'__node:={name}'],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while ros2(env, 'lifecycle', 'get', f'/{name}', '--no-daemon').stdout.split()[:1] != ['unconfigured']:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else ''
            time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 0, proc.stdout.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_sentry_launch_from_a_params_file_driven_by_ros2_tools_and_stopped_with_ctrl_c(
    env, assets, emulator, tmp_path, launches
):
    """The params file alone sets the run (repo_id included); ros2 topic,
    lifecycle and param reach the live nodes; Ctrl-C saves the open episode
    once, turns the torque off and ends every process inside launch's SIGINT
    window with exit 0."""
    path = params_file(tmp_path, 'sentry', assets, emulator.port)
    launch = Launch(env, tmp_path, 'sentry.launch.py', f'params_file:={path}')
    launches.append(launch)
    launch.wait_for_log('ticks ')  # the status line, logged under launch too
    launch.remember_nodes()

    status = ros2(env, 'topic', 'echo', '--once', '--no-daemon', '/sentry_strategy/status', timeout=90)
    assert status.returncode == 0 and 'strategy: sentry' in status.stdout and 'recording: true' in status.stdout, status
    assert state_of(env, '/robot_driver') == 'active'
    live = ros2(env, 'param', 'set', '--no-daemon', '/sentry_strategy', 'task', 'wipe the table')
    assert 'Set parameter successful' in live.stdout, live
    structural = ros2(env, 'param', 'set', '--no-daemon', '/robot_driver', 'robot_port', '/dev/null')
    refusal = structural.stdout + structural.stderr
    assert 'Setting parameter failed' in refusal and 'robot_port' in refusal, structural
    assert state_of(env, '/robot_driver') == 'active'  # still running

    before = len(launch.log)
    took = launch.ctrl_c()
    log = launch.log
    assert launch.proc.returncode == 0, log[-6000:]
    assert_clean(log, log[before:])
    assert not launch.left_behind()
    print(f'ctrl-c: launch exited after {took:.1f} s')
    info = json.loads((tmp_path / 'dataset' / 'meta' / 'info.json').read_text())
    assert info['total_episodes'] == 1 and info['total_frames'] > 0, info
    assert log.count('episode 0 saved') == 1, log[-6000:]
    assert all(emulator.register(i, 'Torque_Enable') == 0 for i in range(1, 7))


def test_autostart_false_waits_for_ros2_lifecycle_set(env, assets, emulator, tmp_path, launches):
    """autostart:=false: every node waits unconfigured; the operator brings
    the run up through the strategy, which configures and activates the
    others in order; the run then ends by itself at its duration."""
    path = params_file(tmp_path, 'base', assets, emulator.port)
    launch = Launch(
        env,
        tmp_path,
        'base.launch.py',
        f'params_file:={path}',
        'autostart:=false',
        'duration:=4.0',
        'log_level:=info',
        'use_respawn:=true',
    )
    launches.append(launch)
    launch.wait_for_log('waiting unconfigured for a lifecycle manager')
    launch.remember_nodes()
    deadline = time.monotonic() + UP_TIMEOUT_S
    while ros2(env, 'lifecycle', 'get', '/policy', '--no-daemon').stdout.split()[:1] != ['unconfigured']:
        assert time.monotonic() < deadline
        time.sleep(1.0)
    assert state_of(env, '/robot_driver') == 'unconfigured'
    assert emulator.goal_writes == []
    configure = ros2(env, 'lifecycle', 'set', '--no-daemon', '/base_strategy', 'configure', timeout=300)
    assert 'Transitioning successful' in configure.stdout, (configure, launch.log[-4000:])
    assert state_of(env, '/robot_driver') == 'inactive'
    activate = ros2(env, 'lifecycle', 'set', '--no-daemon', '/base_strategy', 'activate', timeout=120)
    assert 'Transitioning successful' in activate.stdout, (activate, launch.log[-4000:])
    assert launch.wait(timeout=120) == 0, launch.log[-6000:]
    assert_clean(launch.log)
    assert emulator.goal_writes
    assert not launch.left_behind()


@pytest.mark.parametrize('strategy', ['highlight', 'dagger'])
def test_recording_launches_run_to_their_end(strategy, env, assets, emulator, tmp_path, launches):
    with emulated_leader(tmp_path) if strategy == 'dagger' else contextlib.nullcontext() as leader_port:
        path = params_file(tmp_path, strategy, assets, emulator.port)
        args = [f'params_file:={path}', 'duration:=3.0', 'input_device:=none']
        if strategy == 'dagger':
            args += [f'teleop_port:={leader_port}', 'teleop_type:=koch_leader']
        launch = Launch(env, tmp_path, f'{strategy}.launch.py', *args)
        launches.append(launch)
        launch.wait_for_log('ticks ')
        launch.remember_nodes()
        assert launch.wait(timeout=180) == 0, launch.log[-6000:]
    assert_clean(launch.log)
    assert not launch.left_behind()
    assert (tmp_path / 'dataset' / 'meta' / 'info.json').is_file()


def test_failed_configure_ends_the_launch_with_no_process_left(env, assets, tmp_path, launches):
    """The driver cannot open its port: the strategy's configure fails, the
    launch exits non-zero, and no node stays behind holding anything."""
    path = params_file(tmp_path, 'base', assets, str(tmp_path / 'no_such_port'))
    launch = Launch(env, tmp_path, 'base.launch.py', f'params_file:={path}')
    launches.append(launch)
    deadline = time.monotonic() + 60
    while not launch.nodes and time.monotonic() < deadline:
        try:
            launch.remember_nodes()
        except AssertionError:
            time.sleep(0.2)
    assert launch.wait(timeout=UP_TIMEOUT_S) != 0
    assert 'robot_driver' in launch.log and 'configure failed' in launch.log, launch.log[-4000:]
    assert not launch.left_behind(), [p.cmdline() for p in launch.left_behind()]
    assert 'SIGTERM' not in launch.log, launch.log[-4000:]
