# SPDX-License-Identifier: Apache-2.0
"""The episodic strategy's phases without ROS: time and frame limits, early
end, discard-and-redo, stop, and keys refused where they mean nothing."""

import pytest

from rollout_ros.core.episodic_phases import (
    DISCARD,
    DONE,
    FRAMES,
    NEXT,
    RECORDING,
    REDO,
    RESETTING,
    SAVE,
    STOP,
    TIME,
    EpisodicPhases,
    Step,
)


def phases(n=3, episode_s=2.0, reset_s=1.0, fps=10.0):
    return EpisodicPhases(n, episode_s, reset_s, fps)


def test_episodes_and_resets_follow_their_time_limits_and_the_last_has_no_reset():
    p = phases(n=2)
    assert p.advance(100.0) == []  # the clock waits for the recorder
    assert p.time_left(100.0) == 2.0
    p.begin(100.0)
    assert p.advance(101.9) == [] and p.time_left(101.5) == pytest.approx(0.5)
    assert p.advance(102.0) == [Step(RECORDING, RESETTING, TIME, None)]  # kept, saved after the reset
    assert p.episode == 1 and p.saved == 0 and p.time_left(102.25) == pytest.approx(0.75)
    assert p.advance(102.9) == []
    assert p.advance(103.0) == [Step(RESETTING, RECORDING, TIME, SAVE)]
    assert p.saved == 1 and p.episode == 2 and not p.started
    assert p.advance(110.0) == []  # not begun: no time runs out
    p.begin(110.0)
    assert p.advance(112.0) == [Step(RECORDING, DONE, TIME, SAVE)]
    assert p.phase == DONE and p.saved == 2 and p.episode == 2 and p.time_left(112.0) == 0.0


def test_frame_limit_caps_an_episode_at_episode_time_s_times_fps():
    p = phases(episode_s=1.5, fps=30.0)
    assert p.max_frames == 45
    p.begin(0.0)
    for _ in range(44):
        p.count_frame()
    assert p.advance(0.5) == []
    p.count_frame()
    assert p.advance(0.6) == [Step(RECORDING, RESETTING, FRAMES, None)]


def test_next_ends_episode_and_reset_early_and_a_double_tap_skips_nothing():
    p = phases()
    assert not p.request(NEXT)  # nothing recorded yet
    p.begin(0.0)
    assert p.request(NEXT) and p.request(NEXT)
    assert not p.request(NEXT)  # would end an episode not yet begun
    assert p.phase == RECORDING  # nothing changes until the loop advances
    assert p.advance(0.5) == [Step(RECORDING, RESETTING, NEXT, None), Step(RESETTING, RECORDING, NEXT, SAVE)]
    assert p.saved == 1 and p.episode == 2


def test_redo_while_recording_discards_then_resets_then_records_the_same_episode():
    p = phases(n=1)
    p.begin(0.0)
    assert p.request(REDO)
    assert p.advance(0.5) == [Step(RECORDING, RESETTING, REDO, DISCARD)]  # a reset even for the last one
    assert not p.request(REDO)  # already discarded
    assert p.episode == 1 and p.discarded == 1
    assert p.advance(1.5) == [Step(RESETTING, RECORDING, TIME, None)]
    assert p.episode == 1 and p.saved == 0
    p.begin(2.0)
    assert p.advance(4.0) == [Step(RECORDING, DONE, TIME, SAVE)]
    assert p.saved == 1


def test_redo_during_the_reset_drops_the_episode_just_recorded_and_the_reset_goes_on():
    p = phases()
    p.begin(0.0)
    p.advance(2.0)
    assert p.request(REDO)
    assert p.advance(2.2) == [Step(RESETTING, RESETTING, REDO, DISCARD)]
    assert p.phase == RESETTING and p.time_left(2.2) == pytest.approx(0.8)
    assert p.advance(3.0) == [Step(RESETTING, RECORDING, TIME, None)]
    assert p.saved == 0 and p.episode == 1 and p.discarded == 1


@pytest.mark.parametrize(
    'setup, expected',
    [
        ('recording', Step(RECORDING, DONE, STOP, SAVE)),
        ('resetting', Step(RESETTING, DONE, STOP, SAVE)),
        ('resetting-discarded', Step(RESETTING, DONE, STOP, None)),
    ],
)
def test_stop_keeps_what_was_recorded(setup, expected):
    p = phases()
    p.begin(0.0)
    if setup != 'recording':
        p.advance(2.0)
    if setup == 'resetting-discarded':
        p.request(REDO)
        p.advance(2.1)
    assert p.request(STOP)
    assert p.advance(2.5) == [expected]
    assert p.phase == DONE
    assert not any(p.request(e) for e in (NEXT, REDO, STOP))  # nothing after the end
    assert p.advance(100.0) == []


def test_stop_is_accepted_before_the_recorder_opened_the_episode():
    p = phases()
    assert not p.request(REDO) and p.request(STOP)
    assert p.advance(0.0) == [Step(RECORDING, DONE, STOP, SAVE)]


def test_reset_starts_over():
    p = phases()
    p.begin(0.0)
    p.request(REDO)
    p.advance(0.1)
    p.reset()
    assert (p.phase, p.saved, p.discarded, p.steps, p.started) == (RECORDING, 0, 0, [], False)
    with pytest.raises(ValueError):
        EpisodicPhases(0, 1.0, 1.0, 30.0)
