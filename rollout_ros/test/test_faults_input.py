# SPDX-License-Identifier: Apache-2.0
"""Fault suite, bad input: every wrong number or dataset setting is one clear
line naming the flag (CLI) or parameter (launch) with the fix, a non-zero
exit, no traceback, and nothing written to the servos."""

import os
import subprocess
import sys
import time

import pytest

from rollout_ros.cli import build_parser, cli_terms

# The bound for a bad flag (imports before argparse took 12-43 s).
BAD_FLAG_S = 3.0
# Timing bounds are the targets times this, for a loaded 2-core machine.
LOAD_MARGIN = 1.5


def run_cli(*args, timeout=60):
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, '-m', 'rollout_ros.cli', *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, 'PYTHONUNBUFFERED': '1'},
    )
    return proc, time.monotonic() - t0


@pytest.mark.parametrize(
    'flag, value',
    [
        ('--fps', '0'),
        ('--duration', '-1'),
        ('--robot.max_relative_target', '-1'),
        ('--interpolation_multiplier', '0'),
        ('--fps', 'nan'),
        ('--interpolation_multiplier', '21'),
    ],
)
def test_out_of_range_number_is_one_line_naming_the_flag(flag, value):
    proc, elapsed = run_cli(f'{flag}={value}')
    assert proc.returncode != 0
    assert 'Traceback' not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f'rollout: error: {flag}:'), lines
    assert 'Fix:' in lines[0]
    assert elapsed < BAD_FLAG_S, f'{elapsed:.1f} s'


def test_flag_typo_is_reported_before_heavy_imports():
    proc, elapsed = run_cli('--fpss=30')
    assert proc.returncode == 2
    assert proc.stderr.strip() == 'rollout: error: unrecognized arguments: --fpss=30. See rollout --help.'
    assert elapsed < BAD_FLAG_S, f'{elapsed:.1f} s'


def test_cli_module_imports_neither_rclpy_nor_torch():
    code = 'import sys, rollout_ros.cli; print(sorted(m for m in ("rclpy", "torch", "lerobot") if m in sys.modules))'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == '[]', out.stderr


def test_camera_numbers_are_checked_before_start():
    proc, _ = run_cli('--robot.cameras={front: {index_or_path: v.mp4, width: 0}}')
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert proc.stderr.startswith('rollout: error: --robot.cameras (front.width): 0 is out of range')


def test_help_says_zero_turns_the_step_limit_off():
    text = ' '.join(build_parser().format_help().split())
    assert '0 turns the limit off' in text


def test_node_errors_speak_cli_flags():
    assert (
        cli_terms(
            'recorder failed to configure: root: /x exists. Fix: pick a new root, or set resume:=true to add episodes.'
        )
        == 'recorder failed to configure: --dataset.root: /x exists. Fix: pick a new root, or set '
        '--resume=true to add episodes.'
    )
    assert (
        cli_terms('policy failed to configure: policy_path: is empty.')
        == 'policy failed to configure: --policy.path: is empty.'
    )
    # Words that merely contain a parameter name stay as they are.
    assert cli_terms('the frames_topic of the root node') == 'the frames_topic of the root node'


def test_out_of_range_parameter_of_a_node_process_is_one_line():
    """Launch users: a node started with -p fps:=0.0 names the parameter, no traceback."""
    proc = subprocess.run(
        [sys.executable, '-m', 'rollout_ros.strategies.base_strategy', '--ros-args', '-p', 'fps:=0.0'],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    line = [ln for ln in proc.stderr.splitlines() if 'parameter fps' in ln]
    assert line and 'Fix:' in line[0], proc.stderr[-2000:]


# Ctrl-C ----------------------------------------------------------------------


def cli_args(assets, emulator, *extra):
    from rollout_ros.demo import CAMERA, IMAGE_HW, ROBOT_ID, ROBOT_TYPE

    cams = f"{{{CAMERA}: {{index_or_path: '{assets['video']}', width: {IMAGE_HW[1]}, height: {IMAGE_HW[0]}, fps: 30}}}}"
    return [
        f'--policy.path={assets["checkpoint"]}',
        f'--robot.type={ROBOT_TYPE}',
        f'--robot.port={emulator.port}',
        f'--robot.id={ROBOT_ID}',
        f'--robot.calibration_dir={assets["calibration_dir"]}',
        f'--robot.cameras={cams}',
        '--task=test',
        *extra,
    ]


class CliRun:
    """`rollout` in a child process against the emulated arm; stderr collected
    on a thread so a test can wait for a line."""

    def __init__(self, args, preexec_fn=None):
        import threading

        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'rollout_ros.cli', *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=preexec_fn,
            env={**os.environ, 'PYTHONUNBUFFERED': '1'},
        )
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line.rstrip('\n')))

    def wait_line(self, text: str, timeout: float) -> float | None:
        """Monotonic time of the first stderr line containing `text`."""
        from helpers import wait_for

        found = []
        wait_for(
            lambda: (
                found.extend(t for t, ln in list(self.lines) if text in ln)
                or bool(found)
                or self.proc.poll() is not None
            ),
            timeout,
        )
        found = found or [t for t, ln in list(self.lines) if text in ln]
        return found[0] if found else None

    def finish(self, timeout: float = 60.0) -> int:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)
        return self.proc.returncode

    @property
    def stderr(self) -> str:
        return '\n'.join(ln for _, ln in self.lines)


