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


def run_cli(*args, timeout=60):
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, '-m', 'rollout_ros.cli', *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, 'PYTHONUNBUFFERED': '1'})
    return proc, time.monotonic() - t0


@pytest.mark.parametrize('flag, value', [
    ('--fps', '0'), ('--duration', '-1'), ('--robot.max_relative_target', '-1'),
    ('--interpolation_multiplier', '0'), ('--fps', 'nan'), ('--interpolation_multiplier', '21'),
])
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
    assert cli_terms('recorder failed to configure: root: /x exists. Fix: pick a new root, or set '
                     'resume:=true to add episodes.') == \
        'recorder failed to configure: --dataset.root: /x exists. Fix: pick a new root, or set ' \
        '--resume=true to add episodes.'
    assert cli_terms('policy failed to configure: policy_path: is empty.') == \
        'policy failed to configure: --policy.path: is empty.'
    # Words that merely contain a parameter name stay as they are.
    assert cli_terms('the frames_topic of the root node') == 'the frames_topic of the root node'


def test_out_of_range_parameter_of_a_node_process_is_one_line():
    """Launch users: a node started with -p fps:=0.0 names the parameter, no traceback."""
    proc = subprocess.run([sys.executable, '-m', 'rollout_ros.strategies.base_strategy', '--ros-args',
                           '-p', 'fps:=0.0'], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    line = [ln for ln in proc.stderr.splitlines() if 'parameter fps' in ln]
    assert line and 'Fix:' in line[0], proc.stderr[-2000:]
