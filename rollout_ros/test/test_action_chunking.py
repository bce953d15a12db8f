# SPDX-License-Identifier: Apache-2.0
"""Background chunked inference: the action queue, interpolation and the chunked engine.

Timing here is loose on purpose (two shared cores): assertions are about
what was executed and what the policy was handed, not about milliseconds.
"""

import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')

import dataclasses
import inspect
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rollout_ros.core.action_queue import ActionQueue
from rollout_ros.core.interpolation import ActionInterpolator
from rollout_ros.core.pacer import Pacer
from rollout_ros.policy.chunked_engine import ChunkedPolicyEngine, hold_pad, supports_rtc
from rollout_ros.policy.loading import check_features, load_policy
from rollout_ros.policy.tiny_checkpoint import make_tiny_act_checkpoint

JOINTS = ['j0.pos', 'j1.pos', 'j2.pos']
SMALL = (3, 48, 64)
CAM = (3, 96, 128)
# The tiny checkpoints normalise joints as (x - 0) / 30.
STD = 30.0
# Starved pulls tolerated with real threads on a loaded 2-core machine; the
# target of 0 is measured by bench/bench_rtc_slow_policy.py and bench_tiny_act.py.
LOADED_STARVED = 3


def ramp(start, n, dim=2, step=1.0):
    return np.repeat((start + step * np.arange(n, dtype=float))[:, None], dim, axis=1)


# ---------------------------------------------------------------- queue


def test_pop_counts_only_executed_actions():
    q = ActionQueue()
    assert q.pop() is None and q.consumed == 0 and q.requests == 1
    q.merge(ramp(0, 3), obs_index=0)
    assert [q.pop()[0] for _ in range(3)] == [0, 1, 2]
    assert q.pop() is None
    assert q.consumed == 3 and q.requests == 5 and q.size == 0


def test_delay_is_what_was_consumed_during_inference():
    q = ActionQueue()
    q.merge(ramp(0, 10), obs_index=0)
    start, leftover = q.snapshot_for_inference()
    assert start == 0 and leftover[:, 0].tolist() == list(range(10))
    for _ in range(3):
        q.pop()
    skipped = q.merge(ramp(100, 10), obs_index=start, mode='replace')
    assert skipped == 3 and q.delays.max() == 3
    assert q.pop()[0] == 103 and q.size == 6


def test_cold_start_never_skips():
    q = ActionQueue()
    start, leftover = q.snapshot_for_inference()
    assert len(leftover) == 0
    q.merge(ramp(50, 5), obs_index=start)
    assert q.pop()[0] == 50
    # After a reset the index keeps counting but nothing executed since: still no skip.
    for _ in range(2):
        q.pop()
    q.clear()
    start, _ = q.snapshot_for_inference()
    assert start == q.consumed == 3
    q.merge(ramp(70, 5), obs_index=start, mode='blend')
    assert q.pop()[0] == 70


def test_dry_queue_skips_only_what_ran_not_elapsed_time():
    q = ActionQueue()
    q.merge(ramp(0, 2), obs_index=0)
    start, leftover = q.snapshot_for_inference()
    assert len(leftover) == 2
    for _ in range(6):  # 2 executed, then 4 ticks holding
        q.pop()
    assert q.merge(ramp(10, 8), obs_index=start) == 2
    assert q.pop()[0] == 12


def test_snapshot_from_an_older_observation_includes_executed_rows():
    q = ActionQueue()
    q.merge(ramp(0, 10), obs_index=0)
    obs_index = q.consumed
    q.pop()  # executed after the observation, before the inference started
    start, leftover = q.snapshot_for_inference(obs_index)
    assert start == 0 and leftover[:, 0].tolist() == list(range(10))


def test_chunk_entirely_in_the_past_keeps_the_current_plan():
    q = ActionQueue()
    q.merge(ramp(0, 10), obs_index=0)
    for _ in range(5):
        q.pop()
    q.merge(ramp(100, 4), obs_index=0)
    assert q.stale_chunks == 1 and q.pop()[0] == 5


