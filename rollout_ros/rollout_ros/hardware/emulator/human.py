# SPDX-License-Identifier: Apache-2.0
"""An emulated human moving an emulated leader arm by hand.

A thread pushes the servo shafts along a scripted motion (offsets in ticks
over time), the way a hand moves a limp leader, so tests and demos have a
teleoperator without one. A servo with torque on is being driven by its
driver (a handover move, the Koch gripper's spring): the human lets go of
it, and takes it again where the servo left it once torque is off.
"""

import math
import threading
import time
from collections.abc import Callable, Iterable

# offsets(t) -> {servo id: shaft offset in ticks}, t in seconds since start.
Motion = Callable[[float], dict[int, float]]


def sinusoid(ids: Iterable[int], amplitude: float = 150.0, period_s: float = 2.0, phase_step: float = 0.7) -> Motion:
    """Every joint swings by `amplitude` ticks, each a bit out of phase.

    Offsets are 0 at t=0 so the motion starts where the arm is."""
    ids = list(ids)

    def offsets(t: float) -> dict[int, float]:
        w = 2 * math.pi * t / period_s
        return {i: amplitude * (math.sin(w + k * phase_step) - math.sin(k * phase_step)) for k, i in enumerate(ids)}

    return offsets


def waypoints(points: list[tuple[float, dict[int, float]]]) -> Motion:
    """Linear between (time, {id: offset}) points, sorted by time; before the
    first and after the last the offsets stay at those points'."""
    points = sorted(points, key=lambda p: p[0])
    if not points:
        raise ValueError('need at least one waypoint')

    def offsets(t: float) -> dict[int, float]:
        if t <= points[0][0]:
            return dict(points[0][1])
        for (t0, a), (t1, b) in zip(points, points[1:]):
            if t <= t1:
                frac = (t - t0) / (t1 - t0) if t1 > t0 else 1.0
                return {i: a.get(i, 0.0) + frac * (b.get(i, 0.0) - a.get(i, 0.0)) for i in a.keys() | b.keys()}
        return dict(points[-1][1])

    return offsets


class EmulatedHuman:
    """Moves `emulator`'s servos by `motion` at `rate_hz` until stopped.

    Works with any PtyBusEmulator (Dynamixel or Feetech): it only uses
    servo(id).register('Torque_Enable'), .actual_position and
    .set_actual_position().
    """

    def __init__(self, emulator, motion: Motion, rate_hz: float = 50.0):
        self.emulator = emulator
        self.motion = motion
        self.rate_hz = rate_hz
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Per servo: shaft position where offset 0 is, or None while the
        # servo is torqued and the hand is off it.
        self._anchor: dict[int, float | None] = {}
        self.skipped: set[int] = set()  # servos left alone at least once (torque on)

    def start(self) -> 'EmulatedHuman':
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name='emulated-human', daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> 'EmulatedHuman':
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        began = time.monotonic()
        period = 1.0 / self.rate_hz
        while not self._stop.is_set():
            t = time.monotonic() - began
            for servo_id, offset in self.motion(t).items():
                self._push(servo_id, offset)
            self._stop.wait(period)

    def _push(self, servo_id: int, offset: float) -> None:
        servo = self.emulator.servo(servo_id)
        if servo.register('Torque_Enable'):
            self._anchor[servo_id] = None
            self.skipped.add(servo_id)
            return
        anchor = self._anchor.get(servo_id)
        if anchor is None:
            # Grab the joint where it is: no jump back to where the hand let go.
            anchor = self._anchor[servo_id] = servo.actual_position - offset
        servo.set_actual_position(anchor + offset)
