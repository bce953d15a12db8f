# SPDX-License-Identifier: Apache-2.0
"""use_amp and use_torch_compile on a real (tiny, random-weight) ACT checkpoint.

Pins: amp on cpu really runs the network in bfloat16 (and stays close to
float32); the checkpoint's own use_amp only counts on cuda, as in
lerobot-rollout; a device without amp is refused naming use_amp; with
torch.compile (inductor, really compiled here) the policy node compiles and
warms up at configure, so the first real ticks trigger no compilation; a
compiler that fails is reported at configure naming use_torch_compile."""

import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')

import time

import numpy as np
import pytest
import torch
from rclpy.parameter import Parameter

from rollout_ros.demo import CAMERA, IMAGE_HW, ROBOT_TYPE
from rollout_ros.hardware.robots import get_robot_spec
from rollout_ros.nodes.policy_node import PolicyNode
from rollout_ros.policy import acceleration, loading
from rollout_ros.policy.acceleration import amp_enabled
from rollout_ros.policy.loading import PolicyConfigError, check_features, load_policy
from rollout_ros.policy.sync_engine import SyncPolicyEngine

JOINTS = get_robot_spec(ROBOT_TYPE).feature_names


def _obs(seed=0):
    rng = np.random.default_rng(seed)
    state = {n: float(v) for n, v in zip(JOINTS, rng.uniform(-50, 50, len(JOINTS)))}
    return state, {CAMERA: rng.integers(0, 256, (*IMAGE_HW, 3), dtype=np.uint8)}


def _engine(loaded):
    return SyncPolicyEngine(loaded, check_features(loaded, JOINTS, [CAMERA]))


def test_amp_on_cpu_runs_the_network_in_bfloat16(assets):
    plain = load_policy(str(assets['checkpoint']))
    amp = load_policy(str(assets['checkpoint']), use_amp=True)
    assert amp.use_amp and not plain.use_amp
    dtypes = []
    amp.policy.model.action_head.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    state, images = _obs()
    ref = _engine(plain).infer(state, images)
    got = _engine(amp).infer(state, images)
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert got != ref, 'autocast changed nothing'
    # bfloat16 keeps ~3 significant digits; joints span [-100, 100].
    assert got == pytest.approx(ref, abs=2.0)


def test_checkpoint_use_amp_counts_on_cuda_only():
    assert amp_enabled('cuda', False, True) and amp_enabled('cuda:1', False, True)
    assert not amp_enabled('cpu', False, True)
    assert amp_enabled('cpu', True, False)
    assert not amp_enabled('cuda', False, False)


def test_amp_refused_where_lerobot_has_none(assets, monkeypatch):
    monkeypatch.setattr(loading, 'resolve_device', lambda device: 'mps')
    with pytest.raises(PolicyConfigError, match='use_amp') as err:
        load_policy(str(assets['checkpoint']), device='mps', use_amp=True)
    assert err.value.param == 'use_amp'


def _node(ros, assets, name, **params):
    base = dict(
        policy_path=str(assets['checkpoint']),
        camera_names=[CAMERA],
        robot_type=ROBOT_TYPE,
        camera_topic_template='',
        torch_threads=0,
    )
    base.update(params)
    return PolicyNode(name, parameter_overrides=[Parameter(k, value=v) for k, v in base.items()])


def test_compiled_policy_is_compiled_and_warm_before_the_first_tick(ros, assets):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    node = _node(ros, assets, 'policy_compile_test', use_torch_compile=True)
    try:
        t0 = time.perf_counter()
        node.trigger_configure()
        configure_s = time.perf_counter() - t0
        assert node.state_label == 'inactive', node.last_error
        assert node.loaded.compiled
        assert hasattr(node.loaded.policy.predict_action_chunk, '_torchdynamo_orig_callable')
        first, *rest = node.warmup_ms
        assert len(rest) >= acceleration.COMPILE_WARMUP_INFERENCES
        assert first > 3 * max(rest), node.warmup_ms  # the first one compiled
        node.trigger_activate()
        compiled_frames = counters['frames']['ok']
        assert compiled_frames >= 1
        state, images = _obs(1)
        chunk = node.loaded.chunk_size
        for _ in range(chunk + 1):  # two chunk inferences, the way the loop calls
            node.infer(state, images, 'test')
        assert counters['frames']['ok'] == compiled_frames, 'the loop paid for a compilation'
        print(
            f'\ncompile warm-up: configure {configure_s:.1f} s, warm-up inferences '
            f'{[round(t) for t in node.warmup_ms]} ms'
        )
    finally:
        node.trigger_shutdown()
        node.destroy_node()
        torch._dynamo.reset()


def test_compile_failure_fails_configure_naming_use_torch_compile(ros, assets, monkeypatch):
    from torch._inductor.exc import InvalidCxxCompiler

    def no_compiler(graph_module, example_inputs):
        raise InvalidCxxCompiler()

    torch._dynamo.reset()
    monkeypatch.setattr(acceleration, 'COMPILE_BACKEND', no_compiler)
    node = _node(ros, assets, 'policy_compile_fail_test', use_torch_compile=True)
    try:
        node.trigger_configure()
        assert node.state_label == 'unconfigured'
        assert node.last_error.startswith('use_torch_compile:'), node.last_error
        assert 'InvalidCxxCompiler' in node.last_error or 'C++' in node.last_error
        assert node.loaded is None  # released by the failed configure
    finally:
        node.trigger_shutdown()
        node.destroy_node()
        torch._dynamo.reset()
