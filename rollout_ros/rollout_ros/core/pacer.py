# SPDX-License-Identifier: Apache-2.0
"""Control-loop pacing on absolute deadlines.

Tick k is due at t0 + k * period on the monotonic clock. Unlike a relative
sleep (sleep(period - work)), lateness is never absorbed into the schedule:
a late tick is measured against its own deadline, and a tick whose work runs
past the next deadline is counted as an overrun. When the loop falls a whole
period or more behind, the missed slots are skipped and counted instead of
being replayed back to back, so the robot never sees a burst of commands.
"""

import time
from dataclasses import dataclass

from rollout_ros.core.stats import SampleWindow


@dataclass
class PacerReport:
    ticks: int
    elapsed_s: float
    rate_hz: float
    target_rate_hz: float
    period_err_p50_ms: float
    period_err_p99_ms: float
    period_err_max_ms: float
    overruns: int
    skipped_slots: int


class Pacer:
    def __init__(self, rate_hz: float, clock=time.monotonic, sleep=time.sleep):
        if rate_hz <= 0:
            raise ValueError(f'rate_hz must be > 0, got {rate_hz}')
        self.rate_hz = float(rate_hz)
        self.period = 1.0 / self.rate_hz
        self._clock = clock
        self._sleep = sleep
        self._t0 = None
        self._slot = 0
        self.ticks = 0
        self.overruns = 0
        self.skipped_slots = 0
        self.lateness_ms = SampleWindow()

    def start(self) -> float:
        self._t0 = self._clock()
        self._slot = 0
        return self._t0

    @property
    def started(self) -> bool:
        return self._t0 is not None

    def deadline(self, slot: int | None = None) -> float:
        return self._t0 + (self._slot if slot is None else slot) * self.period

    def begin_tick(self) -> float:
        """Mark the start of the current tick; returns its deadline."""
        now = self._clock()
        due = self.deadline()
        self.lateness_ms.add(max(0.0, now - due) * 1e3)
        self.ticks += 1
        return due

    def wait(self) -> None:
        """Sleep until the next tick's deadline."""
        self._slot += 1
        now = self._clock()
        due = self.deadline()
        if now > due:
            self.overruns += 1
            behind = int((now - due) / self.period)
            if behind >= 1:
                self._slot += behind
                self.skipped_slots += behind
            return
        self._sleep(due - now)

    def report(self) -> PacerReport:
        elapsed = (self._clock() - self._t0) if self._t0 is not None else 0.0
        return PacerReport(
            ticks=self.ticks,
            elapsed_s=elapsed,
            rate_hz=self.ticks / elapsed if elapsed > 0 else 0.0,
            target_rate_hz=self.rate_hz,
            period_err_p50_ms=self.lateness_ms.percentile(50),
            period_err_p99_ms=self.lateness_ms.percentile(99),
            period_err_max_ms=self.lateness_ms.max(),
            overruns=self.overruns,
            skipped_slots=self.skipped_slots,
        )