def wait_running(run: CliRun, emulator, timeout: float = 120.0) -> None:
    from helpers import wait_for

    emulator.clear_goal_writes()
    assert wait_for(lambda: len(emulator.goal_writes) > 30 or run.proc.poll() is not None, timeout), run.stderr[-3000:]
    assert run.proc.poll() is None, run.stderr[-3000:]


def test_first_ctrl_c_returns_quickly_when_nothing_is_saved(assets, emulator):
    import signal

    run = CliRun(cli_args(assets, emulator, '--duration=0'))
    wait_running(run, emulator)
    t0 = time.monotonic()
    run.proc.send_signal(signal.SIGINT)
    rc = run.finish()
    elapsed = time.monotonic() - t0
    print(f'first Ctrl-C, base strategy: exit {rc} after {elapsed:.2f} s')
    assert rc == 0, run.stderr[-3000:]
    assert 'press Ctrl-C again to abort' in run.stderr
    assert 'Traceback' not in run.stderr, run.stderr[-3000:]
    assert all(emulator.register(i, 'Torque_Enable') == 0 for i in range(1, 7))
    assert elapsed < 2.0 * LOAD_MARGIN, f'{elapsed:.1f} s'


def sentry_args(root):
    return [
        '--strategy.type=sentry',
        '--dataset.repo_id=test/rollout_faults',
        f'--dataset.root={root}',
        '--dataset.push_to_hub=false',
        '--dataset.vcodec=h264',
        '--play_sounds=false',
        '--strategy.input_device=none',
        '--strategy.target_video_file_size_mb=0.01',
        '--duration=0',
    ]


def saved_episodes(root) -> int:
    import json

    info = root / 'meta' / 'info.json'
    try:
        return json.loads(info.read_text()).get('total_episodes', 0)
    except (OSError, ValueError):
        return 0


def test_second_ctrl_c_aborts_the_save_keeps_episodes_and_turns_torque_off(assets, emulator, tmp_path):
    import signal

    from helpers import wait_for
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = tmp_path / 'ds'
    run = CliRun(cli_args(assets, emulator, *sentry_args(root)))
    wait_running(run, emulator)
    assert wait_for(lambda: saved_episodes(root) >= 1 or run.proc.poll() is not None, 120), run.stderr[-3000:]
    before = saved_episodes(root)
    t0 = time.monotonic()
    run.proc.send_signal(signal.SIGINT)
    assert run.wait_line('saving the episode - press Ctrl-C again to abort', 10), run.stderr[-3000:]
    run.proc.send_signal(signal.SIGINT)
    rc = run.finish()
    elapsed = time.monotonic() - t0
    print(f'double Ctrl-C, sentry: exit {rc} after {elapsed:.2f} s')
    assert rc == 130, run.stderr[-3000:]
    assert 'Traceback' not in run.stderr, run.stderr[-3000:]
    assert 'aborted by a second Ctrl-C' in run.stderr
    # The torque policy ran (disable_torque_on_shutdown defaults to true).
    assert all(emulator.register(i, 'Torque_Enable') == 0 for i in range(1, 7))
    ds = LeRobotDataset('test/rollout_faults', root=root)
    assert ds.num_episodes >= before >= 1
    assert len(ds) == ds.num_frames


