# SPDX-License-Identifier: Apache-2.0
"""Episode statistics in LeRobot's format, computed with LeRobot's own functions."""

from __future__ import annotations

import numpy as np
from lerobot.datasets.compute_stats import (
    DEFAULT_QUANTILES,
    RunningQuantileStats,
    aggregate_stats,
    auto_downsample_height_width,
    compute_episode_stats,
    get_feature_stats,
)
from lerobot.utils.utils import flatten_dict, unflatten_dict

__all__ = ['ImageStats', 'aggregate_stats', 'columns_stats', 'image_stats', 'flat_episode_stats', 'stats_from_flat']


class ImageStats:
    """Per-channel image stats of an episode built while it is recorded, with
    LeRobot's RunningQuantileStats on frames downsampled as LeRobot does, so
    save_episode has nothing left to compute. Every `stride`-th frame is used
    (an update costs ~4 ms at 640x480; all frames of 3 cameras would eat a
    third of a core)."""

    def __init__(self, stride: int = 1):
        self.stride = max(1, int(stride))
        self.images = 0
        self._running = RunningQuantileStats()

    def offer(self, index: int, image_hwc: np.ndarray) -> None:
        if index % self.stride:
            return
        small = auto_downsample_height_width(image_hwc.transpose(2, 0, 1))
        self._running.update(small.transpose(1, 2, 0).reshape(-1, small.shape[0]))
        self.images += 1

    def result(self) -> dict | None:
        """Stats in [0, 1] with shape (C, 1, 1); count is the number of images used,
        as compute_episode_stats counts them."""
        if not self.images:
            return None
        stats = self._running.get_statistics()
        stats['count'] = np.array([self.images])
        return {k: v if k == 'count' else (v / 255.0).reshape(-1, 1, 1) for k, v in stats.items()}


def image_stats(samples: np.ndarray) -> dict:
    """Per-channel stats of (N, C, H, W) uint8 samples, in [0, 1] with shape (C, 1, 1),
    as compute_episode_stats reports them for image features."""
    stats = get_feature_stats(samples, axis=(0, 2, 3), keepdims=True, quantile_list=DEFAULT_QUANTILES)
    return {k: v if k == 'count' else np.squeeze(v / 255.0, axis=0) for k, v in stats.items()}


def columns_stats(columns: dict[str, np.ndarray], features: dict) -> dict:
    """Stats of the non-video columns of one episode."""
    plain = {k: v for k, v in columns.items() if features[k]['dtype'] not in ('video', 'image')}
    return compute_episode_stats(plain, {k: features[k] for k in plain})


def flat_episode_stats(ep_stats: dict) -> dict:
    """`stats/<feature>/<stat>` columns of an episodes-metadata row."""
    return flatten_dict({'stats': ep_stats})


def stats_from_flat(row: dict) -> dict:
    """Per-feature stats back from an episodes-metadata row (the inverse of flat_episode_stats)."""
    flat = {k: np.atleast_1d(np.asarray(v)) for k, v in row.items() if k.startswith('stats/') and v is not None}
    return unflatten_dict(flat).get('stats', {})
