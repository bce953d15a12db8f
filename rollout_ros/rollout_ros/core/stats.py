# SPDX-License-Identifier: Apache-2.0
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


def command_timing(times_s, period_s: float | None = None) -> dict:
    """How regular a command stream is where the robot receives it.

    `times_s` are the times (seconds, one clock) commands reached the bus. The
    period error of an interval is its distance from the period; a gap is an
    interval longer than two periods (the arm went a whole slot without a new
    goal). `period_s` None takes the median interval, which is the commanded
    period whenever most ticks are on time.
    """
    times = np.asarray(times_s, dtype=float)
    if times.size < 2:
        return {
            'commands': int(times.size),
            'rate_hz': 0.0,
            'period_err_p50_ms': 0.0,
            'period_err_p99_ms': 0.0,
            'period_err_max_ms': 0.0,
            'max_gap_ms': 0.0,
            'gaps': 0,
        }
    intervals = np.diff(np.sort(times))
    period = float(np.median(intervals)) if period_s is None else float(period_s)
    err_ms = np.abs(intervals - period) * 1e3
    span = float(times.max() - times.min())
    return {
        'commands': int(times.size),
        'rate_hz': round(intervals.size / span, 3) if span > 0 else 0.0,
        'period_err_p50_ms': round(float(np.percentile(err_ms, 50)), 3),
        'period_err_p99_ms': round(float(np.percentile(err_ms, 99)), 3),
        'period_err_max_ms': round(float(err_ms.max()), 3),
        'max_gap_ms': round(float(intervals.max()) * 1e3, 3),
        'gaps': int(np.count_nonzero(intervals > 2 * period)),
    }


class CommandTimes:
    """Times of the commands a driver wrote to its bus, since the last reset
    (bounded like SampleWindow); written by the driver's callback, read and
    reset by whoever reports them."""

    def __init__(self, maxlen: int = DEFAULT_WINDOW):
        self._times = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def add(self, t: float) -> None:
        with self._lock:
            self._times.append(t)

    def reset(self) -> None:
        with self._lock:
            self._times.clear()

    def values(self) -> np.ndarray:
        with self._lock:
            return np.array(self._times, dtype=float)

    def timing(self, period_s: float | None = None) -> dict:
        times = self.values()
        figures = command_timing(times, period_s)
        # CLOCK_MONOTONIC is one clock for every process on the machine: these
        # line the figures up with a bus trace (an emulator's receive times).
        figures['first_write_s'] = round(float(times[0]), 6) if times.size else 0.0
        figures['last_write_s'] = round(float(times[-1]), 6) if times.size else 0.0
        return figures
