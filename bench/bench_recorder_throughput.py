# SPDX-License-Identifier: Apache-2.0
"""Recorder throughput: 1, 2 and 3 cameras at 640x480, rows fed at 30 Hz in real
time through DatasetWriter for ~10 s each, on whatever cores this machine has.

Per camera count one JSON line: sustained rows/s, video frames missing versus
rows (the writer blocks rather than drops, so this must be 0), save_episode
time, how often add_frame had to wait for an encoder, and CPU use. Then one
line timing SIGKILL -> dataset loadable by LeRobotDataset, for our writer
(nothing to repair) and for LeRobot's own writer (needs `rollout_dataset repair`).

BENCH_SECONDS (default 10) and BENCH_CAMERAS (default "1,2,3") shorten a run;
BENCH_VCODEC / BENCH_PRESET / BENCH_THREADS override the codec, its preset and
its thread count (LeRobot's defaults otherwise: libsvtav1, preset 12).
"""

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

os.environ.setdefault('HF_HUB_OFFLINE', '1')
H, W, FPS = 480, 640, 30
REPO = 'bench/recorder'


def scene(cam: int, n: int) -> list[np.ndarray]:
    """n frames of a textured scene panning and a block moving across it."""
    rng = np.random.default_rng(cam)
    y, x = np.mgrid[0:H, 0 : W + n * 4].astype(np.float32)
    base = np.stack([128 + 60 * np.sin(x / 37 + cam), 128 + 60 * np.cos(y / 23), 96 + 40 * np.sin((x + y) / 51)], -1)
    base += rng.normal(0, 6, base.shape)
    base = base.clip(0, 255).astype(np.uint8)
    frames = []
    for i in range(n):
        f = np.ascontiguousarray(base[:, i * 4 : i * 4 + W])
        r, c = (i * 7) % (H - 80), (i * 11) % (W - 80)
        f[r : r + 80, c : c + 80] = (255 - 40 * cam, 40 * cam, 128)
        frames.append(f)
    return frames


def count_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for p in c.demux(video=0) if p.size)


def run(n_cams: int, seconds: float, tmp: Path) -> dict:
    from rollout_ros.dataset.writer import DatasetWriter, make_features

    cams = {f'cam{i}': (H, W) for i in range(n_cams)}
    joints = [f'j{i}.pos' for i in range(6)]
    loop = 90
    images = {cam: scene(i, loop) for i, cam in enumerate(cams)}
    root = tmp / f'cams{n_cams}'
    kwargs = {}
    if os.environ.get('BENCH_VCODEC'):
        kwargs['vcodec'] = os.environ['BENCH_VCODEC']
    if os.environ.get('BENCH_PRESET'):
        preset = os.environ['BENCH_PRESET']
        kwargs['preset'] = int(preset) if preset.isdigit() else preset
    if os.environ.get('BENCH_THREADS'):
        kwargs['encoder_threads'] = int(os.environ['BENCH_THREADS'])
    w = DatasetWriter.create(root, REPO, FPS, 'bench_robot', make_features(joints, joints, cams), **kwargs)
    rows = int(seconds * FPS)
    period = 1.0 / FPS
    lag = []
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    for i in range(rows):
        deadline = t0 + i * period
        now = time.monotonic()
        if now < deadline:
            time.sleep(deadline - now)
        lag.append(max(0.0, now - deadline))
        stamp = time.time()
        state = np.full(6, i, np.float32)
        frame = {
            'observation.state': state,
            'action': state,
            'executed.action': state,
            'stamp.observation': stamp,
            'stamp.action_sent': stamp,
        }
        for cam in cams:
            frame[f'observation.images.{cam}'] = images[cam][i % loop]
            frame[f'stamp.camera.{cam}'] = stamp
        w.add_frame(frame, 'bench')
    fed_s = time.monotonic() - t0
    saved = w.save_episode()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.monotonic() - t0
    w.finalize()
    video_frames = [count_frames(root / f'videos/observation.images.{cam}/chunk-000/file-000.mp4') for cam in cams]
    cpu_s = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    shutil.rmtree(root)
    return {
        'bench': 'recorder_throughput',
        'cameras': n_cams,
        'resolution': f'{W}x{H}',
        'target_fps': FPS,
        'fps': round(rows / fed_s, 2),
        'rows': rows,
        # How late the feeding loop reached each tick (it never skips one): a
        # starved producer shows here before it shows in the rate.
        'tick_lag_ms_p50': round(1000 * float(np.percentile(lag, 50)), 1),
        'tick_lag_ms_p99': round(1000 * float(np.percentile(lag, 99)), 1),
        'dropped_frames': max(rows - f for f in video_frames),
        'save_episode_ms': round(saved['save_ms'], 1),
        'backpressure_waits': saved['backpressure_waits'],
        'backpressure_s': round(saved['backpressure_s'], 2),
        'video_mb_per_cam_min': round(sum(saved['video_bytes'].values()) / n_cams / 1e6 / (rows / FPS) * 60, 2),
        'cpu_cores_used': round(cpu_s / wall, 2),
        'cores': os.cpu_count(),
        'codec': w.codec,
        **{k: v for k, v in kwargs.items() if k != 'vcodec'},
    }


