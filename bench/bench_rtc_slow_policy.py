# SPDX-License-Identifier: Apache-2.0
"""A slow chunking policy behind ChunkedPolicyEngine, pulled by a 30 Hz paced loop.

The stand-in policy takes 300 ms per 50-action chunk. Its chunks follow a
smooth sinusoid of the time the inference started, plus a per-chunk offset
(as two samples of a real policy disagree), so switching chunks naively
jumps. Two runs:

* ``rtc``: the stand-in accepts ``inference_delay``/``prev_chunk_left_over``
  and inpaints like an ideal RTC policy (prefix weights 1 for the delay,
  fading to 0 over the execution horizon); the engine merges with ``replace``.
* ``blend``: the stand-in has ACT's call shape; the engine fades the seam.

Reported per run: starved ticks after the first chunk (target 0) and the
boundary step ratio: the largest command-to-command step within
``--window`` actions of each chunk boundary, ours vs switching to the raw
chunk at the same instant (target <= 0.5). Last line is JSON
``{"bench": "rtc_slow_policy", ...}`` with the ``rtc`` run's figures on top.

    .venv/bin/python bench/bench_rtc_slow_policy.py [--duration 20] [--modes rtc,blend]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault('HF_HUB_OFFLINE', '1')
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'rollout_ros'))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from rollout_ros.core.pacer import Pacer  # noqa: E402
from rollout_ros.hardware.robots import get_robot_spec  # noqa: E402
from rollout_ros.policy.chunked_engine import ChunkedPolicyEngine  # noqa: E402
from rollout_ros.policy.loading import check_features, load_policy  # noqa: E402
from rollout_ros.policy.tiny_checkpoint import make_tiny_act_checkpoint  # noqa: E402

JOINTS = get_robot_spec('koch_follower').feature_names  # the demo arm's, in lerobot's order
CHW = (3, 48, 64)
FPS = 30.0
CHUNK = 50
LATENCY_S = 0.3
# Robot units (the tiny checkpoint's joints span [-100, 100], std 30).
AMPLITUDE = 40.0
FREQ_HZ = 0.2
CHUNK_OFFSET_STD = 5.0
STEP_NOISE_STD = 0.1
NORM_STD = 30.0


class SlowSinePolicy:
    """Chunk ``i`` = sinusoid at t_inference_start + i / fps, + a per-chunk offset, in normalised units."""

    def __init__(self, t0: float, seed: int):
        # The engine writes its RTCConfig here, as it does on a lerobot policy.
        self.config = SimpleNamespace(rtc_config=None)
        self.t0 = t0
        self.rng = np.random.default_rng(seed)
        self.phase = np.linspace(0, np.pi, len(JOINTS))
        self.raw_chunks: list[np.ndarray] = []  # normalised, before any inpainting
        self.lock = threading.Lock()

    def reset(self):
        pass

    def _raw(self) -> np.ndarray:
        t = time.monotonic() - self.t0 + np.arange(CHUNK)[:, None] / FPS
        traj = AMPLITUDE * np.sin(2 * np.pi * FREQ_HZ * t + self.phase)
        traj = traj + self.rng.normal(0, CHUNK_OFFSET_STD, len(JOINTS))
        traj = traj + self.rng.normal(0, STEP_NOISE_STD, traj.shape)
        return traj / NORM_STD

    def _chunk(self, raw: np.ndarray, inference_delay, prefix) -> torch.Tensor:
        with self.lock:
            self.raw_chunks.append(raw)
        out = raw
        if prefix is not None:
            horizon = self.config.rtc_config.execution_horizon
            weights = prefix_weights(int(inference_delay or 0), horizon, CHUNK)[:, None]
            out = weights * prefix.cpu().numpy() + (1 - weights) * raw
        return torch.as_tensor(out, dtype=torch.float32).unsqueeze(0)


def prefix_weights(delay: int, horizon: int, total: int) -> np.ndarray:
    """RTC's LINEAR schedule: 1 for the delay, then a ramp to 0 at the horizon."""
    w = np.zeros(total)
    delay = min(delay, horizon)
    w[:delay] = 1.0
    ramp = horizon - delay
    if ramp > 0:
        w[delay:horizon] = np.linspace(1, 0, ramp + 2)[1:-1]
    return w


class RtcSine(SlowSinePolicy):
    def supports_rtc(self):
        return True

    def init_rtc_processor(self):
        pass

    def predict_action_chunk(self, batch, inference_delay=None, prev_chunk_left_over=None):
        start = time.perf_counter()
        raw = self._raw()
        time.sleep(max(0.0, LATENCY_S - (time.perf_counter() - start)))
        return self._chunk(raw, inference_delay, prev_chunk_left_over)


class PlainSine(SlowSinePolicy):
    def predict_action_chunk(self, batch):
        start = time.perf_counter()
        raw = self._raw()
        time.sleep(max(0.0, LATENCY_S - (time.perf_counter() - start)))
        return self._chunk(raw, None, None)


def _max_step(rows: np.ndarray) -> float:
    return float(np.abs(np.diff(rows, axis=0)).max()) if len(rows) > 1 else 0.0


