"""Bounded sample windows for latency and jitter figures."""

from collections import deque

import numpy as np

# About two hours of ticks at 30 Hz; older samples fall out so a 24/7 run
# keeps constant memory while short runs report over every sample.
DEFAULT_WINDOW = 200_000


class SampleWindow:

    def __init__(self, maxlen: int = DEFAULT_WINDOW):
        self._samples = deque(maxlen=maxlen)
        self.count = 0

    def add(self, value: float) -> None:
        self._samples.append(float(value))
        self.count += 1

    def __len__(self) -> int:
        return len(self._samples)

    def percentile(self, q: float) -> float:
        if not self._samples:
            return 0.0
        return float(np.percentile(np.fromiter(self._samples, float), q))

    def max(self) -> float:
        return max(self._samples) if self._samples else 0.0