def test_replace_and_blend_differ_only_in_the_fade():
    def run(mode):
        q = ActionQueue(blend_steps=4)
        q.merge(ramp(0, 10), obs_index=0)
        q.pop()
        q.merge(ramp(20, 10), obs_index=1, mode=mode)
        return np.array([q.pop()[0] for _ in range(q.size)])

    replaced, blended = run('replace'), run('blend')
    assert replaced.tolist() == list(range(20, 30))
    # Old plan 1,2,3,4 vs new 20,21,22,23: weights on the new plan 1/5..4/5, then new only.
    weights = np.arange(1, 5) / 5
    expected_head = [(1 - w) * o + w * n for w, o, n in zip(weights, [1, 2, 3, 4], [20, 21, 22, 23])]
    assert blended[:4] == pytest.approx(expected_head)
    assert blended[4:].tolist() == list(range(24, 30))


def test_blend_boundary_step_is_smaller_than_naive_switching():
    def commands(mode):
        q = ActionQueue(blend_steps=8)
        q.merge(ramp(0, 30, step=0.5), obs_index=0)
        out = [q.pop() for _ in range(15)]
        start, _ = q.snapshot_for_inference()
        out += [q.pop() for _ in range(3)]  # executed while "inferring"
        # Same slope, offset by 10: what a fresh, unconditioned chunk looks like.
        q.merge(ramp(10 + 0.5 * start, 30, step=0.5), obs_index=start, mode=mode)
        out += [q.pop() for _ in range(20)]
        return np.array(out)

    def max_step(cmds):
        return np.abs(np.diff(cmds, axis=0)).max()

    naive, blended = max_step(commands('replace')), max_step(commands('blend'))
    assert naive == pytest.approx(10.5)
    assert blended < 0.5 * naive


def test_blend_from_an_empty_queue_starts_where_the_arm_holds():
    q = ActionQueue(blend_steps=4)
    q.merge(ramp(0, 2), obs_index=0)
    start, _ = q.snapshot_for_inference()
    q.pop(), q.pop(), q.pop()  # dry on the third tick: holding at 1
    q.merge(ramp(30, 10), obs_index=start, mode='blend')  # skips 2 -> 32, 33, ...
    first = q.pop()[0]
    assert 1 < first < 32 and abs(first - 1) < abs(32 - 1)


def test_merge_rejects_bad_input():
    q = ActionQueue()
    with pytest.raises(ValueError, match='mode'):
        q.merge(ramp(0, 3), 0, mode='append')
    with pytest.raises(ValueError, match='shape'):
        q.merge(np.zeros(3), 0)
    q.merge(ramp(0, 3, dim=2), 0)
    with pytest.raises(ValueError, match='action_dim'):
        q.merge(ramp(0, 3, dim=4), 0)


def test_hold_pad_repeats_the_last_row():
    padded = hold_pad(ramp(1, 3), 6)
    assert padded[:, 0].tolist() == [1, 2, 3, 3, 3, 3]
    assert hold_pad(ramp(1, 8), 6)[:, 0].tolist() == [1, 2, 3, 4, 5, 6]


# ---------------------------------------------------------------- interpolation


def _drain(interp):
    out, flags = [], []
    while not interp.needs_new_action():
        out.append(interp.get())
        flags.append(interp.emitted_policy_action)
    return out, flags


def test_interpolation_n1_passes_actions_through():
    interp = ActionInterpolator(1)
    for a in ([1.0, 2.0], [3.0, 5.0]):
        interp.add(np.array(a))
        out, flags = _drain(interp)
        assert [o.tolist() for o in out] == [a] and flags == [True]


