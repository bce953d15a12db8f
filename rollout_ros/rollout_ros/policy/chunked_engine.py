# SPDX-License-Identifier: Apache-2.0
"""Background chunked inference: the control loop pops, a thread keeps the queue full.

The loop calls ``submit_observation`` and ``next_action`` every tick; neither
waits for the network. A worker thread starts the next chunk as soon as the
queue falls to ``queue_threshold`` and a fresh observation is available, so
a policy whose chunk takes longer than a tick (ACT, Diffusion, VLAs) never
stalls the loop as long as a chunk arrives before the queue runs dry.

Two merge modes, chosen from the policy:

* RTC policies (pi0/pi05/smolvla: ``supports_rtc()`` and a
  ``predict_action_chunk(..., inference_delay, prev_chunk_left_over)``)
  inpaint the new chunk onto the plan still being executed, so the new chunk
  simply replaces the queue (``replace``).
* Others (ACT, Diffusion) know nothing of the current plan; the seam between
  plans is faded over ``blend_steps`` actions (``blend``).

Where this differs from lerobot's RTC engine, and why:

* ``inference_delay`` is the 95th percentile of the last ``delay_window``
  inference durations measured in control ticks (the loop's pop calls), not
  the all-time maximum latency: a cold-start spike is forgotten after a few
  chunks instead of over-constraining every later one.
* The number of actions skipped on merge is what the loop actually executed
  while the chunk was computed (see ``ActionQueue``), never ceil(latency*fps):
  after a reset or a starved spell the arm resumes where it is.
* The RTC prefix is padded to the chunk length by holding its last action,
  not with zeros, which in normalised space is the dataset mean: a zero tail
  pulls the new chunk towards the mean pose inside the execution horizon.

Spaces: the queue holds robot units (postprocessed, what the servos get).
The RTC prefix must be in the policy's own output space (what
``predict_action_chunk`` returns, before the postprocessor): normalised,
and for relative-action policies relative to the current state. It is
derived from the robot-unit queue at each inference, through the
preprocessor's action normaliser (and lerobot's re-anchoring for relative
actions), because the queue is the plan the arm really follows: blended,
clipped or re-anchored rows would not match a cached copy of raw outputs.
"""

from __future__ import annotations

import inspect
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
from lerobot.utils.constants import ACTION

from rollout_ros.core.action_queue import BLEND, REPLACE, ActionQueue
from rollout_ros.core.stats import SampleWindow

from .acceleration import autocast_factory
from .loading import FeatureBinding, LoadedPolicy
from .sync_engine import ObservationBatcher

logger = logging.getLogger(__name__)

# Policies whose predict_action_chunk wants a (batch, n_obs_steps, ...) time
# axis on every observation tensor instead of reading its own obs queue.
_OBS_HISTORY_TYPES = ('diffusion',)
# Fallback wake-up of the worker; normally woken by submit/pop.
_IDLE_WAIT_S = 0.05
_ERROR_RETRY_S = 0.2
_JOIN_TIMEOUT_S = 5.0


def supports_rtc(policy) -> bool:
    """Whether ``policy`` declares RTC and accepts the RTC keyword arguments."""
    declared = getattr(policy, 'supports_rtc', None)
    if not callable(declared) or not declared():
        return False
    try:
        inspect.signature(policy.predict_action_chunk).bind(object(), inference_delay=0, prev_chunk_left_over=None)
    except (TypeError, ValueError):
        return False
    return True


def hold_pad(rows: np.ndarray, length: int) -> np.ndarray:
    """``rows`` cut or extended to ``length`` by repeating the last row."""
    rows = np.asarray(rows)[:length]
    if len(rows) == 0:
        raise ValueError('cannot hold-pad an empty leftover')
    if len(rows) == length:
        return rows
    return np.concatenate([rows, np.repeat(rows[-1:], length - len(rows), axis=0)])


@dataclass
class _Observation:
    seq: int
    values: list[dict]  # oldest first; one entry unless the policy wants history
    task: str
    obs_index: int  # queue.consumed when the observation was taken
    obs_tick: int  # queue.requests at the same moment
    tag: object = None  # the caller's, handed back with the chunk (on_chunk)


