# SPDX-License-Identifier: Apache-2.0
"""Highlight ring buffer: 30 s of two 640x480 cameras at 30 fps under LeRobot's
default 1024 MB cap (raw frames would need 1.66 GB, so LeRobot's ring keeps
19.4 s of it). Images are camera-like: moving gradients plus sensor-like
noise, not pure noise, which no camera produces and no codec compresses."""

import json
import time

import numpy as np

from rollout_ros.dataset.ring_buffer import MIB, FrameRingBuffer

SECONDS, FPS, CAP_MB = 30, 30, 1024
H, W = 480, 640
CAMS = ('front', 'wrist')
NOISE_BANK = 16


def camera_frames(cam: int):
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    scene = np.stack([x / W * 200 + 30, y / H * 180 + 40, (x + y) / (W + H) * 160 + 60 + 20 * cam], -1)
    rng = np.random.default_rng(cam)
    # A bank of noise fields, cycled: generating fresh noise per frame would
    # dominate the run without changing what the codec sees.
    noise = rng.normal(0, 3, (NOISE_BANK, H, W, 3)).astype(np.float32)
    t = 0
    while True:
        shifted = np.roll(scene, shift=(2 * t, 3 * t), axis=(0, 1))
        yield np.clip(shifted + noise[t % NOISE_BANK], 0, 255).astype(np.uint8)
        t += 1


def main() -> None:
    ring = FrameRingBuffer(seconds=SECONDS, fps=FPS, max_memory_mb=CAP_MB)
    sources = [camera_frames(i) for i in range(len(CAMS))]
    append_ms = []
    for t in range(SECONDS * FPS):
        frame = {f'observation.images.{cam}': next(src) for cam, src in zip(CAMS, sources)}
        frame['observation.state'] = np.full(6, t, dtype=np.float32)
        frame['action'] = np.zeros(6, dtype=np.float32)
        frame['task'] = 'pick the cube'
        t0 = time.perf_counter()
        ring.append(frame)
        append_ms.append((time.perf_counter() - t0) * 1e3)
    held_s, memory_mb, warning = ring.window_seconds, ring.memory_bytes / MIB, ring.warning()
    t0 = time.perf_counter()
    frames = ring.drain()
    drain_s = time.perf_counter() - t0
    assert len(frames) == round(held_s * FPS) and frames[0]['observation.images.front'].shape == (H, W, 3)

    a = np.array(append_ms)
    result = {
        'bench': 'ring_buffer',
        'cameras': len(CAMS),
        'seconds_requested': SECONDS,
        'seconds_held': round(held_s, 2),
        'memory_mb': round(memory_mb, 1),
        'cap_mb': CAP_MB,
        'append_ms_p50': round(float(np.percentile(a, 50)), 3),
        'append_ms_p99': round(float(np.percentile(a, 99)), 3),
        'drain_s': round(drain_s, 3),
    }
    print(
        f'{len(CAMS)} cameras {W}x{H}@{FPS}: {held_s:.1f} s of {SECONDS} s held in {memory_mb:.0f} MB '
        f'(cap {CAP_MB} MB); append p50 {result["append_ms_p50"]} ms; drain {drain_s:.2f} s'
        + (f'; {warning}' if warning else '')
    )
    print(json.dumps(result))


if __name__ == '__main__':
    main()