def test_interpolation_n3_values_and_cadence():
    interp = ActionInterpolator(3)
    interp.add(np.array([0.0, 3.0]))
    out, flags = _drain(interp)
    assert [o.tolist() for o in out] == [[0.0, 3.0]] and flags == [True]  # first after reset: alone
    interp.add(np.array([3.0, 0.0]))
    out, flags = _drain(interp)
    assert np.allclose(out, [[1.0, 2.0], [2.0, 1.0], [3.0, 0.0]])
    assert flags == [False, False, True]
    assert interp.get() is None and interp.emitted_policy_action is False
    interp.reset()
    interp.add(np.array([9.0, 9.0]))
    assert len(_drain(interp)[0]) == 1


def test_interpolation_keeps_joint_names():
    interp = ActionInterpolator(2)
    interp.add({'a': 0.0, 'b': 2.0})
    interp.get()
    interp.add({'a': 2.0, 'b': 0.0})
    assert interp.get() == {'a': 1.0, 'b': 1.0}
    assert interp.get() == {'a': 2.0, 'b': 0.0}


def test_interpolation_rejects_bad_multiplier():
    for bad in (0, 1.5):
        with pytest.raises(ValueError):
            ActionInterpolator(bad)


# ---------------------------------------------------------------- engine, stand-in policy


class StandInPolicy:
    """Shaped like an RTC policy; chunk ``k`` row ``i`` is ``1000 * k + i`` robot units on every joint.

    Returns normalised actions (robot / 30, the tiny checkpoint's stats), so
    the engine's postprocessing and prefix normalisation are both exercised.
    """

    def __init__(
        self,
        chunk=50,
        dim=len(JOINTS),  # noqa: B008 - JOINTS is a constant
        latency_s=0.05,
        latencies=None,
        rtc=True,
    ):
        self.chunk, self.dim = chunk, dim
        self.latency_s, self.latencies = latency_s, dict(latencies or {})
        self.rtc = rtc
        self.config = SimpleNamespace(rtc_config=None)
        self.rtc_inits = 0
        self.calls = []
        self.lock = threading.Lock()

    def supports_rtc(self):
        return self.rtc

    def init_rtc_processor(self):
        self.rtc_inits += 1

    def reset(self):
        pass

    def predict_action_chunk(self, batch, inference_delay=None, prev_chunk_left_over=None):
        with self.lock:
            k = len(self.calls)
            prefix = None if prev_chunk_left_over is None else prev_chunk_left_over.detach().cpu().clone()
            self.calls.append({'inference_delay': inference_delay, 'prefix': prefix, 't': time.monotonic()})
        time.sleep(self.latencies.get(k, self.latency_s))
        step = torch.arange(self.chunk, dtype=torch.float32)[:, None]
        rows = step + torch.full((self.chunk, self.dim), 1000.0 * k)
        return (rows / STD).unsqueeze(0)


class PlainStandIn(StandInPolicy):
    """Same chunks, ACT/Diffusion call shape: no RTC arguments accepted."""

    def __init__(self, **kw):
        super().__init__(rtc=False, **kw)

    def predict_action_chunk(self, batch):  # noqa: D102 - narrower signature on purpose
        return super().predict_action_chunk(batch)


@pytest.fixture(scope='module')
def act_small(tmp_path_factory):
    out = tmp_path_factory.mktemp('act_s') / 'act'
    ckpt = make_tiny_act_checkpoint(out, JOINTS, {'front': SMALL}, chunk_size=20)
    return load_policy(str(ckpt))


def _standin_engine(act_small, policy, **kw):
    loaded = dataclasses.replace(
        act_small, policy=policy, policy_type='standin', chunk_size=policy.chunk, n_action_steps=policy.chunk
    )
    return ChunkedPolicyEngine(loaded, check_features(act_small, JOINTS, ['front']), **kw)