OURS_CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from rollout_ros.dataset.writer import DatasetWriter, make_features
    w = DatasetWriter.create(sys.argv[1], 'bench/kill', 30, 'bench_robot',
                             make_features(['a'], ['a'], {'cam': (480, 640)}, timing=False))
    img = np.zeros((480, 640, 3), np.uint8)
    for e in range(3):
        for i in range(60):
            img[:] = i
            w.add_frame({'observation.state': [i], 'action': [i], 'observation.images.cam': img}, 'kill')
        if e < 2:
            w.save_episode()
    print('READY', flush=True)
    time.sleep(60)
""")

LEROBOT_CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    feats = {'observation.state': {'dtype': 'float32', 'shape': (1,), 'names': ['a']},
             'action': {'dtype': 'float32', 'shape': (1,), 'names': ['a']},
             'observation.images.cam': {'dtype': 'video', 'shape': (480, 640, 3),
                                        'names': ['height', 'width', 'channels']}}
    ds = LeRobotDataset.create('bench/kill', fps=30, features=feats, root=sys.argv[1], robot_type='bench_robot',
                               streaming_encoding=True)
    img = np.zeros((480, 640, 3), np.uint8)
    for e in range(3):
        for i in range(60):
            img[:] = i
            ds.add_frame({'observation.state': np.array([i], np.float32), 'action': np.array([i], np.float32),
                          'observation.images.cam': img, 'task': 'kill'})
        if e < 2:
            ds.save_episode()
    print('READY', flush=True)
    time.sleep(60)
""")


def kill_to_loadable(child: str, root: Path, needs_repair: bool) -> dict:
    """SIGKILL a writer mid-episode (2 saved), then time until LeRobotDataset loads it."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from rollout_ros.dataset.repair import repair

    proc = subprocess.Popen(
        [sys.executable, '-c', child, str(root)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    if proc.stdout.readline().strip() != 'READY':
        raise RuntimeError('writer child did not get ready')
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t_dead = time.monotonic()
    if needs_repair:
        repair(root)
    t_repaired = time.monotonic()
    ds = LeRobotDataset('bench/kill', root=root, video_backend='pyav')
    ds[len(ds) - 1]
    t1 = time.monotonic()
    return {
        'kill_to_loadable_ms': round((t1 - t0) * 1000, 1),
        'repair_ms': round((t_repaired - t_dead) * 1000, 1),
        'episodes': ds.num_episodes,
    }


def main() -> None:
    import logging

    logging.getLogger('lerobot.utils.import_utils').setLevel(logging.ERROR)
    seconds = float(os.environ.get('BENCH_SECONDS', '10'))
    cams = [int(c) for c in os.environ.get('BENCH_CAMERAS', '1,2,3').split(',')]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in cams:
            print(json.dumps(run(n, seconds, tmp)), flush=True)
        ours = kill_to_loadable(OURS_CHILD, tmp / 'kill_ours', needs_repair=False)
        lerobot = kill_to_loadable(LEROBOT_CHILD, tmp / 'kill_lerobot', needs_repair=True)
    print(
        json.dumps(
            {
                'bench': 'recorder_kill_to_loadable',
                'kill_to_loadable_ms': ours['kill_to_loadable_ms'],
                'episodes_kept': ours['episodes'],
                'lerobot_writer_kill_to_loadable_ms': lerobot['kill_to_loadable_ms'],
                'lerobot_writer_repair_ms': lerobot['repair_ms'],
                'lerobot_writer_episodes_kept': lerobot['episodes'],
            }
        ),
        flush=True,
    )


if __name__ == '__main__':
    main()
