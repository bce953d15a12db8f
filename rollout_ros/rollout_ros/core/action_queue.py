# SPDX-License-Identifier: Apache-2.0
"""Actions waiting to be executed, refilled by chunks from background inference.

Time is counted in executed actions: ``consumed`` only moves when the loop
actually pops an action, never while it holds position on an empty queue.
A chunk computed from the observation taken at consumed-index ``i`` plans
actions for indices ``i, i+1, ...``; when it lands at consumed-index ``j``,
its first ``j - i`` actions are in the past and are dropped. That count is
measured, not predicted from wall-clock latency, so:

* a queue that ran dry during inference skips only what was really executed
  (the arm held still meanwhile, so the rest of the chunk is still ahead);
* a cold start (empty queue, nothing executed since the last ``clear``)
  skips nothing: a standing arm starts at the chunk's first action.

Rows are plain numpy vectors in the policy's action order, in robot units.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from rollout_ros.core.stats import SampleWindow

REPLACE = 'replace'
BLEND = 'blend'
MODES = (REPLACE, BLEND)


class ActionQueue:
    """Thread-safe: the control loop pops, the inference thread snapshots and merges.

    ``history`` executed actions are kept so an inference can start from an
    observation a tick or two older than the snapshot and still be handed
    the plan aligned with that observation.
    """

    def __init__(self, blend_steps: int = 10, history: int = 64):
        if blend_steps < 0:
            raise ValueError(f'blend_steps must be >= 0, got {blend_steps}')
        self.blend_steps = int(blend_steps)
        self._lock = threading.Lock()
        # Replaced on merge, never written in place, so rows handed out
        # (history, snapshots) stay valid without copying on every pop.
        self._rows = np.empty((0, 0))
        self._head = 0
        self._consumed = 0
        self._requests = 0
        self._history: deque[np.ndarray] = deque(maxlen=history)
        self._last: np.ndarray | None = None
        # Past-actions skipped per merged chunk, for reporting.
        self.delays = SampleWindow()
        self.stale_chunks = 0
        # Dry pops: before the first chunk since a clear the loop is waiting
        # for the policy; after it the queue ran dry (a starved tick).
        self.starved = 0
        self.waiting = 0
        self._merged_since_clear = False

    @property
    def size(self) -> int:
        with self._lock:
            return len(self._rows) - self._head

    @property
    def consumed(self) -> int:
        with self._lock:
            return self._consumed

    @property
    def requests(self) -> int:
        """Pop calls, dry ones included: elapsed control ticks, whatever the queue held."""
        with self._lock:
            return self._requests

    @property
    def last_action(self) -> np.ndarray | None:
        """The last executed action since ``clear``: where a starved arm is holding."""
        with self._lock:
            return None if self._last is None else self._last.copy()

    def pop(self) -> np.ndarray | None:
        """Next action, or None when dry (the caller holds its last command)."""
        with self._lock:
            self._requests += 1
            if self._head >= len(self._rows):
                if self._merged_since_clear:
                    self.starved += 1
                else:
                    self.waiting += 1
                return None
            row = self._rows[self._head]
            self._head += 1
            self._consumed += 1
            self._history.append(row)
            self._last = row
            return row.copy()

    def clear(self) -> None:
        """Forget queued and executed actions; ``consumed`` keeps counting so indices stay unique."""
        with self._lock:
            self._rows = np.empty((0, 0))
            self._head = 0
            self._history.clear()
            self._last = None
            self._merged_since_clear = False

    def snapshot_for_inference(self, obs_index: int | None = None) -> tuple[int, np.ndarray]:
        """(start_index, leftover): the plan from ``start_index`` on that a new chunk must continue.

        With ``obs_index`` (the consumed-index when the observation was taken)
        the leftover starts there, including actions executed since, because
        that is the instant the new chunk's first action belongs to.
        """
        with self._lock:
            pending = self._rows[self._head :]
            back = 0 if obs_index is None else self._consumed - obs_index
            if 0 < back <= len(self._history):
                executed = np.stack(list(self._history)[-back:])
                if len(pending):
                    return obs_index, np.concatenate([executed, pending])
                return obs_index, executed
            return self._consumed, pending.copy()

    def merge(self, chunk: np.ndarray, obs_index: int, mode: str = REPLACE) -> int:
        """Merge a chunk planned from consumed-index ``obs_index``; returns the actions it skipped.

        ``replace``: the chunk already continues the leftover (RTC conditioned
        on it), so what is still ahead of it becomes the queue.
        ``blend``: the chunk knows nothing of the current plan; the gap between
        them is faded out over ``blend_steps`` actions instead of jumped.
        """
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
        chunk = np.asarray(chunk, dtype=float)
        if chunk.ndim != 2:
            raise ValueError(f'chunk must be (steps, action_dim), got shape {chunk.shape}')
        with self._lock:
            pending = self._rows[self._head :]
            if len(pending) and pending.shape[1] != chunk.shape[1]:
                raise ValueError(f'chunk action_dim {chunk.shape[1]} != queued {pending.shape[1]}')
            delay = max(0, self._consumed - int(obs_index))
            self.delays.add(delay)
            self._merged_since_clear = True
            ahead = chunk[delay:]
            if not len(ahead):
                # Entirely in the past; the current plan is still the best one.
                self.stale_chunks += 1
                return delay
            if mode == BLEND:
                ahead = self._blend(pending, ahead)
            self._rows = np.array(ahead, dtype=float)
            self._head = 0
            return delay

    def _blend(self, pending: np.ndarray, ahead: np.ndarray) -> np.ndarray:
        # Blend the offset between the plans rather than the plans themselves,
        # so the fade lasts blend_steps even when the old plan is shorter: past
        # its end its last offset is held, and an empty queue contributes where
        # the arm is holding. Nothing executed yet (cold start) -> no offset.
        n = min(self.blend_steps, len(ahead))
        if n == 0:
            return ahead
        if len(pending):
            offset = pending[:n] - ahead[: len(pending[:n])]
        elif self._last is not None:
            offset = (self._last - ahead[0])[None]
        else:
            return ahead
        if len(offset) < n:
            offset = np.concatenate([offset, np.repeat(offset[-1:], n - len(offset), axis=0)])
        keep_old = 1.0 - np.arange(1, n + 1) / (n + 1)
        out = ahead.copy()
        out[:n] += keep_old[:, None] * offset
        return out
