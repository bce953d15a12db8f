# SPDX-License-Identifier: Apache-2.0
"""rollout_ros and LeRobot's own lerobot-rollout on the same emulated Koch arm, back to back.

Each run gets a fresh emulated Koch follower (a process of its own serving the
pty at SCHED_FIFO where allowed, as servo firmware answers) that logs the
arrival time of every Goal_Position write: the figures are what the robot
felt, from those times, after the first second of the control loop (LeRobot:
its first goal write; ours: the driver's first loop write, from the run
summary). LeRobot runs unmodified through bench/lerobot_paced_rollout.py (its
camera reads the video file paced and looped; the calibration prompt gets a
newline; no return to the initial pose at the end, so teardown moves stay out
of the figures). Both use their default torch threads and the same checkpoint,
video and calibration.

Configurations: the tiny demo ACT (96x128) in sync mode; ACT at lerobot's
default size (ResNet-18, chunk 100, 480x640, random weights) in sync mode; the
same with background chunking (ours: --inference.type=rtc; LeRobot's RTC where
it accepts the policy, which it refuses for ACT: recorded as not completed,
with its message).

One JSON line per configuration: {"vs_lerobot": name, "mode", "policy",
"ours_hz", "ours_p50_ms", "ours_p99_ms", "ours_max_gap_ms", "ours_gaps",
"lerobot_*" likewise, "lerobot_completed", CPU per process, ratios ours/theirs}.
Period error of an interval = |interval - 1/fps|; a gap = an interval > 2 periods;
percentiles pool the intervals of every repetition, gaps are summed over them.

    .venv/bin/python bench/bench_vs_lerobot.py                 # 3 x 15 s per system and configuration
    BENCH_SHORT=1 .venv/bin/python bench/bench_vs_lerobot.py   # 1 x 6 s, for development
    BENCH_VS_SECONDS=20 BENCH_VS_REPS=3 BENCH_VS_CONFIGS=tiny_act_sync,act_default_sync \
    BENCH_VS_SYSTEMS=ours BENCH_VS_TORCH_THREADS=1 BENCH_VS_WORKDIR=/tmp/vs (reused: checkpoints, videos)
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'rollout_ros'))
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('ROS_DOMAIN_ID', '92')
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')

SHORT = os.environ.get('BENCH_SHORT', '') not in ('', '0')
SECONDS = float(os.environ.get('BENCH_VS_SECONDS', '6' if SHORT else '15'))
REPS = int(os.environ.get('BENCH_VS_REPS', '1' if SHORT else '3'))
FPS = 30.0
SKIP_S = 1.0  # figures start one second into the loop
EMULATOR_PRIORITY = 10
CONFIGS = {
    # name: (policy, mode, image (h, w))
    'tiny_act_sync': ('tiny_act', 'sync', (96, 128)),
    'act_default_sync': ('act_default', 'sync', (480, 640)),
    'act_default_chunked': ('act_default', 'chunked', (480, 640)),
}
ROBOT_ID = 'bench'
# Unset: each system with its default torch threads (ours: every core but one;
# LeRobot: torch's, every core). N: both with N
# (LeRobot through OMP_NUM_THREADS, which torch takes at start; ours --torch_threads).
TORCH_THREADS = os.environ.get('BENCH_VS_TORCH_THREADS', '')
# For development: BENCH_VS_SYSTEMS=ours skips LeRobot's runs (its figures are then null).
SYSTEMS = os.environ.get('BENCH_VS_SYSTEMS', 'ours,lerobot').split(',')
ENV = {
    **os.environ,
    'PYTHONPATH': os.pathsep.join(filter(None, [str(ROOT / 'rollout_ros'), os.environ.get('PYTHONPATH')])),
}
RUN_TIMEOUT_S = 240.0


def prepare(work: Path) -> dict:
    from rollout_ros.core.calibration import calibration_path
    from rollout_ros.demo import DEMO_RANGES
    from rollout_ros.demo import prepare as prepare_demo
    from rollout_ros.hardware.emulator.pattern_video import write_pattern_video
    from rollout_ros.hardware.robots import get_robot_spec
    from rollout_ros.policy.tiny_checkpoint import make_default_act_checkpoint, make_tiny_act_checkpoint

    spec = get_robot_spec('koch_follower')
    demo = prepare_demo(work / 'demo')  # the demo's calibration under the id 'demo'
    calib_file = calibration_path(demo['calibration_dir'], spec.calibration_dir_name, 'demo')
    ours = calibration_path(work / 'calibration', spec.calibration_dir_name, ROBOT_ID)
    ours.parent.mkdir(parents=True, exist_ok=True)
    ours.write_text(calib_file.read_text())
    policies = {}
    for name, (policy, _, hw) in CONFIGS.items():
        ckpt = work / f'{policy}_{hw[0]}x{hw[1]}'
        if not (ckpt / 'config.json').is_file():
            if policy == 'tiny_act':
                make_tiny_act_checkpoint(ckpt, spec.feature_names, {'front': (3, *hw)})
            else:
                make_default_act_checkpoint(ckpt, spec.feature_names, {'front': (3, *hw)})
        # A video at exactly the policy's size: LeRobot's camera does not resize.
        video = work / f'video_{hw[0]}x{hw[1]}.avi'
        if not video.is_file():
            write_pattern_video(video, width=hw[1], height=hw[0], fps=int(FPS))
        policies[name] = (ckpt, video)
    initial = [int((lo + hi) / 2) for lo, hi in (DEMO_RANGES[m.name] for m in spec.motors)]
    return {
        'calibration_dir': work / 'calibration',
        'lerobot_calibration_dir': ours.parent,
        'policies': policies,
        'initial': initial,
    }


class Emulator:
    """A Koch follower emulator process whose goal writes are read back at the end."""

    def __init__(self, work: Path, initial: list[int]):
        self.goal_log = work / f'goals_{time.monotonic_ns()}.txt'
        self.proc = subprocess.Popen(
            [
                sys.executable,
                '-m',
                'rollout_ros.hardware.emulator.servo_bus_emulator',
                '--preset',
                'koch',
                '--initial',
                ','.join(map(str, initial)),
                '--goal-log',
                str(self.goal_log),
                '--realtime',
                str(EMULATOR_PRIORITY),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != 'PORT':
            self.proc.kill()
            raise RuntimeError(f'emulator did not start: {self.proc.stderr.read()}')
        self.port = line[1]

    def goal_times(self) -> np.ndarray:
        """Arrival times of the sync writes (servo 1 is in every one)."""
        from rollout_ros.hardware.emulator.pty_bus import read_goal_log

        self.proc.terminate()
        self.proc.wait(timeout=10)
        return np.array([t for t, servo, _ in read_goal_log(str(self.goal_log)) if servo == 1])


def run_process(cmd: list[str], log: Path, stdin_text: str = '', env: dict = ENV) -> tuple[int, float, float]:
    """Run to the end; (exit code, wall s, CPU s of the process)."""
    with open(log, 'w') as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
        proc.stdin.write(stdin_text)
        proc.stdin.close()
        deadline = t0 + RUN_TIMEOUT_S
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return proc.returncode, time.monotonic() - t0, usage.ru_utime + usage.ru_stime
            if time.monotonic() > deadline:
                proc.kill()
            time.sleep(0.05)


def lerobot_run(assets: dict, config: str, work: Path, tag: str) -> dict:
    ckpt, video = assets['policies'][config]
    mode = CONFIGS[config][1]
    emulator = Emulator(work, assets['initial'])
    _, _, (h, w) = CONFIGS[config]
    cameras = json.dumps(
        {'front': {'type': 'opencv', 'index_or_path': str(video), 'width': w, 'height': h, 'fps': int(FPS)}}
    )
    cmd = [
        sys.executable,
        str(ROOT / 'bench' / 'lerobot_paced_rollout.py'),
        '--robot.type=koch_follower',
        f'--robot.port={emulator.port}',
        f'--robot.id={ROBOT_ID}',
        f'--robot.calibration_dir={assets["lerobot_calibration_dir"]}',
        f'--robot.cameras={cameras}',
        f'--policy.path={ckpt}',
        '--policy.device=cpu',
        f'--fps={FPS:g}',
        f'--duration={SECONDS:g}',
        f'--inference.type={"rtc" if mode == "chunked" else "sync"}',
        '--return_to_initial_position=false',
        '--play_sounds=false',
    ]
    log = work / f'lerobot_{tag}.log'
    env = {**ENV, 'OMP_NUM_THREADS': TORCH_THREADS} if TORCH_THREADS else ENV
    rc, wall, cpu = run_process(cmd, log, stdin_text='\n', env=env)  # ENTER: use the calibration file
    times = emulator.goal_times()
    text = log.read_text(errors='replace')
    refused = next((line.strip() for line in text.splitlines() if 'not supported by policy type' in line), '')
    window = times[times >= times[0] + SKIP_S] if times.size else times
    # A run that ended before a second of commands after the first (a first
    # inference as long as the run) measured nothing.
    completed = rc == 0 and 'Rollout finished' in text and window.size > FPS and not refused
    return {
        'rc': rc,
        'completed': completed,
        'refused': refused[-300:],
        'times': window,
        'cpu_s': cpu,
        'wall_s': wall,
        'log': str(log),
    }


def ours_run(assets: dict, config: str, work: Path, tag: str) -> dict:
    ckpt, video = assets['policies'][config]
    policy, mode, (h, w) = CONFIGS[config]
    emulator = Emulator(work, assets['initial'])
    cameras = json.dumps(
        {'front': {'type': 'opencv', 'index_or_path': str(video), 'width': w, 'height': h, 'fps': FPS}}
    )
    summary_path = work / f'ours_{tag}.json'
    cmd = [
        sys.executable,
        '-m',
        'rollout_ros.cli',
        '--robot.type=koch_follower',
        f'--robot.port={emulator.port}',
        f'--robot.id={ROBOT_ID}',
        f'--robot.calibration_dir={assets["calibration_dir"]}',
        f'--robot.cameras={cameras}',
        f'--policy.path={ckpt}',
        f'--fps={FPS:g}',
        f'--duration={SECONDS:g}',
        f'--inference.type={"rtc" if mode == "chunked" else "sync"}',
        f'--summary_json={summary_path}',
        *([f'--torch_threads={TORCH_THREADS}'] if TORCH_THREADS else []),
    ]
    log = work / f'ours_{tag}.log'
    rc, wall, cpu = run_process(cmd, log)
    times = emulator.goal_times()
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    completed = rc == 0 and 'bus_first_write_s' in summary and summary.get('bus_commands', 0) > 2 * FPS
    if completed:
        first, last = summary['bus_first_write_s'], summary['bus_last_write_s']
        # The driver reads its clock just before a write, the emulator at arrival.
        times = times[(times >= first) & (times <= last + 0.015)]
        # The watchdog's holds are goal writes but no commands: the first write
        # at or after each hold time is that hold.
        for hold in summary.get('bus_hold_times_s', []):
            later = np.nonzero(times >= hold)[0]
            if later.size:
                times = np.delete(times, later[0])
        # The summary covers the whole loop: its longest gap is checked against the same window here.
        full_gap_ms = float(np.diff(times).max()) * 1e3 if times.size > 1 else 0.0
        times = times[times >= first + SKIP_S]
    else:
        full_gap_ms = None
        times = np.array([])
    return {
        'rc': rc,
        'completed': completed,
        'times': times,
        'cpu_s': cpu,
        'wall_s': wall,
        'full_gap_ms': full_gap_ms,
        'summary': summary,
        'log': str(log),
    }


def figures(runs: list[dict]) -> dict:
    """Pooled over repetitions: intervals of each run's window."""
    intervals = np.concatenate(
        [np.diff(r['times']) for r in runs if r['completed'] and r['times'].size > 1] or [np.array([])]
    )
    if intervals.size == 0:
        return {'hz': None, 'p50_ms': None, 'p99_ms': None, 'max_ms': None, 'max_gap_ms': None, 'gaps': None}
    period = 1.0 / FPS
    err = np.abs(intervals - period) * 1e3
    return {
        'hz': round(intervals.size / float(intervals.sum()), 3),
        'p50_ms': round(float(np.percentile(err, 50)), 3),
        'p99_ms': round(float(np.percentile(err, 99)), 3),
        'max_ms': round(float(err.max()), 3),
        'max_gap_ms': round(float(intervals.max()) * 1e3, 3),
        'gaps': int(np.count_nonzero(intervals > 2 * period)),
    }