def test_first_ctrl_c_saves_the_open_episode(assets, emulator, tmp_path):
    import signal

    from helpers import wait_for
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = tmp_path / 'ds'
    run = CliRun(cli_args(assets, emulator, *sentry_args(root)))
    wait_running(run, emulator)
    assert wait_for(lambda: saved_episodes(root) >= 1 or run.proc.poll() is not None, 120), run.stderr[-3000:]
    before = saved_episodes(root)
    run.proc.send_signal(signal.SIGINT)
    rc = run.finish()
    assert rc == 0 and 'Traceback' not in run.stderr, run.stderr[-3000:]
    assert all(emulator.register(i, 'Torque_Enable') == 0 for i in range(1, 7))
    ds = LeRobotDataset('test/rollout_faults', root=root)
    assert ds.num_episodes == before + 1  # the open one saved too


# Recording faults ------------------------------------------------------------


def test_disk_full_stops_the_run_keeps_saved_episodes_and_exits_non_zero(assets, emulator, tmp_path):
    """No root needed: the child's file-size limit (RLIMIT_FSIZE, lowered from
    here once two episodes are saved) fails the next write with EFBIG, as a
    full disk fails it with ENOSPC."""
    import resource
    import signal

    from helpers import wait_for
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = tmp_path / 'ds'
    args = cli_args(assets, emulator, *sentry_args(root))
    run = CliRun(args, preexec_fn=lambda: signal.signal(signal.SIGXFSZ, signal.SIG_IGN))
    wait_running(run, emulator)
    assert wait_for(lambda: saved_episodes(root) >= 2 or run.proc.poll() is not None, 120), run.stderr[-3000:]
    t_fault = time.monotonic()
    resource.prlimit(run.proc.pid, resource.RLIMIT_FSIZE, (4096, 4096))
    t_error = run.wait_line('recording stopped', 60)
    rc = run.finish(60)
    t_exit = time.monotonic()
    writes = [t for t, *_ in emulator.goal_writes]
    assert t_error is not None, run.stderr[-3000:]
    print(
        f'disk full: detected {t_error - t_fault:.2f} s after the limit, last servo goal '
        f'{max(writes) - t_error:+.2f} s after detection, exit {rc} {t_exit - t_error:.2f} s after detection'
    )
    assert rc == 2, run.stderr[-3000:]
    assert 'Traceback' not in run.stderr, run.stderr[-3000:]
    error = [ln for ln in run.stderr.splitlines() if ln.startswith('rollout: error:')]
    assert len(error) == 1 and 'recorder' in error[0] and 'File too large' in error[0], error
    assert t_exit - t_error < 10 * LOAD_MARGIN  # never a run going on for its duration
    assert max(writes) - t_error < 2 * LOAD_MARGIN  # the loop stopped commanding
    assert all(emulator.register(i, 'Torque_Enable') == 0 for i in range(1, 7))
    ds = LeRobotDataset('test/rollout_faults', root=root)
    assert ds.num_episodes >= 2 and len(ds) == ds.num_frames


def test_failed_hub_push_is_an_error_bounded_in_time_and_pushed_later(assets, emulator, tmp_path):
    import json

    from test_dataset_hub import FakeHub

    hub = FakeHub()
    hub.fail_commits = 10**6  # every commit refused, retries included
    root = tmp_path / 'ds'
    summary_json = tmp_path / 'summary.json'
    env = {'HF_ENDPOINT': hub.endpoint, 'HF_HUB_OFFLINE': '0', 'HF_TOKEN': 'hf_FAKEtokenForTheStandIn'}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        args = [a for a in sentry_args(root) if not a.startswith(('--dataset.push_to_hub', '--duration'))]
        run = CliRun(
            cli_args(
                assets,
                emulator,
                *args,
                '--dataset.push_to_hub=true',
                '--duration=5',
                '--strategy.upload_every_n_episodes=1',
                '--push_timeout_s=4',
                f'--summary_json={summary_json}',
            )
        )
        t_end = run.wait_line('run summary', 180)
        rc = run.finish(120)
        t_exit = time.monotonic()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        assert t_end is not None, run.stderr[-3000:]
        print(f'hub push failing: exit {rc} {t_exit - t_end:.2f} s after the run ended (push_timeout_s=4)')
        assert rc == 1, run.stderr[-3000:]
        assert 'Traceback' not in run.stderr
        error = [ln for ln in run.stderr.splitlines() if ln.startswith('rollout: error:')]
        assert len(error) == 1 and 'rollout_dataset push' in error[0], error
        assert '"pushed": true' not in run.stderr
        upload = json.loads(summary_json.read_text())['upload']
        assert upload['pushed'] is False and upload['state'] in ('failed', 'timed_out'), upload
        assert t_exit - t_end < 4 + 15 * LOAD_MARGIN  # not the 112 s of retries
        # The documented command sends what stayed local, once the Hub takes it.
        hub.fail_commits = 0
        repo = error[0].split('--repo_id ')[1].split('`')[0]
        from rollout_ros.dataset.cli import main as dataset_cli

        os.environ.update(env)
        import huggingface_hub.constants as hc

        saved = (hc.HF_HUB_OFFLINE, hc.ENDPOINT)
        hc.HF_HUB_OFFLINE, hc.ENDPOINT = False, hub.endpoint
        try:
            assert dataset_cli(['push', str(root), '--repo_id', repo, '--timeout_s', '60']) == 0
        finally:
            hc.HF_HUB_OFFLINE, hc.ENDPOINT = saved
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        files = set(hub.files(repo))
        assert 'meta/info.json' in files and any(f.startswith('data/') for f in files), files
    finally:
        hub.close()


