# SPDX-License-Identifier: Apache-2.0
"""DAgger's operator state machine and spoken events, without ROS."""

from rollout_ros.core.dagger_phases import AUTONOMOUS, CORRECTING, CORRECTION, PAUSE_RESUME, PAUSED, DaggerPhases
from rollout_ros.core.speech import Speaker


def test_transitions_apply_between_ticks_in_order():
    p = DaggerPhases()
    assert p.request(PAUSE_RESUME) and p.request(CORRECTION)
    assert p.phase == AUTONOMOUS  # nothing changes until the loop consumes
    assert p.consume() == [(AUTONOMOUS, PAUSED), (PAUSED, CORRECTING)]
    assert p.phase == CORRECTING and p.consume() == []


def test_invalid_events_are_refused_not_deferred():
    p = DaggerPhases()
    assert not p.request(CORRECTION)  # no correction straight from autonomous
    p.request(PAUSE_RESUME)
    p.request(CORRECTION)
    assert not p.request(PAUSE_RESUME)  # correcting: end the correction first
    p.consume()
    assert p.request(CORRECTION) and p.request(PAUSE_RESUME)
    assert p.consume() == [(CORRECTING, PAUSED), (PAUSED, AUTONOMOUS)]
    p.request(PAUSE_RESUME)
    p.reset()
    assert p.phase == AUTONOMOUS and p.consume() == []


def test_speaker_is_silent_when_disabled_and_records_what_it_says():
    s = Speaker(enabled=False)
    s.say('paused')
    assert s.spoken == []
    s.enabled = True
    s.tool = None  # no speech tool on this machine: still no error
    s.say('paused')
    assert s.spoken == ['paused']
