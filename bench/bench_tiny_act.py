# SPDX-License-Identifier: Apache-2.0
"""Inference latency of the tiny ACT checkpoint through SyncPolicyEngine.

Measures a chunk inference (empty action queue: preprocessor + network +
postprocessor) and a cached step (queue pop only) for each torch thread count,
and prints a final JSON line ``{"bench": "tiny_act_inference", ...}``.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_tiny_act.py [--threads 1,2] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault('HF_HUB_OFFLINE', '1')
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'rollout_ros'))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from rollout_ros.hardware.robots import get_robot_spec  # noqa: E402
from rollout_ros.policy.loading import check_features, load_policy  # noqa: E402
from rollout_ros.policy.sync_engine import SyncPolicyEngine  # noqa: E402
from rollout_ros.policy.tiny_checkpoint import make_tiny_act_checkpoint  # noqa: E402

JOINTS = get_robot_spec('koch_follower').feature_names  # the demo arm's, in lerobot's order
CHW = (3, 96, 128)


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3)


def _measure(engine: SyncPolicyEngine, state, images, warmup: int, iters: int) -> dict:
    def timed() -> float:
        t = time.perf_counter()
        engine.infer(state, images)
        return (time.perf_counter() - t) * 1e3

    for _ in range(warmup):
        engine.reset()
        timed()
    chunk, cached, model = [], [], []
    for _ in range(iters):
        engine.reset()
        chunk.append(timed())
        assert engine.last_timing.ran_model
        model.append(engine.last_timing.model_ms)
        cached.append(timed())
        assert engine.last_timing.ran_model is False
    return {
        'chunk_p50_ms': _pct(chunk, 50),
        'chunk_p99_ms': _pct(chunk, 99),
        'chunk_model_p50_ms': _pct(model, 50),
        'cached_p50_ms': _pct(cached, 50),
        'cached_p99_ms': _pct(cached, 99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', default=f'1,{os.cpu_count()}', help='comma-separated torch thread counts')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--warmup', type=int, default=10)
    parser.add_argument('--iters', type=int, default=100)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    state = {name: float(rng.uniform(-60, 60)) for name in JOINTS}
    images = {'front': rng.integers(0, 256, size=(CHW[1], CHW[2], CHW[0]), dtype=np.uint8)}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = make_tiny_act_checkpoint(Path(tmp) / 'tiny_act', JOINTS, {'front': CHW}, chunk_size=20)
        loaded = load_policy(str(ckpt), device=args.device)
    engine = SyncPolicyEngine(loaded, check_features(loaded, JOINTS, ['front']), task='bench')
    params = sum(p.numel() for p in loaded.policy.parameters())

    results = {}
    for n in sorted({int(t) for t in args.threads.split(',')}):
        torch.set_num_threads(n)
        r = _measure(engine, state, images, args.warmup, args.iters)
        results[n] = r
        print(
            f'threads={n}: chunk inference p50 {r["chunk_p50_ms"]:.2f} ms  p99 {r["chunk_p99_ms"]:.2f} ms '
            f'(network p50 {r["chunk_model_p50_ms"]:.2f} ms)  cached step p50 {r["cached_p50_ms"]:.3f} ms'
        )
    best = min(results, key=lambda n: results[n]['chunk_p50_ms'])
    print(f'fastest chunk p50 with torch.set_num_threads({best}); params {params / 1e6:.2f} M; device {loaded.device}')
    print(
        json.dumps(
            {
                'bench': 'tiny_act_inference',
                'device': loaded.device,
                'cpu_count': os.cpu_count(),
                'torch': torch.__version__,
                'params': params,
                'image_chw': list(CHW),
                'joints': len(JOINTS),
                'chunk_size': loaded.chunk_size,
                'iters': args.iters,
                'best_threads': best,
                **results[best],
                'by_threads': {str(n): r for n, r in results.items()},
            }
        )
    )


if __name__ == '__main__':
    main()
