# SPDX-License-Identifier: Apache-2.0
"""The feature dict of a rollout dataset, and the checks made on it and on frames."""

from __future__ import annotations

import numpy as np
from lerobot.utils.constants import DEFAULT_FEATURES

from rollout_ros.core.errors import ConfigError

IMAGE_PREFIX = 'observation.images.'
# Extras LeRobot discards. Their names must not start with 'observation' or
# 'action': lerobot's dataset_to_policy_features would feed them to policies.
EXECUTED_ACTION = 'executed.action'
STAMP_OBSERVATION = 'stamp.observation'
STAMP_ACTION_SENT = 'stamp.action_sent'
STAMP_CAMERA_PREFIX = 'stamp.camera.'
INTERVENTION = 'intervention'

_SCALAR = (1,)


def _vector(names: list[str], dtype: str = 'float32') -> dict:
    return {'dtype': dtype, 'shape': (len(names),), 'names': list(names)}


def _scalar(dtype: str) -> dict:
    return {'dtype': dtype, 'shape': _SCALAR, 'names': None}


def make_features(
    state_names: list[str],
    action_names: list[str],
    cameras: dict[str, tuple[int, int]],
    intervention: bool = False,
    timing: bool = True,
) -> dict:
    """LeRobot feature dict for a rollout; `cameras` maps name -> (height, width).
    Stamps are unix seconds (float64)."""
    for what, names in (('state_names', state_names), ('action_names', action_names)):
        if not names or len(set(names)) != len(names):
            raise ConfigError(what, f'needs distinct, non-empty names, got {list(names)}.')
    for cam, hw in cameras.items():
        if not cam or '/' in cam:
            raise ConfigError('cameras', f'camera name {cam!r} must be non-empty and without "/".')
        if len(hw) != 2 or min(hw) <= 0:
            raise ConfigError('cameras', f'camera {cam!r} needs (height, width), got {hw}.')
        if timing and 'image' in cam:
            # lerobot's aggregate_stats takes any feature whose name contains
            # "image" for a camera and rejects the stats of stamp.camera.<cam>.
            raise ConfigError(
                'cameras',
                f'camera name {cam!r} contains "image", which breaks lerobot\'s stats '
                f'for its stamp feature stamp.camera.{cam}.',
                'rename the camera (e.g. "top").',
            )
    features = {
        'observation.state': _vector(state_names),
        'action': _vector(action_names),
    }
    for cam, (h, w) in cameras.items():
        features[IMAGE_PREFIX + cam] = {
            'dtype': 'video',
            'shape': (int(h), int(w), 3),
            'names': ['height', 'width', 'channels'],
        }
    if intervention:
        features[INTERVENTION] = _scalar('bool')
    if timing:
        features[EXECUTED_ACTION] = _vector(action_names)
        features[STAMP_OBSERVATION] = _scalar('float64')
        features[STAMP_ACTION_SENT] = _scalar('float64')
        for cam in cameras:
            features[STAMP_CAMERA_PREFIX + cam] = _scalar('float64')
    return features


def user_features(features: dict) -> dict:
    """The features a caller supplies per frame (LeRobot's default columns removed)."""
    return {k: v for k, v in features.items() if k not in DEFAULT_FEATURES}


def video_keys(features: dict) -> list[str]:
    return [k for k, ft in features.items() if ft['dtype'] == 'video']


def _signature(ft: dict) -> tuple:
    names = ft.get('names')
    return ft['dtype'], tuple(ft['shape']), tuple(names) if isinstance(names, (list, tuple)) else names


def check_same_features(existing: dict, wanted: dict) -> None:
    """Raise ConfigError naming the first feature that differs (names, shapes, dtypes, camera sizes)."""
    existing, wanted = user_features(existing), user_features(wanted)
    missing = sorted(set(existing) - set(wanted))
    extra = sorted(set(wanted) - set(existing))
    if missing or extra:
        problem = 'the dataset and this recording have different features:'
        if missing:
            problem += f' only in the dataset {missing};'
        if extra:
            problem += f' only in this recording {extra};'
        raise ConfigError(
            'features',
            problem.rstrip(';') + '.',
            'record into a new dataset, or configure the same cameras, joints and extras '
            '(intervention, timing) as the dataset.',
        )
    for key in existing:
        (d0, s0, n0), (d1, s1, n1) = _signature(existing[key]), _signature(wanted[key])
        if d0 != d1:
            raise ConfigError(
                f'features.{key}', f'dtype is {d1} here but {d0} in the dataset.', 'record into a new dataset.'
            )
        if s0 != s1:
            what = 'camera size (height, width, channels)' if d0 == 'video' else 'shape'
            raise ConfigError(
                f'features.{key}',
                f'{what} is {s1} here but {s0} in the dataset.',
                'use the same camera resolution / joint set as the dataset, or a new dataset.',
            )
        if n0 != n1:
            raise ConfigError(
                f'features.{key}',
                f'names are {list(n1 or [])} here but {list(n0 or [])} in the dataset (order matters).',
                'use the same joints in the same order.',
            )


def coerce_value(key: str, ft: dict, value) -> np.ndarray:
    """A frame value as the array the dataset stores; scalars and lists are accepted
    for numeric features, images must be HxWx3 uint8."""
    if ft['dtype'] == 'video':
        if not (isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.shape == tuple(ft['shape'])):
            got = f'{type(value).__name__} {getattr(value, "dtype", "")} {getattr(value, "shape", "")}'.strip()
            raise ValueError(f'{key}: expected a uint8 image of shape {tuple(ft["shape"])} (HxWx3 RGB), got {got}')
        return value
    arr = np.asarray(value, dtype=ft['dtype'])
    shape = tuple(ft['shape'])
    if arr.shape != shape:
        if shape == _SCALAR and arr.shape == ():
            return arr.reshape(_SCALAR)
        raise ValueError(f'{key}: expected shape {shape}, got {arr.shape}')
    return arr


def check_frame_keys(frame: dict, features: dict) -> None:
    expected = set(features)
    got = set(frame)
    if got != expected:
        parts = []
        if expected - got:
            parts.append(f'missing {sorted(expected - got)}')
        if got - expected:
            parts.append(f'unknown {sorted(got - expected)}')
        raise ValueError('frame does not match the dataset features: ' + '; '.join(parts))