class ChunkedPolicyEngine:
    """One policy, one robot, one background inference thread.

    ``queue_threshold`` defaults to half a chunk: the rest of the chunk is
    the latency budget, which must exceed one inference (in ticks).
    ``execution_horizon`` (RTC: how far into the new chunk the leftover
    guides it) defaults to the queue threshold, the leftover's length when an
    inference starts, and at least 10 (lerobot's default). Guidance is full
    for the first ``inference_delay`` actions and fades out by the horizon;
    a horizon no longer than the delay (10 vs a 300 ms chunk at 30 Hz) leaves
    no fade at all, and the first executed action jumps to the raw chunk.
    ``reset`` empties the queue but keeps the measured delays: inference
    latency belongs to the model and the machine, not to the episode, and the
    first chunk after a reset needs no estimate anyway (nothing to continue).

    ``on_chunk(chunk, first_index, tag)`` is called on the worker thread
    after each merge with the chunk as computed (robot units, row 0 planned
    for consumed-index ``first_index``) and the ``tag`` of the observation
    it came from: the policy node publishes chunks with it.
    """

    def __init__(
        self,
        loaded: LoadedPolicy,
        binding: FeatureBinding,
        queue_threshold: int | None = None,
        execution_horizon: int | None = None,
        max_guidance_weight: float = 10.0,
        prefix_attention_schedule: str = 'LINEAR',
        task: str = '',
        fps: float | None = None,
        blend_steps: int = 10,
        delay_window: int = 10,
        max_consecutive_errors: int = 3,
        on_chunk=None,
    ) -> None:
        self.loaded = loaded
        self.binding = binding
        self.task = task
        self.fps = float(fps or loaded.fps or 30)
        self.chunk_len = int(loaded.chunk_size or loaded.n_action_steps or 0)
        if self.chunk_len <= 0:
            raise ValueError(f'policy {loaded.policy_type!r} reports no chunk_size/n_action_steps')
        if queue_threshold is None:
            queue_threshold = max(1, self.chunk_len // 2)
        if not 0 <= queue_threshold < self.chunk_len:
            raise ValueError(f'queue_threshold must be in [0, {self.chunk_len}), got {queue_threshold}')
        self.queue_threshold = int(queue_threshold)
        if delay_window < 1:
            raise ValueError(f'delay_window must be >= 1, got {delay_window}')
        self.max_consecutive_errors = max(1, int(max_consecutive_errors))
        self.on_chunk = on_chunk

        policy = loaded.policy
        self.rtc = supports_rtc(policy)
        self.mode = REPLACE if self.rtc else BLEND
        if execution_horizon is None:
            execution_horizon = min(self.chunk_len, max(10, self.queue_threshold))
        self.execution_horizon = int(execution_horizon)
        self._warned_horizon = False
        if self.rtc:
            self._configure_rtc(self.execution_horizon, max_guidance_weight, prefix_attention_schedule)
        self.queue = ActionQueue(blend_steps=blend_steps)
        self._batcher = ObservationBatcher(loaded, binding)
        self._action_names = list(binding.action_order)
        self._history_len = 0
        if loaded.policy_type in _OBS_HISTORY_TYPES:
            self._history_len = int(getattr(loaded.config, 'n_obs_steps', 1) or 1)
        self._device = torch.device(loaded.device)
        self._autocast = autocast_factory(self._device, loaded.use_amp)
        # RTC guidance differentiates through the denoiser (torch.enable_grad
        # inside); tensors made under inference_mode cannot join autograd.
        self._grad_mode = torch.no_grad if self.rtc else torch.inference_mode
        self._normalizer, self._relative = self._action_steps(loaded.preprocessor)

        self._obs_lock = threading.Lock()
        self._merge_lock = threading.Lock()
        self._obs: _Observation | None = None
        self._frames: deque[dict] = deque(maxlen=max(1, self._history_len))
        self._seq = 0
        self._used_seq = 0
        self._epoch = 0
        self._needs_policy_reset = True
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

        self._tick_delays: deque[int] = deque(maxlen=int(delay_window))
        self._first_latency_s: float | None = None
        self.chunk_latency_ms = SampleWindow()
        self.inference_delays = SampleWindow()
        self.chunks = 0
        self.error: BaseException | None = None
        self.failed = False

    @property
    def delays(self) -> SampleWindow:
        """Actions executed while each chunk was computed (= skipped from it)."""
        return self.queue.delays

    # ------------------------------------------------------------ setup
    def _configure_rtc(self, execution_horizon: int, max_guidance_weight: float, schedule: str) -> None:
        from lerobot.configs import RTCAttentionSchedule
        from lerobot.policies.rtc.configuration_rtc import RTCConfig

        names = [s.name for s in RTCAttentionSchedule]
        if str(schedule).upper() not in names:
            raise ValueError(f'prefix_attention_schedule must be one of {names}, got {schedule!r}')
        if not 0 < execution_horizon <= self.chunk_len:
            raise ValueError(f'execution_horizon must be in [1, {self.chunk_len}], got {execution_horizon}')
        policy = self.loaded.policy
        config = getattr(policy, 'config', None)
        if config is not None and hasattr(config, 'rtc_config'):
            config.rtc_config = RTCConfig(
                enabled=True,
                prefix_attention_schedule=RTCAttentionSchedule[str(schedule).upper()],
                max_guidance_weight=float(max_guidance_weight),
                execution_horizon=int(execution_horizon),
            )
            init = getattr(policy, 'init_rtc_processor', None)
            if callable(init):
                init()

    @staticmethod
    def _action_steps(preprocessor):
        from lerobot.processor import NormalizerProcessorStep, RelativeActionsProcessorStep

        steps = getattr(preprocessor, 'steps', []) or []
        normalizer = next((s for s in steps if isinstance(s, NormalizerProcessorStep)), None)
        relative = next(
            (s for s in steps if isinstance(s, RelativeActionsProcessorStep) and getattr(s, 'enabled', 0)),
            None,
        )
        return normalizer, relative

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name='chunked-inference', daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=_JOIN_TIMEOUT_S)
            if self._thread.is_alive():
                logger.warning('inference thread still running %.0f s after stop', _JOIN_TIMEOUT_S)
            self._thread = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        """Episode start: empty the queue, discard any chunk in flight, wait for a new observation.

        Never blocks on a running inference. The policy and processor reset
        is left to the worker, before its next inference, so it cannot
        change state under a call in progress.
        """
        with self._merge_lock:
            self._epoch += 1
            self.queue.clear()
        with self._obs_lock:
            self._used_seq = self._seq
            self._obs = None
            self._frames.clear()
            self._needs_policy_reset = True
        self._wake.set()

    # ------------------------------------------------------------ loop side
    def submit_observation(
        self,
        state: dict[str, float],
        images: dict[str, np.ndarray],
        task: str | None = None,
        tag: object = None,
    ) -> None:
        """Latest observation for the next inference; validates (ObservationError) and copies."""
        values = self._batcher.raw_values(state, images)
        # The caller may reuse its frame buffers; inference reads them later.
        values = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in values.items()}
        obs_index, obs_tick = self.queue.consumed, self.queue.requests
        with self._obs_lock:
            self._seq += 1
            self._frames.append(values)
            self._obs = _Observation(
                seq=self._seq,
                values=list(self._frames),
                task=self.task if task is None else task,
                obs_index=obs_index,
                obs_tick=obs_tick,
                tag=tag,
            )
        self._wake.set()

    def advance_to(self, consumed: int) -> None:
        """Follow a loop in another process: it has executed ``consumed`` actions of this queue's plans.

        The queue here then mirrors the remote one (same chunks, merged in the
        same order), so the threshold, the RTC prefix and the delay estimate
        work as in-process. One call per remote tick; a tick on which the
        remote queue was dry is counted when this one is dry too (otherwise
        the remote side only lacks a chunk still on its way).
        """
        popped = False
        while self.queue.consumed < consumed and self.queue.pop() is not None:
            popped = True
        if not popped and self.queue.size == 0:
            self.queue.pop()
        if self.queue.size <= self.queue_threshold:
            self._wake.set()

    def warm_up(self, state: dict[str, float], images: dict[str, np.ndarray], calls: int) -> list[float]:
        """Chunk inferences on this engine's own call path, before the thread starts; ms per call.

        torch.compile builds a graph per call shape: the chunked path (a
        stacked observation history, the RTC arguments with and without a
        prefix, a new inference_delay) must be compiled here, not on the
        first real chunk. Nothing is queued.
        """
        values = self._batcher.raw_values(state, images)
        obs = _Observation(seq=0, values=[values], task=self.task, obs_index=0, obs_tick=0)
        self._reset_policy_state()
        times, chunk = [], None
        for i in range(max(1, int(calls))):
            t0 = time.perf_counter()
            leftover = np.empty((0, len(self._action_names))) if chunk is None else chunk
            chunk = self._predict(obs, leftover, None, delay=min(i, self.chunk_len))
            times.append((time.perf_counter() - t0) * 1e3)
        self._needs_policy_reset = True
        return times

    # Counted by the queue itself, so every consumer of one reports the same way.
    starved = property(lambda self: self.queue.starved, doc='Dry pops after the first chunk (held ticks).')
    waiting_ticks = property(lambda self: self.queue.waiting, doc='Dry pops before the first chunk.')

    def next_action(self) -> dict[str, float] | None:
        """Pop one action by joint name; None when starved (hold the last command)."""
        if self.failed:
            raise RuntimeError(f'policy inference failed: {self.error!r}') from self.error
        row = self.queue.pop()
        if self.queue.size <= self.queue_threshold:
            self._wake.set()
        if row is None:
            return None
        return dict(zip(self._action_names, row.tolist()))

    def inference_delay_estimate(self) -> int:
        """Ticks the next chunk will likely take: p95 of recent measured ones, else the first latency."""
        if self._tick_delays:
            ticks = float(np.percentile(list(self._tick_delays), 95))
        elif self._first_latency_s is not None:
            ticks = self._first_latency_s * self.fps
        else:
            ticks = 0.0
        return int(min(max(math.ceil(ticks - 1e-9), 0), self.chunk_len))

    def stats(self) -> dict:
        return {
            'mode': self.mode,
            'chunks': self.chunks,
            'starved': self.starved,
            'waiting_ticks': self.waiting_ticks,
            'stale_chunks': self.queue.stale_chunks,
            'chunk_latency_p50_ms': round(self.chunk_latency_ms.percentile(50), 3),
            'chunk_latency_p99_ms': round(self.chunk_latency_ms.percentile(99), 3),
            'delay_p50': self.delays.percentile(50),
            'delay_max': self.delays.max(),
            'inference_delay_estimate': self.inference_delay_estimate(),
        }

    # ------------------------------------------------------------ worker side
    def _take_job(self) -> tuple[_Observation, int] | None:
        with self._obs_lock:
            obs = self._obs
            if obs is None or obs.seq == self._used_seq or self.queue.size > self.queue_threshold:
                return None
            self._used_seq = obs.seq
            return obs, self._epoch

    def _run(self) -> None:
        errors = 0
        while not self._stop.is_set():
            job = self._take_job()
            if job is None:
                self._wake.wait(_IDLE_WAIT_S)
                self._wake.clear()
                continue
            try:
                self._infer(*job)
                errors = 0
            except Exception as exc:  # noqa: BLE001 - surfaced to the loop via next_action
                errors += 1
                self.error = exc
                logger.exception('chunk inference failed (%d/%d)', errors, self.max_consecutive_errors)
                if errors >= self.max_consecutive_errors:
                    self.failed = True
                    return
                self._stop.wait(_ERROR_RETRY_S)

    def _infer(self, obs: _Observation, epoch: int) -> None:
        if self._needs_policy_reset:
            self._needs_policy_reset = False
            self._reset_policy_state()
        t0 = time.perf_counter()
        start, leftover = self.queue.snapshot_for_inference(obs.obs_index)
        holding = self.queue.last_action
        cold = len(leftover) == 0 and holding is None
        delay = None
        if self.rtc:
            delay = self.inference_delay_estimate()
            if delay >= self.execution_horizon and not self._warned_horizon:
                self._warned_horizon = True
                logger.warning(
                    'inference takes ~%d actions but execution_horizon is %d: chunk seams will not '
                    'be smoothed; raise execution_horizon (and queue_threshold) above it',
                    delay,
                    self.execution_horizon,
                )
            self.inference_delays.add(delay)
        chunk = self._predict(obs, leftover, holding, delay)
        latency_s = time.perf_counter() - t0

        with self._merge_lock:
            if epoch != self._epoch:
                return  # planned for a robot state from before the reset
            self.queue.merge(chunk, start, self.mode)
            ticks = self.queue.requests - obs.obs_tick
        if self.on_chunk is not None:
            self.on_chunk(chunk, start, obs.tag)
        self.chunks += 1
        self.chunk_latency_ms.add(latency_s * 1e3)
        if self._first_latency_s is None:
            self._first_latency_s = latency_s
        if not cold:
            # Only chunks that continued a plan measure how long the loop
            # waited on them; at a cold start the loop may not be running yet.
            self._tick_delays.append(ticks)

    def _reset_policy_state(self) -> None:
        self.loaded.policy.reset()
        self.loaded.preprocessor.reset()
        self.loaded.postprocessor.reset()

    def _predict(self, obs: _Observation, leftover: np.ndarray, holding, delay: int | None) -> np.ndarray:
        """One chunk in robot units, (steps, action_dim); ``delay`` is used by RTC policies only."""
        with self._grad_mode(), self._autocast():
            batch = self._batch(obs)
            if self.rtc:
                actions = self.loaded.policy.predict_action_chunk(
                    batch, inference_delay=delay, prev_chunk_left_over=self._prefix(leftover, holding)
                )
            else:
                actions = self.loaded.policy.predict_action_chunk(batch)
            actions = self.loaded.postprocessor(actions)
        chunk = actions.detach().float().cpu().numpy()
        return chunk[0] if chunk.ndim == 3 else chunk

    def _batch(self, obs: _Observation) -> dict:
        if not self._history_len:
            return self._batcher.batch(obs.values[-1], obs.task)
        frames = list(obs.values)
        # Too few frames yet (just reset): repeat the oldest, as lerobot's own
        # observation queues do when they are first filled.
        frames = [frames[0]] * (self._history_len - len(frames)) + frames
        batches = [self._batcher.batch(v, obs.task) for v in frames]
        out = dict(batches[-1])
        for key, value in out.items():
            if isinstance(value, torch.Tensor) and key.startswith('observation.'):
                out[key] = torch.stack([b[key] for b in batches], dim=1)
        return out

    def _prefix(self, leftover: np.ndarray, holding: np.ndarray | None) -> torch.Tensor | None:
        """The RTC prefix in the policy's output space, hold-padded to the chunk length."""
        if len(leftover) == 0:
            if holding is None:
                return None
            # Starved: the arm is standing at its last command, which is
            # exactly what it will keep doing until the new chunk lands.
            leftover = holding[None]
        rows = torch.as_tensor(hold_pad(leftover, self.chunk_len), dtype=torch.float32, device=self._device)
        return self._to_policy_space(rows)

    def _to_policy_space(self, rows: torch.Tensor) -> torch.Tensor:
        from lerobot.processor import TransitionKey, create_transition

        if self._relative is not None:
            from lerobot.policies.rtc import reanchor_relative_rtc_prefix

            state = self._relative.get_cached_state()
            if state is not None:
                return reanchor_relative_rtc_prefix(
                    prev_actions_absolute=rows,
                    current_state=state,
                    relative_step=self._relative,
                    normalizer_step=self._normalizer,
                    policy_device=self._device,
                )
        if self._normalizer is None or ACTION not in getattr(self._normalizer, 'features', {}):
            return rows
        return self._normalizer(create_transition(action=rows))[TransitionKey.ACTION].to(self._device)
