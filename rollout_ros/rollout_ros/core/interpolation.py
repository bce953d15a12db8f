# SPDX-License-Identifier: Apache-2.0
"""Linear upsampling of policy actions to a faster command rate.

With multiplier N the servos get N commands per policy action (fps * N),
the last of which is the policy action itself, so recording can stay at the
policy's fps by keeping only ticks where ``emitted_policy_action`` is true.
The first action after a reset is sent alone: there is no previous command
to interpolate from, and ramping from an arbitrary zero would move the arm.
Actions may be numpy vectors or dicts by joint name; ``get`` returns the
same kind that was added.
"""

from __future__ import annotations

import numpy as np


class ActionInterpolator:
    def __init__(self, multiplier: int = 1):
        if int(multiplier) != multiplier or multiplier < 1:
            raise ValueError(f'multiplier must be an integer >= 1, got {multiplier}')
        self.multiplier = int(multiplier)
        self.reset()

    def reset(self) -> None:
        self._prev: np.ndarray | None = None
        self._buffer: list[np.ndarray] = []
        self._idx = 0
        self._names: list[str] | None = None
        self.emitted_policy_action = False

    def needs_new_action(self) -> bool:
        return self._idx >= len(self._buffer)

    def add(self, action) -> None:
        if isinstance(action, dict):
            self._names = list(action)
            vec = np.array([action[n] for n in self._names], dtype=float)
        else:
            self._names = None
            vec = np.array(action, dtype=float)
        if self._prev is None or self._prev.shape != vec.shape or self.multiplier == 1:
            self._buffer = [vec]
        else:
            steps = np.arange(1, self.multiplier + 1) / self.multiplier
            self._buffer = [self._prev + (vec - self._prev) * s for s in steps]
            # Exact, not prev + 1.0 * delta, so recorded actions equal the policy's bit for bit.
            self._buffer[-1] = vec
        self._prev = vec
        self._idx = 0

    def get(self):
        """Next command, or None when the current action is used up (add another)."""
        if self._idx >= len(self._buffer):
            self.emitted_policy_action = False
            return None
        vec = self._buffer[self._idx]
        self._idx += 1
        self.emitted_policy_action = self._idx == len(self._buffer)
        if self._names is not None:
            return {n: float(v) for n, v in zip(self._names, vec)}
        return vec.copy()
