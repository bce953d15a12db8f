"""Bounded sample windows for latency and jitter figures."""

import threading
from collections import deque

import numpy as np

# About two hours of ticks at 30 Hz; older samples fall out so a 24/7 run
# keeps constant memory while short runs report over every sample.
DEFAULT_WINDOW = 200_000


class SampleWindow:
    """Written by one thread (the loop, an inference thread), read by others
    (status, summaries): reads take a consistent copy under the lock."""

    def __init__(self, maxlen: int = DEFAULT_WINDOW):
        self._samples = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.count = 0

    def add(self, value: float) -> None:
        with self._lock:
            self._samples.append(float(value))
            self.count += 1

    def __len__(self) -> int:
        return len(self._samples)

    def values(self) -> np.ndarray:
        with self._lock:
            return np.array(self._samples, dtype=float)

    def percentile(self, q: float) -> float:
        values = self.values()
        return float(np.percentile(values, q)) if values.size else 0.0

    def max(self) -> float:
        values = self.values()
        return float(values.max()) if values.size else 0.0
