# SPDX-License-Identifier: Apache-2.0
"""The rollout control loop, free of ROS: observe -> policy -> command, paced
on absolute deadlines, with every late, overrunning or starved tick counted.

A starved tick (no observation, or no action from the policy in time) holds
the last command instead of sending nothing, so position servos keep a
consistent goal and the gap is visible in the figures.

With `interpolation_multiplier` N the loop runs at fps * N: the policy is
asked once every N ticks and the commands in between are linear steps
towards its action, whose own tick is marked by `emitted_policy_action`.
Recording happens on exactly those ticks (`record(obs, action)`, after the
command went out), so datasets hold one row per policy step at fps.

Liveness: with `max_starved_ticks` N, a streak of N starved policy ticks,
or, once the policy has acted, a streak lasting `max_starved_s` (ticks that
wait out a policy timeout are few but long), ends the run with `starved_out`
set; the owner names the missing input and holds the arm. Before the first
action, `startup_grace_s` of starving takes the place of both.
"""

import os
import sys
import threading
import time
from collections import deque
from typing import Any, Callable

from rollout_ros.core.interpolation import ActionInterpolator
from rollout_ros.core.pacer import Pacer
from rollout_ros.core.stats import SampleWindow

Observation = Any
Action = dict[str, float]


class ControlLoop:
    def __init__(
        self,
        fps: float,
        observe: Callable[[], Observation | None],
        policy: Callable[[Observation], Action | None],
        command: Callable[[Action], None],
        duration_s: float = 0.0,
        action_log_len: int = 0,
        interpolation_multiplier: int = 1,
        record: Callable[[Observation, Action], None] | None = None,
        max_starved_ticks: int = 0,
        max_starved_s: float = 0.0,
        realtime_priority: int = 0,
        startup_grace_s: float = 0.0,
    ):
        self.interpolator = ActionInterpolator(interpolation_multiplier)
        self.pacer = Pacer(fps * self.interpolator.multiplier)
        self.observe = observe
        self.policy = policy
        self.command = command
        self.record = record
        self.last_obs: Observation | None = None  # what the latest policy action was computed from
        self.duration_s = duration_s
        self.stop_event = threading.Event()
        self.infer_ms = SampleWindow()
        self.starved_ticks = 0
        self.max_starved_ticks = max_starved_ticks
        self.max_starved_s = max_starved_s
        self.startup_grace_s = startup_grace_s
        self.consecutive_starved = 0
        self._starved_since: float | None = None
        self._tick_start = 0.0
        self.starved_out = False
        self.last_action: Action | None = None  # the policy's latest action
        self.last_command: Action | None = None  # what went to the robot last
        # Actions in the order they were commanded; tests compare them with
        # what the servos received.
        self.action_log = deque(maxlen=action_log_len or None) if action_log_len else None
        self.error: BaseException | None = None
        self.realtime_priority = realtime_priority
        self.realtime: bool | None = None  # whether run() got SCHED_FIFO (None: not asked)

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        if self.realtime_priority:
            self.realtime = _run_at_realtime_priority(self.realtime_priority)
        pacer = self.pacer
        start = pacer.start()
        try:
            while not self.stop_event.is_set():
                if self.duration_s and time.monotonic() - start >= self.duration_s:
                    break
                pacer.begin_tick()
                self._tick_start = time.monotonic()
                self._tick()
                pacer.wait()
        except BaseException as e:  # noqa: BLE001 - reported by the owner, loop must end
            self.error = e
            raise

    def _starved_out_now(self) -> bool:
        now = time.monotonic()
        if self._starved_since is None:
            # The streak began when this tick began, before it waited on inputs.
            self._starved_since = self._tick_start or now
        self.consecutive_starved += 1
        if self.last_action is None and self.startup_grace_s:
            # Before the first action, a policy in another process may still be
            # discovering its camera topics, or computing its first chunk:
            # only a start that never comes ends the run.
            return now - self._starved_since >= self.startup_grace_s
        if self.max_starved_ticks and self.consecutive_starved >= self.max_starved_ticks:
            return True
        return bool(
            self.max_starved_s and self.last_action is not None and now - self._starved_since >= self.max_starved_s
        )

    def _tick(self) -> None:
        interpolator = self.interpolator
        if interpolator.needs_new_action():
            obs = self.observe()
            action = None
            if obs is not None:
                t0 = time.perf_counter()
                action = self.policy(obs)
                self.infer_ms.add((time.perf_counter() - t0) * 1e3)
            if action is None:
                self.starved_ticks += 1
                if self._starved_out_now():
                    self.starved_out = True
                    self.stop_event.set()
                    return
                if self.last_command is not None:
                    self.command(self.last_command)
                return
            self.consecutive_starved = 0
            self._starved_since = None
            self.last_action = action
            self.last_obs = obs
            if self.action_log is not None:
                self.action_log.append(action)
            interpolator.add(action)
        self.last_command = interpolator.get()
        self.command(self.last_command)
        if self.record is not None and interpolator.emitted_policy_action:
            self.record(self.last_obs, self.last_action)

    def summary(self) -> dict:
        rep = self.pacer.report()
        return {
            'ticks': rep.ticks,
            'rate_hz': round(rep.rate_hz, 3),
            'period_err_p50_ms': round(rep.period_err_p50_ms, 3),
            'period_err_p99_ms': round(rep.period_err_p99_ms, 3),
            'period_err_max_ms': round(rep.period_err_max_ms, 3),
            'overruns': rep.overruns,
            'starved_ticks': self.starved_ticks,
            'infer_p50_ms': round(self.infer_ms.percentile(50), 3),
            'infer_p99_ms': round(self.infer_ms.percentile(99), 3),
            'loop_realtime': bool(self.realtime),
        }


# While another thread (background inference, a camera) holds the GIL, the
# loop waits up to this long for it; Python's default is 5 ms, which the robot
# felt as late commands.
REALTIME_SWITCH_INTERVAL_S = 0.0005


def _run_at_realtime_priority(priority: int) -> bool:
    """The calling thread at SCHED_FIFO `priority`, as servo loops run; False
    where the OS does not permit it (no CAP_SYS_NICE or rtprio limit)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except (OSError, AttributeError):
        return False
    sys.setswitchinterval(REALTIME_SWITCH_INTERVAL_S)
    return True