def cpu_percent(runs: list[dict]) -> float | None:
    done = [r for r in runs if r['completed']]
    if not done:
        return None
    # CPU over the whole process life (startup and teardown included), in % of one core.
    return round(100.0 * sum(r['cpu_s'] for r in done) / sum(r['wall_s'] for r in done), 1)


def ratio(a, b):
    return round(a / b, 3) if a is not None and b not in (None, 0) else None


def main() -> None:
    names = [n for n in os.environ.get('BENCH_VS_CONFIGS', ','.join(CONFIGS)).split(',') if n]
    unknown = set(names) - set(CONFIGS)
    if unknown:
        sys.exit(f'BENCH_VS_CONFIGS: unknown {sorted(unknown)}; known: {list(CONFIGS)}')
    keep = os.environ.get('BENCH_VS_WORKDIR')
    work = Path(keep or tempfile.mkdtemp(prefix='bench_vs_lerobot_'))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run_all(names, work)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)  # ~200 MB of checkpoints


def run_all(names: list[str], work: Path) -> None:
    assets = prepare(work)
    load_before = os.getloadavg()
    print(f'[vs_lerobot] {REPS} x {SECONDS:g} s per system and configuration, work dir {work}', flush=True)
    for name in names:
        policy, mode, (h, w) = CONFIGS[name]
        ours, theirs = [], []
        for rep in range(REPS):
            if 'lerobot' not in SYSTEMS:
                theirs.append({'rc': None, 'completed': False, 'refused': '', 'times': np.array([]), 'log': ''})
            elif theirs and theirs[0]['refused']:
                theirs.append(theirs[0])  # a refusal does not change with repetition
            else:
                theirs.append(lerobot_run(assets, name, work, f'{name}_{rep}'))
                if theirs[-1]['refused']:
                    print(f'[vs_lerobot] {name}: lerobot refused: {theirs[-1]["refused"]}', flush=True)
            ours.append(ours_run(assets, name, work, f'{name}_{rep}'))
            for who, r in (('lerobot', theirs[-1]), ('ours', ours[-1])):
                if who in SYSTEMS and not r['completed'] and not r.get('refused'):
                    tail = Path(r['log']).read_text(errors='replace').strip().splitlines()[-3:] if r['log'] else []
                    print(
                        f'[vs_lerobot] {name} rep {rep}: {who} did not complete (rc {r["rc"]}): ' + ' | '.join(tail),
                        flush=True,
                    )
        o, t = figures(ours), figures(theirs)
        summaries = [r['summary'] for r in ours if r['completed']]
        line = {
            'vs_lerobot': name,
            'mode': mode,
            'policy': policy,
            'image_hw': [h, w],
            'fps': FPS,
            'seconds': SECONDS,
            'reps': REPS,
            'torch_threads': TORCH_THREADS or 'default',
            **{f'ours_{k}': v for k, v in o.items()},
            **{f'lerobot_{k}': v for k, v in t.items()},
            'ours_completed': all(r['completed'] for r in ours),
            'lerobot_completed': all(r['completed'] for r in theirs),
            'lerobot_refused': theirs[0]['refused'] or None,
            'ours_cpu_percent': cpu_percent(ours),
            'lerobot_cpu_percent': cpu_percent(theirs),
            # What our own run summary said about the bus, next to the emulator's figure over
            # the same window (the whole loop): they must agree within one period.
            'ours_summary_max_gap_ms': max((s['bus_max_gap_ms'] for s in summaries), default=None),
            'ours_emulator_loop_max_gap_ms': max(
                (round(r['full_gap_ms'], 3) for r in ours if r['completed']), default=None
            ),
            'ours_loop_max_ms': max((s['period_err_max_ms'] for s in summaries), default=None),
            # Watchdog holds (no command for command_timeout_s): goal writes the emulator counts, no commands.
            'ours_holds': sum(s.get('bus_holds', 0) for s in summaries),
            'ours_commands': sum(r['times'].size for r in ours),
            'lerobot_commands': sum(r['times'].size for r in theirs),
            'ratio_hz': ratio(o['hz'], t['hz']),
            'ratio_p50': ratio(o['p50_ms'], t['p50_ms']),
            'ratio_p99': ratio(o['p99_ms'], t['p99_ms']),
            'ratio_max_gap': ratio(o['max_gap_ms'], t['max_gap_ms']),
            'ratio_cpu': ratio(cpu_percent(ours), cpu_percent(theirs)),
            'cpu_count': os.cpu_count(),
            'machine': platform.processor() or platform.machine(),
            'loadavg_1m': [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        }
        print(json.dumps(line), flush=True)


if __name__ == '__main__':
    main()
