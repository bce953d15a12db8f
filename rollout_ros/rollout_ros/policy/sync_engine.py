# SPDX-License-Identifier: Apache-2.0
"""Synchronous, name-keyed inference on top of a loaded LeRobot policy.

Mirrors lerobot's ``SyncInferenceEngine.get_action``: the frame is built with
lerobot's ``build_inference_frame`` (HWC uint8 -> CHW float in [0, 1], batch
dim, task string), then preprocessor -> ``policy.select_action`` ->
postprocessor under ``torch.inference_mode()``. Robot joints are addressed by
name on both sides, so the robot's joint order never matters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from lerobot.policies.utils import build_inference_frame, make_robot_action
from lerobot.utils.constants import ACTION, OBS_IMAGES, OBS_STATE

from .acceleration import autocast_factory
from .loading import FeatureBinding, LoadedPolicy


class ObservationError(ValueError):
    """An observation that does not fit the bound policy (missing joint, wrong frame shape...)."""


@dataclass
class InferenceTiming:
    preprocess_ms: float = 0.0
    model_ms: float = 0.0
    postprocess_ms: float = 0.0
    # None when the policy type gives no way to tell (no known action queue).
    ran_model: bool | None = None

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.model_ms + self.postprocess_ms


def _will_run_model(policy) -> bool | None:
    """Whether ``select_action`` is about to run the network rather than pop a cached step.

    lerobot exposes no public flag for this; chunking policies keep their
    pending actions in ``_action_queue`` (ACT) or ``_queues[ACTION]``
    (diffusion, vqbet...), and ACT's temporal ensembling runs every step.
    """
    if getattr(policy.config, 'temporal_ensemble_coeff', None) is not None:
        return True
    queue = getattr(policy, '_action_queue', None)
    if queue is None:
        queue = (getattr(policy, '_queues', None) or {}).get(ACTION)
    return None if queue is None else len(queue) == 0


class ObservationBatcher:
    """Robot observation by joint/camera name -> the policy's preprocessed batch.

    Shared by the synchronous and the chunked engine so both feed a policy
    exactly the same tensors.
    """

    def __init__(self, loaded: LoadedPolicy, binding: FeatureBinding) -> None:
        self.loaded = loaded
        self.binding = binding
        self.device = torch.device(loaded.device)
        # Keyed by the policy's image keys, so build_dataset_frame looks frames
        # up by the policy's camera suffix; the binding says which of our
        # cameras supplies each one.
        self.ds_features: dict[str, dict] = {}
        if binding.state_order:
            self.ds_features[OBS_STATE] = {
                'dtype': 'float32',
                'shape': (len(binding.state_order),),
                'names': list(binding.state_order),
            }
        for key, (c, h, w) in binding.image_shapes.items():
            self.ds_features[key] = {
                'dtype': 'image',
                'shape': (h, w, c),
                'names': ['height', 'width', 'channels'],
            }
        self.action_features = {ACTION: {'names': list(binding.action_order)}}

    def raw_values(self, state: dict[str, float], images: dict[str, np.ndarray]) -> dict:
        """Validated values keyed as build_dataset_frame wants them; raises ObservationError."""
        missing = [n for n in self.binding.state_order if n not in state]
        if missing:
            raise ObservationError(f'state is missing joints {missing} (got {sorted(state)})')
        values: dict = {name: state[name] for name in self.binding.state_order}
        for key, cam in self.binding.image_sources.items():
            if cam not in images:
                raise ObservationError(f'no frame from camera {cam!r} (got {sorted(images)})')
            frame = np.asarray(images[cam])
            c, h, w = self.binding.image_shapes[key]
            if frame.shape != (h, w, c):
                raise ObservationError(
                    f"camera {cam!r} frame has shape {frame.shape} (HxWxC) but the policy's {key} expects "
                    f"({h}, {w}, {c}): set the camera's resolution to {w}x{h}."
                )
            if frame.dtype != np.uint8:
                raise ObservationError(f'camera {cam!r} frame has dtype {frame.dtype}; expected uint8 RGB')
            # torch.from_numpy rejects negative strides (e.g. a BGR->RGB view).
            values[key.removeprefix(f'{OBS_IMAGES}.')] = np.ascontiguousarray(frame)
        return values

    def batch(self, values: dict, task: str) -> dict:
        """Preprocessed model input from ``raw_values`` output (call under inference/no-grad mode)."""
        frame = build_inference_frame(values, self.device, self.ds_features, task=task)
        return self.loaded.preprocessor(frame)


class SyncPolicyEngine:
    """Runs one policy for one robot; the policy's action queue lives in ``loaded.policy``,
    so give each engine its own ``LoadedPolicy``.
    """

    def __init__(self, loaded: LoadedPolicy, binding: FeatureBinding, task: str = '') -> None:
        self.loaded = loaded
        self.binding = binding
        self.task = task
        self.last_timing = InferenceTiming()
        self._device = torch.device(loaded.device)
        self._batcher = ObservationBatcher(loaded, binding)
        self._autocast = autocast_factory(self._device, loaded.use_amp)
        # ACT pops a queued step without looking at the observation, and its
        # preprocessor keeps no state: the per-tick image normalisation lerobot
        # still runs (milliseconds at 640x480, under the GIL) can be skipped.
        # Policies that queue observations (diffusion) need every one.
        self._obs_free_cached_steps = loaded.policy_type == 'act'
        # A queue left over from an earlier user of the policy would feed stale actions.
        self.reset()

    def reset(self) -> None:
        """Drop cached action chunks and processor state (call at episode start)."""
        self.loaded.policy.reset()
        self.loaded.preprocessor.reset()
        self.loaded.postprocessor.reset()

    def infer(
        self, state: dict[str, float], images: dict[str, np.ndarray], task: str | None = None
    ) -> dict[str, float]:
        """One control step: observation by joint/camera name in, action by joint name out."""
        policy = self.loaded.policy
        t0 = time.perf_counter()
        with torch.inference_mode(), self._autocast():
            values = self._batcher.raw_values(state, images)  # validated on every tick
            ran_model = _will_run_model(policy)
            if ran_model is False and self._obs_free_cached_steps:
                batch = {}
            else:
                batch = self._batcher.batch(values, self.task if task is None else task)
            t1 = time.perf_counter()
            action = policy.select_action(batch)
            if self._device.type == 'cuda':
                # Kernels are async; without this model_ms would only be launch time.
                torch.cuda.synchronize(self._device)
            t2 = time.perf_counter()
            action = self.loaded.postprocessor(action)
        result = make_robot_action(action, self._batcher.action_features)
        t3 = time.perf_counter()
        self.last_timing = InferenceTiming(
            preprocess_ms=(t1 - t0) * 1e3,
            model_ms=(t2 - t1) * 1e3,
            postprocess_ms=(t3 - t2) * 1e3,
            ran_model=ran_model,
        )
        return result
