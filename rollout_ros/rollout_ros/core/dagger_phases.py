# SPDX-License-Identifier: Apache-2.0
"""DAgger's operator state machine, free of ROS.

AUTONOMOUS -pause_resume-> PAUSED -pause_resume-> AUTONOMOUS
PAUSED -correction-> CORRECTING -correction-> PAUSED

Input threads `request` events; the control loop `consume`s them once per
tick, so a phase only ever changes between two ticks. An event that is not
valid from the phase the queued events lead to is refused, not held for
later (a double tap must not jump two phases ahead unnoticed).
"""

import threading

AUTONOMOUS, PAUSED, CORRECTING = 'autonomous', 'paused', 'correcting'
PAUSE_RESUME, CORRECTION = 'pause_resume', 'correction'

TRANSITIONS = {
    (AUTONOMOUS, PAUSE_RESUME): PAUSED,
    (PAUSED, PAUSE_RESUME): AUTONOMOUS,
    (PAUSED, CORRECTION): CORRECTING,
    (CORRECTING, CORRECTION): PAUSED,
}


class DaggerPhases:
    def __init__(self):
        self.phase = AUTONOMOUS
        self._queued: list[str] = []
        self._lock = threading.Lock()

    def _phase_after_queue(self) -> str:
        phase = self.phase
        for event in self._queued:
            phase = TRANSITIONS[(phase, event)]
        return phase

    def request(self, event: str) -> bool:
        with self._lock:
            if (self._phase_after_queue(), event) not in TRANSITIONS:
                return False
            self._queued.append(event)
            return True

    def consume(self) -> list[tuple[str, str]]:
        """Apply the queued events; returns the (from, to) transitions made."""
        with self._lock:
            queued, self._queued = self._queued, []
        done = []
        for event in queued:
            new = TRANSITIONS[(self.phase, event)]
            done.append((self.phase, new))
            self.phase = new
        return done

    def reset(self) -> None:
        with self._lock:
            self._queued.clear()
            self.phase = AUTONOMOUS