def _pull(engine, ticks, shape, stop=None, on_tick=None):
    """Drive the engine like the control loop: submit, pop, at 30 Hz on a Pacer."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(shape[1], shape[2], shape[0]), dtype=np.uint8)
    state = {n: 0.0 for n in JOINTS}
    pacer = Pacer(30.0)
    pacer.start()
    actions = []
    for tick in range(ticks):
        pacer.begin_tick()
        engine.submit_observation(state, {'front': image})
        a = engine.next_action()
        actions.append(a)
        if a is not None:
            state = dict(a)
        if on_tick is not None:
            on_tick(tick)
        if stop is not None and stop():
            break
        pacer.wait()
    return actions


def test_rtc_detection_and_configuration(act_small):
    assert supports_rtc(StandInPolicy()) and not supports_rtc(PlainStandIn())
    assert not supports_rtc(act_small.policy)
    policy = StandInPolicy()
    engine = _standin_engine(act_small, policy, execution_horizon=8, max_guidance_weight=5.0)
    assert engine.mode == 'replace' and policy.rtc_inits == 1
    cfg = policy.config.rtc_config
    assert cfg.enabled and cfg.execution_horizon == 8 and cfg.max_guidance_weight == 5.0
    assert cfg.prefix_attention_schedule.name == 'LINEAR'
    assert _standin_engine(act_small, PlainStandIn()).mode == 'blend'
    # The leftover at inference start is queue_threshold long; guide over all of it.
    assert _standin_engine(act_small, StandInPolicy(), queue_threshold=30).execution_horizon == 30
    with pytest.raises(ValueError, match='prefix_attention_schedule'):
        _standin_engine(act_small, StandInPolicy(), prefix_attention_schedule='cubic')


def test_rtc_prefix_is_the_leftover_in_policy_space_hold_padded(act_small):
    policy = StandInPolicy(chunk=50, latency_s=0.05)
    engine = _standin_engine(act_small, policy, queue_threshold=40)
    with engine:
        actions = _pull(engine, 400, SMALL, stop=lambda: len(policy.calls) >= 5)
    assert policy.calls[0]['prefix'] is None  # cold start: nothing to continue
    for k in range(1, 4):
        prefix = policy.calls[k]['prefix']
        assert prefix.shape == (50, len(JOINTS))
        robot = prefix.numpy() * STD  # back to robot units
        assert np.allclose(robot, robot[:, :1], atol=1e-2)  # same value on every joint
        col = np.round(robot[:, 0]).astype(int)
        # A run of one earlier chunk's rows up to its end (row 49), then that row held.
        end = int(np.argmax(col % 1000 == 49))
        assert col[end] % 1000 == 49 and (col[end:] == col[end]).all()
        assert (np.diff(col[: end + 1]) == 1).all()
        assert not np.any(np.abs(robot[end:]) < 1.0), 'tail must hold the last action, not zero-pad'
    # Executed sequence: the cold chunk from its row 0, each later chunk from the row
    # equal to what ran while it was computed.
    rows = [int(round(a[JOINTS[0]])) for a in actions if a is not None]
    assert rows[0] == 0
    firsts = [r for prev, r in zip(rows, rows[1:]) if r // 1000 != prev // 1000]
    merged_delays = list(engine.delays._samples)
    assert [r % 1000 for r in firsts] == merged_delays[1 : 1 + len(firsts)]
    assert engine.starved <= LOADED_STARVED


def test_inference_delay_follows_recent_consumption_not_a_spike(act_small):
    # Call 2 continues a plan and takes ~21 ticks; the rest take ~2.
    policy = StandInPolicy(chunk=50, latency_s=0.06, latencies={2: 0.7})
    engine = _standin_engine(act_small, policy, queue_threshold=44, delay_window=3)
    with engine:
        _pull(engine, 600, SMALL, stop=lambda: len(policy.calls) >= 10)
    delays = [c['inference_delay'] for c in policy.calls]
    spike_ticks = max(engine._tick_delays, default=0)  # the window has forgotten it by now
    assert spike_ticks < 10
    # Before any measurement: the cold chunk's latency in ticks (~2), not 0 and not a guess.
    assert 1 <= delays[1] <= 8
    assert max(delays[3:6]) >= 15, 'the spike must be seen while it is in the window'
    assert max(delays[-2:]) <= 8, f'spike never forgotten: {delays}'
    assert engine.starved <= LOADED_STARVED


def test_blend_mode_calls_without_rtc_arguments(act_small):
    policy = PlainStandIn(chunk=20, latency_s=0.03)
    engine = _standin_engine(act_small, policy, blend_steps=5)
    with engine:
        actions = _pull(engine, 200, SMALL, stop=lambda: len(policy.calls) >= 4)
    assert all(c['inference_delay'] is None and c['prefix'] is None for c in policy.calls)
    first = next(a for a in actions if a is not None)
    assert first[JOINTS[0]] == pytest.approx(0.0)  # cold start at the chunk's first action
    assert engine.starved <= LOADED_STARVED


def test_reset_discards_chunk_in_flight_and_restarts_unskipped(act_small):
    policy = StandInPolicy(chunk=20, latency_s=0.15)
    engine = _standin_engine(act_small, policy, queue_threshold=15)
    calls_at_reset = []

    def maybe_reset(tick):
        if not calls_at_reset and len(policy.calls) >= 3:
            time.sleep(0.02)  # the third inference is running now
            calls_at_reset.append(len(policy.calls))
            engine.reset()

    with engine:
        actions = _pull(
            engine,
            300,
            SMALL,
            on_tick=maybe_reset,
            stop=lambda: bool(calls_at_reset) and len(policy.calls) >= calls_at_reset[0] + 2,
        )
    assert calls_at_reset
    in_flight = calls_at_reset[0] - 1
    rows = [int(round(a[JOINTS[0]])) for a in actions if a is not None]
    assert not any(r // 1000 == in_flight for r in rows), 'chunk planned before the reset was executed'
    # The next executed chunk was started after the reset: a cold start, from its row 0.
    post = [r for r in rows if r // 1000 > in_flight]
    assert post and post[0] % 1000 == 0
    assert policy.calls[in_flight + 1]['prefix'] is None


def test_failed_inference_surfaces_in_next_action(act_small):
    class Broken(StandInPolicy):
        def predict_action_chunk(self, batch, inference_delay=None, prev_chunk_left_over=None):
            raise RuntimeError('out of memory')

    engine = _standin_engine(act_small, Broken(), max_consecutive_errors=1)
    with engine:
        engine.submit_observation({n: 0.0 for n in JOINTS}, {'front': np.zeros((48, 64, 3), np.uint8)})
        deadline = time.monotonic() + 5
        while not engine.failed and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(RuntimeError, match='out of memory'):
            engine.next_action()


def test_warm_up_runs_the_chunk_path_and_queues_nothing(act_small):
    policy = StandInPolicy(chunk=20, latency_s=0.0)
    engine = _standin_engine(act_small, policy, queue_threshold=10)
    times = engine.warm_up({n: 0.0 for n in JOINTS}, {'front': np.zeros((48, 64, 3), np.uint8)}, 3)
    assert len(times) == 3 and engine.queue.size == 0 and engine.queue.consumed == 0
    # The RTC call shapes a compiled policy meets later: cold, then with a
    # prefix (the previous chunk) and a changing delay.
    assert policy.calls[0]['prefix'] is None
    assert all(c['prefix'] is not None and c['prefix'].shape == (20, len(JOINTS)) for c in policy.calls[1:])
    assert [c['inference_delay'] for c in policy.calls] == [0, 1, 2]


def test_remote_loop_mirror_and_published_chunks(act_small):
    """What the policy node does for a strategy in another process: the remote
    tick count drives this queue, each merged chunk is handed out with the
    observation's tag, and the RTC prefix is the remote plan."""
    published = []
    policy = StandInPolicy(chunk=20, latency_s=0.05)
    engine = _standin_engine(
        act_small, policy, queue_threshold=10, on_chunk=lambda chunk, first, tag: published.append((chunk, first, tag))
    )
    image = np.zeros((48, 64, 3), np.uint8)
    remote = ActionQueue()  # the consumer's queue, fed only with what was published
    seen = 0
    with engine:
        pacer = Pacer(30.0)
        pacer.start()
        for _ in range(120):
            pacer.begin_tick()
            engine.advance_to(remote.consumed)
            engine.submit_observation({n: 0.0 for n in JOINTS}, {'front': image}, tag=('obs', remote.consumed))
            for chunk, first, tag in published[seen:]:
                assert tag == ('obs', first)  # the chunk starts at its observation's action
                remote.merge(chunk, first, engine.mode)
            seen = len(published)
            remote.pop()
            if len(policy.calls) >= 6:
                break
            pacer.wait()
    assert len(published) >= 4
    # The mirror followed: every prefix after the first is the remote plan from the observation on.
    assert engine.queue.consumed <= remote.consumed
    for call in policy.calls[1:4]:
        col = np.round(call['prefix'].numpy()[:, 0] * STD).astype(int)
        assert (np.diff(col[: np.argmax(col % 1000 == 19) + 1]) == 1).all()
    assert engine.starved <= LOADED_STARVED