def run(mode: str, act_loaded, duration_s: float, window: int, seed: int) -> dict:
    t0 = time.monotonic()
    policy = (RtcSine if mode == 'rtc' else PlainSine)(t0, seed)
    loaded = dataclasses.replace(
        act_loaded, policy=policy, policy_type='slow_sine', chunk_size=CHUNK, n_action_steps=CHUNK
    )
    engine = ChunkedPolicyEngine(loaded, check_features(act_loaded, JOINTS, ['front']), task='bench')
    merges: list[tuple[int, int, int]] = []  # (first consumed index of the new plan, delay, raw chunk no.)
    real_merge = engine.queue.merge

    def recording_merge(chunk, obs_index, mode_):
        delay = real_merge(chunk, obs_index, mode_)
        merges.append((obs_index + delay, delay, len(policy.raw_chunks) - 1))
        return delay

    engine.queue.merge = recording_merge

    image = np.zeros((CHW[1], CHW[2], CHW[0]), np.uint8)
    state = {n: 0.0 for n in JOINTS}
    executed: list[np.ndarray] = []
    first_action_tick = None
    starved_after_first = 0
    pacer = Pacer(FPS)
    with engine:
        pacer.start()
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            pacer.begin_tick()
            engine.submit_observation(state, {'front': image})
            action = engine.next_action()
            if action is None:
                if first_action_tick is not None:
                    starved_after_first += 1
            else:
                if first_action_tick is None:
                    first_action_tick = pacer.ticks
                state = action
                executed.append(np.array([action[n] for n in JOINTS]))
            pacer.wait()
        rep = pacer.report()  # before stop(), which waits out a chunk in flight

    cmds = np.array(executed)
    ours, naive = [], []
    for first, delay, raw_no in merges[1:]:  # the first merge is a cold start: no boundary
        if first < 1 or first + window > len(cmds):
            continue
        raw = policy.raw_chunks[raw_no][delay : delay + window] * NORM_STD
        ours.append(_max_step(cmds[first - 1 : first + window]))
        naive.append(_max_step(np.vstack([cmds[first - 1 : first], raw])))
    ratio = max(ours) / max(naive) if ours else float('nan')
    latency = engine.chunk_latency_ms
    return {
        'mode': engine.mode,
        'queue_threshold': engine.queue_threshold,
        'execution_horizon': engine.execution_horizon if engine.rtc else None,
        'starved_ticks': starved_after_first,
        'boundary_step_ratio': round(ratio, 4),
        'boundaries': len(ours),
        'boundary_step_max': round(max(ours), 3) if ours else None,
        'naive_boundary_step_max': round(max(naive), 3) if naive else None,
        'boundary_step_mean_ratio': (round(float(np.mean(np.array(ours) / np.array(naive))), 4) if ours else None),
        'ticks': rep.ticks,
        'rate_hz': round(rep.rate_hz, 3),
        'period_err_p99_ms': round(rep.period_err_p99_ms, 3),
        'overruns': rep.overruns,
        'waiting_ticks': engine.waiting_ticks,
        'chunks': engine.chunks,
        'chunk_latency_p50_ms': round(latency.percentile(50), 2),
        'chunk_latency_max_ms': round(latency.max(), 2),
        'delay_p50': engine.delays.percentile(50),
        'delay_max': engine.delays.max(),
        'inference_delay_final': engine.inference_delay_estimate(),
        # What an all-time-max latency estimate would use from here on.
        'max_latency_inference_delay': math.ceil(latency.max() / 1e3 * FPS),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--duration', type=float, default=20.0, help='seconds per mode')
    parser.add_argument('--modes', default='rtc,blend')
    parser.add_argument('--window', type=int, default=10, help='actions after a boundary to check')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(',') if m.strip()]
    if not modes or any(m not in ('rtc', 'blend') for m in modes):
        parser.error('--modes takes rtc and/or blend')

    with tempfile.TemporaryDirectory() as tmp:
        # Only its processors are used: real lerobot (un)normalisation around the stand-in.
        ckpt = make_tiny_act_checkpoint(Path(tmp) / 'tiny_act', JOINTS, {'front': CHW}, chunk_size=20)
        act_loaded = load_policy(str(ckpt))

    results = {}
    for mode in modes:
        r = run(mode, act_loaded, args.duration, args.window, args.seed)
        results[mode] = r
        print(
            f'{mode}: {r["ticks"]} ticks at {r["rate_hz"]:.2f} Hz, starved after first chunk '
            f'{r["starved_ticks"]}, chunks {r["chunks"]} (latency p50 {r["chunk_latency_p50_ms"]:.0f} ms), '
            f'delay p50 {r["delay_p50"]:.0f} / max {r["delay_max"]:.0f} actions, '
            f'boundary step {r["boundary_step_max"]} vs naive {r["naive_boundary_step_max"]} '
            f'-> ratio {r["boundary_step_ratio"]} over {r["boundaries"]} boundaries'
        )
    top = results[modes[0]]
    print(
        json.dumps(
            {
                'bench': 'rtc_slow_policy',
                'starved_ticks': top['starved_ticks'],
                'boundary_step_ratio': top['boundary_step_ratio'],
                'mode': modes[0],
                'fps': FPS,
                'chunk': CHUNK,
                'latency_ms': LATENCY_S * 1e3,
                'duration_s': args.duration,
                'cpu_count': os.cpu_count(),
                **{k: v for k, v in top.items() if k not in ('starved_ticks', 'boundary_step_ratio', 'mode')},
                'by_mode': results,
            }
        )
    )


if __name__ == '__main__':
    main()