# Checks before the first servo write ----------------------------------------


def servo_registers(emulator) -> dict:
    from rollout_ros.hardware.follower_arm import CALIBRATION_REGISTERS

    return {(i, r): emulator.register(i, r) for i in range(1, 7) for r in (*CALIBRATION_REGISTERS, 'Torque_Enable')}


def assert_no_servo_write(emulator, before: dict):
    assert emulator.goal_writes == []
    assert servo_registers(emulator) == before  # not even the calibration was written


def test_camera_size_the_policy_does_not_take_fails_before_any_servo_write(ros, assets, emulator, rollout_config):
    from rollout_ros.cli import CameraConfig, run
    from rollout_ros.demo import CAMERA, IMAGE_HW

    before = servo_registers(emulator)
    small = CameraConfig(CAMERA, str(assets['video']), IMAGE_HW[1] // 2, IMAGE_HW[0] // 2, 30.0)
    with pytest.raises(RuntimeError, match=f'camera_{CAMERA}.*the policy takes {IMAGE_HW[1]}x{IMAGE_HW[0]}'):
        run(rollout_config(cameras=[small]))
    assert_no_servo_write(emulator, before)


def test_calibration_of_other_motor_ids_is_refused_before_any_servo_write(
    ros, assets, emulator, rollout_config, tmp_path
):
    import dataclasses
    import shutil

    from rollout_ros.cli import run
    from rollout_ros.core.calibration import calibration_path, load_calibration, save_calibration
    from rollout_ros.demo import ROBOT_ID, ROBOT_TYPE
    from rollout_ros.hardware.robots import get_robot_spec

    spec = get_robot_spec(ROBOT_TYPE)
    shutil.copytree(assets['calibration_dir'], tmp_path / 'calib')
    path = calibration_path(tmp_path / 'calib', spec.calibration_dir_name, ROBOT_ID)
    calib = load_calibration(path, spec.motor_names, spec.type, 'port')
    first = spec.motor_names[0]
    calib[first] = dataclasses.replace(calib[first], id=calib[first].id + 10)
    save_calibration(path, calib)
    before = servo_registers(emulator)
    with pytest.raises(RuntimeError, match=f'robot_id.*other motor ids.*{first}'):
        run(rollout_config(calibration_dir=str(tmp_path / 'calib')))
    assert_no_servo_write(emulator, before)


@pytest.mark.parametrize('case', ['root_is_a_file', 'resume_without_dataset', 'dataset_exists'])
def test_dataset_root_problems_are_one_line_before_anything_starts(tmp_path, case):
    root = tmp_path / 'ds'
    extra = []
    if case == 'root_is_a_file':
        root.write_text('not a folder')
    elif case == 'resume_without_dataset':
        extra = ['--resume=true']
    else:
        (root / 'meta').mkdir(parents=True)
        (root / 'meta' / 'info.json').write_text('{}')
    proc, elapsed = run_cli('--strategy.type=sentry', '--dataset.repo_id=u/rollout_x', f'--dataset.root={root}', *extra)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('rollout: error: --dataset.root:'), lines
    assert elapsed < BAD_FLAG_S, f'{elapsed:.1f} s'