# ---------------------------------------------------------------- engine, real checkpoints


def _starved_after_first(actions):
    first = next(i for i, a in enumerate(actions) if a is not None)
    return sum(a is None for a in actions[first:])


def test_tiny_act_background_inference_never_starves(tmp_path):
    ckpt = make_tiny_act_checkpoint(tmp_path / 'act', JOINTS, {'front': CAM}, chunk_size=20)
    loaded = load_policy(str(ckpt))
    engine = ChunkedPolicyEngine(loaded, check_features(loaded, JOINTS, ['front']), task='t')
    assert engine.mode == 'blend' and engine.queue_threshold == 10
    with engine:
        actions = _pull(engine, 90, CAM)
    assert _starved_after_first(actions) <= LOADED_STARVED and engine.starved <= LOADED_STARVED
    assert engine.chunks >= 5
    assert all(np.isfinite(list(a.values())).all() for a in actions if a is not None)
    assert set(next(a for a in actions if a is not None)) == set(JOINTS)


def test_tiny_diffusion_loads_by_path_and_never_starves(tmp_path):
    pytest.importorskip('diffusers', reason="lerobot's Diffusion policy needs the 'diffusion' extra")
    from rollout_ros.policy.tiny_checkpoint import make_tiny_diffusion_checkpoint

    ckpt = make_tiny_diffusion_checkpoint(tmp_path / 'diffusion', JOINTS, {'front': CAM})
    loaded = load_policy(str(ckpt))
    assert loaded.policy_type == 'diffusion' and loaded.n_action_steps == 12
    engine = ChunkedPolicyEngine(loaded, check_features(loaded, JOINTS, ['front']), task='t')
    assert engine.mode == 'blend'
    with engine:
        actions = _pull(engine, 90, CAM)
    assert _starved_after_first(actions) <= LOADED_STARVED and engine.starved <= LOADED_STARVED
    assert engine.chunks >= 5


def test_no_module_imports_rclpy():
    import rollout_ros.core.action_queue as a
    import rollout_ros.core.interpolation as b
    import rollout_ros.policy.chunked_engine as c

    for mod in (a, b, c):
        assert 'rclpy' not in inspect.getsource(mod)


def test_queue_tells_waiting_from_starved():
    q = ActionQueue()
    assert q.pop() is None and (q.waiting, q.starved) == (1, 0)  # no chunk yet: waiting
    q.merge(np.zeros((2, 3)), q.consumed)
    assert q.pop() is not None and q.pop() is not None
    assert q.pop() is None and (q.waiting, q.starved) == (1, 1)  # ran dry: starved
    q.clear()
    assert q.pop() is None and (q.waiting, q.starved) == (2, 1)  # after a reset: waiting again
