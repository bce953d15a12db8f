# SPDX-License-Identifier: Apache-2.0
"""Speed-capped straight-line moves in joint space, shared by the follower's
return to start and an actuated leader's handover moves.

The cap is on speed, not on time: a fixed-duration ramp (what lerobot's
smooth-move helpers do) is gentle over a short distance and violent over a
long one, and these moves start wherever a human or a policy left the arm.
"""

import math
import time
from enum import Enum


class MoveOutcome(str, Enum):
    ARRIVED = 'arrived'
    TOO_FAR = 'too_far'  # the capped speed could not make it within the timeout; nothing sent
    TIMED_OUT = 'timed_out'  # a slow bus stretched the move past the timeout; stopped on the way
    CANCELLED = 'cancelled'


def move_duration(start: dict[str, float], target: dict[str, float], max_speed: float) -> float:
    """Seconds the move takes when the joint with the longest way goes at `max_speed`."""
    if max_speed <= 0:
        raise ValueError(f'max_speed must be > 0, got {max_speed}')
    distance = max((abs(target[m] - start[m]) for m in target), default=0.0)
    return distance / max_speed


def step_count(duration_s: float, rate_hz: float) -> int:
    # Rounded up: rounding down would make each step longer than the cap
    # allows (the epsilon keeps an exact multiple from gaining a step).
    return max(1, math.ceil(duration_s * rate_hz - 1e-9))


def linear_move(
    start: dict[str, float],
    target: dict[str, float],
    max_speed: float,
    rate_hz: float,
    send,
    *,
    timeout_s: float,
    sleep=None,
    clock=time.monotonic,
    cancelled=None,
) -> MoveOutcome:
    """Send goals along the line from `start` to `target`, one per period.

    `send(goal)` writes one intermediate goal (radians by joint). Each goal
    is at most max_speed / rate_hz from the previous one on every joint, and
    consecutive goals are at least a period apart: a step that went out late
    is not followed by a quicker one to catch up, so a loaded machine makes
    the move slower, never faster.
    """
    sleep = sleep or time.sleep
    duration = move_duration(start, target, max_speed)
    if duration > timeout_s:
        return MoveOutcome.TOO_FAR
    steps = step_count(duration, rate_hz)
    period = 1.0 / rate_hz
    began = clock()
    for k in range(1, steps + 1):
        if cancelled is not None and cancelled():
            return MoveOutcome.CANCELLED
        sent_at = clock()
        if sent_at - began > timeout_s:
            return MoveOutcome.TIMED_OUT
        frac = k / steps
        send({m: start[m] + frac * (target[m] - start[m]) for m in target})
        # The last goal gets its period too, so the servos can reach it
        # before the caller turns torque off.
        delay = sent_at + period - clock()
        if delay > 0:
            sleep(delay)
    return MoveOutcome.ARRIVED
