# SPDX-License-Identifier: Apache-2.0
"""The episodic strategy's phases, free of ROS (lerobot-rollout --strategy.type=episodic).

RECORDING -end-> RESETTING -end-> RECORDING ... -> DONE

An episode ends after `episode_time_s` or `max_frames` recorded frames, or
early on NEXT (right arrow); a reset ends after `reset_time_s` or early on
NEXT. After the last episode there is no reset: the run is DONE. REDO (left
arrow) discards the episode: pressed while recording, it ends the episode
and the reset that follows leads to the same episode again; pressed during
the reset, it discards the episode just recorded, and the reset goes on (the
scene needs resetting all the same; lerobot's left arrow also cut the reset
short). STOP (Esc) ends the run; the episode recorded or awaiting its save
is kept, as lerobot keeps it.

As lerobot-record does, an episode is saved only when the reset after it
ends, so it can still be discarded during the reset.

A recording phase starts its clock only once `begin` is called (the node
calls it when the recorder has opened the episode): until then time does
not run and NEXT / REDO are refused, so a double tap cannot skip an episode.

Input threads `request` events; the control loop calls `advance` once per
policy tick, so the phase changes only between two ticks. An event that is
not valid from the state the queued events lead to is refused, not deferred.
"""

import math
import threading
from dataclasses import dataclass, replace
from typing import NamedTuple

RECORDING, RESETTING, DONE = 'recording', 'resetting', 'done'
NEXT, REDO, STOP = 'next', 'redo', 'stop'
TIME, FRAMES = 'time', 'frames'  # causes that are not keys
SAVE, DISCARD = 'save', 'discard'


class Step(NamedTuple):
    """One change: `close` is what becomes of the open episode (save, discard or None)."""

    old: str
    new: str
    cause: str
    close: str | None


@dataclass(frozen=True)
class _State:
    phase: str = RECORDING
    started: bool = False  # recording: the recorder opened the episode, the clock runs
    pending: str | None = None  # resetting: SAVE or DISCARD for the episode just recorded
    saved: int = 0


class EpisodicPhases:
    def __init__(self, num_episodes: int, episode_time_s: float, reset_time_s: float, fps: float):
        if num_episodes < 1:
            raise ValueError('num_episodes must be at least 1')
        self.num_episodes = num_episodes
        self.episode_time_s = episode_time_s
        self.reset_time_s = reset_time_s
        # No more rows than the episode's time at fps holds, even when late
        # ticks bunch up behind an absolute-deadline pacer.
        self.max_frames = max(1, math.ceil(episode_time_s * fps - 1e-6))
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._state = _State()
            self._queued: list[str] = []
        self.phase_started: float | None = None
        self.frames = 0  # rows recorded in this episode
        self.last_episode_frames = 0  # rows of the episode recorded last
        self.kept_frames: list[int] = []  # rows of each episode saved, in order
        self.discarded = 0
        self.steps: list[Step] = []

    # State ----------------------------------------------------------------------
    @property
    def phase(self) -> str:
        return self._state.phase

    @property
    def started(self) -> bool:
        return self._state.started

    @property
    def saved(self) -> int:
        return self._state.saved

    @property
    def episode(self) -> int:
        """1-based number of the episode being recorded, or reset after; when done, the last saved."""
        s = self._state
        return s.saved if s.phase == DONE else s.saved + 1

    def time_left(self, now: float) -> float:
        s = self._state
        if s.phase == DONE:
            return 0.0
        limit = self.episode_time_s if s.phase == RECORDING else self.reset_time_s
        if self.phase_started is None:
            return limit  # the clock has not started yet
        return max(0.0, limit - (now - self.phase_started))

    # Transitions --------------------------------------------------------------
    def _end_recording(self, s: _State, cause: str) -> tuple[_State, Step]:
        if cause == REDO:
            return replace(s, phase=RESETTING, started=False, pending=DISCARD), Step(
                RECORDING, RESETTING, cause, DISCARD
            )
        if cause == STOP or s.saved + 1 >= self.num_episodes:
            return replace(s, phase=DONE, started=False, saved=s.saved + 1), Step(RECORDING, DONE, cause, SAVE)
        # Kept, but saved only at the end of the reset: a REDO there can still drop it.
        return replace(s, phase=RESETTING, started=False, pending=SAVE), Step(RECORDING, RESETTING, cause, None)

    def _end_reset(self, s: _State, cause: str) -> tuple[_State, Step]:
        close = s.pending if s.pending == SAVE else None
        saved = s.saved + (close == SAVE)
        new = DONE if cause == STOP or saved >= self.num_episodes else RECORDING
        return _State(phase=new, saved=saved), Step(RESETTING, new, cause, close)

    def _apply(self, s: _State, event: str) -> tuple[_State, Step] | None:
        """The state after `event`, or None when the event is not valid in `s`."""
        if s.phase == RECORDING:
            if event == STOP or (s.started and event in (NEXT, REDO)):
                return self._end_recording(s, event)
        elif s.phase == RESETTING:
            if event in (NEXT, STOP):
                return self._end_reset(s, event)
            if event == REDO and s.pending == SAVE:
                return replace(s, pending=DISCARD), Step(RESETTING, RESETTING, REDO, DISCARD)
        return None

    def request(self, event: str) -> bool:
        """From any thread; False when the event is refused in the phase the queue leads to."""
        with self._lock:
            s = self._state
            for queued in self._queued:
                s = self._apply(s, queued)[0]
            if self._apply(s, event) is None:
                return False
            self._queued.append(event)
            return True

    def begin(self, now: float) -> None:
        """The recorder has opened the episode: its clock starts now."""
        with self._lock:
            if self._state.phase == RECORDING and not self._state.started:
                self._state = replace(self._state, started=True)
                self.phase_started = now
                self.frames = 0

    def count_frame(self) -> None:
        self.frames += 1

    def advance(self, now: float) -> list[Step]:
        """On the loop thread, once per policy tick: queued events, then the
        time and frame limits; returns the steps made."""
        with self._lock:
            queued, self._queued = self._queued, []
            done = []
            for event in queued:
                self._state, step = self._apply(self._state, event)
                done.append(step)
                self._entered(step, now)
            s = self._state
            limit = None
            if s.phase == RECORDING and s.started:
                if self.frames >= self.max_frames:
                    limit = FRAMES
                elif now - self.phase_started >= self.episode_time_s:
                    limit = TIME
                if limit:
                    self._state, step = self._end_recording(s, limit)
            elif s.phase == RESETTING and now - self.phase_started >= self.reset_time_s:
                self._state, step = self._end_reset(s, limit := TIME)
            if limit:
                done.append(step)
                self._entered(step, now)
        self.steps += done
        return done

    def _entered(self, step: Step, now: float) -> None:
        if step.old == RECORDING:
            self.last_episode_frames = self.frames
        if step.close == SAVE:
            self.kept_frames.append(self.last_episode_frames)
        elif step.close == DISCARD:
            self.discarded += 1
        if step.new != step.old:
            # A recording phase's clock starts at begin(), once the recorder is ready.
            self.phase_started = now if step.new == RESETTING else None
            if step.new == RECORDING:
                self.frames = 0
