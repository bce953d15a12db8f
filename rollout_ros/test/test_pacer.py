# SPDX-License-Identifier: Apache-2.0
"""The pacer keeps an absolute schedule: lateness is measured, overruns are
counted, and a stall does not shift later deadlines."""

import time

import pytest

from rollout_ros.core.pacer import Pacer


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t

    def sleep(self, dt):
        assert dt >= 0
        self.t += dt


def run(pacer, clock, work_s):
    pacer.start()
    for w in work_s:
        pacer.begin_tick()
        clock.t += w
        pacer.wait()


def test_on_time_loop_keeps_grid_and_rate():
    clock = FakeClock()
    pacer = Pacer(50, clock=clock, sleep=clock.sleep)
    run(pacer, clock, [0.005] * 100)
    assert clock.t == pytest.approx(100.0 + 100 * 0.02)
    rep = pacer.report()
    assert rep.ticks == 100 and rep.overruns == 0 and rep.skipped_slots == 0
    assert rep.rate_hz == pytest.approx(50.0)
    assert rep.period_err_max_ms == pytest.approx(0.0, abs=1e-3)


def test_small_overrun_is_caught_up_not_absorbed():
    clock = FakeClock()
    pacer = Pacer(50, clock=clock, sleep=clock.sleep)
    # One tick takes 30 ms (1.5 periods): the next starts 10 ms late, then the
    # schedule is back on the original grid (a relative sleep would drift).
    run(pacer, clock, [0.005, 0.030, 0.001, 0.001])
    rep = pacer.report()
    assert rep.overruns == 1
    assert rep.skipped_slots == 0
    assert rep.period_err_max_ms == pytest.approx(10.0)
    assert clock.t == pytest.approx(100.0 + 4 * 0.02)


def test_late_start_measured_against_its_deadline():
    clock = FakeClock()
    pacer = Pacer(100, clock=clock, sleep=clock.sleep)
    run(pacer, clock, [0.0125, 0.001, 0.001])
    rep = pacer.report()
    # Tick 1 ran past its period by 2.5 ms: tick 2 starts 2.5 ms late.
    assert rep.overruns == 1 and rep.skipped_slots == 0
    assert rep.period_err_max_ms == pytest.approx(2.5)


def test_long_stall_skips_missed_slots_instead_of_bursting():
    clock = FakeClock()
    pacer = Pacer(100, clock=clock, sleep=clock.sleep)
    run(pacer, clock, [0.001, 0.055, 0.001, 0.001])
    rep = pacer.report()
    # Ends at 65 ms: slots due at 20..50 ms are skipped, the 60 ms one runs
    # immediately (5 ms late) rather than four ticks in a burst.
    assert rep.skipped_slots == 4
    assert rep.overruns == 1
    assert rep.period_err_max_ms == pytest.approx(5.0)
    # After the stall ticks are on the 10 ms grid again.
    assert (clock.t - 100.0) / 0.01 == pytest.approx(round((clock.t - 100.0) / 0.01))


def test_bad_rate_rejected():
    with pytest.raises(ValueError):
        Pacer(0)


def test_interpolation_multiplier_commands_between_policy_actions():
    from rollout_ros.core.control_loop import ControlLoop

    actions = iter([{'j.pos': 0.0}, {'j.pos': 3.0}, {'j.pos': 6.0}])
    calls, commands, recorded = [], [], []
    obs_ids = iter(range(100))

    def policy(obs):
        calls.append(obs)
        return next(actions, None)

    loop = ControlLoop(
        50.0,
        lambda: next(obs_ids),
        policy,
        commands.append,
        action_log_len=10,
        interpolation_multiplier=3,
        record=lambda o, a: recorded.append((o, a['j.pos'])),
    )
    assert loop.pacer.rate_hz == 150.0
    for _ in range(7):
        loop._tick()
    # First action alone, then 3 linear steps to each next action.
    assert [c['j.pos'] for c in commands] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert len(calls) == 3 and len(loop.action_log) == 3
    # One row per policy step, on the tick its own action went out, with the
    # observation it was computed from.
    assert recorded == [(0, 0.0), (1, 3.0), (2, 6.0)]
    loop._tick()  # the policy has nothing more: hold and count
    assert commands[-1] == {'j.pos': 6.0} and loop.starved_ticks == 1


def test_command_timing_sees_the_gap_the_robot_felt():
    """At the bus, a missed command is an interval of two periods (counted as
    a gap when longer), not lateness on a grid that skips the missed slot."""
    from rollout_ros.core.stats import command_timing

    period = 1 / 30
    times = [k * period for k in range(30)]
    times += [times[-1] + 0.2 + k * period for k in range(30)]  # the arm waited 200 ms once
    times[10] += 0.004  # and one command came 4 ms late
    t = command_timing(times, period)
    assert t['commands'] == 60
    assert t['max_gap_ms'] == pytest.approx(200.0, abs=1e-3)
    assert t['period_err_max_ms'] == pytest.approx(200.0 - 1e3 * period, abs=1e-3)
    assert t['gaps'] == 1
    assert t['period_err_p50_ms'] == pytest.approx(0.0, abs=1e-3)
    # Without a period given, the median interval stands in for it.
    assert command_timing(times)['gaps'] == 1
    assert command_timing(times[:1])['commands'] == 1


def test_starved_ticks_before_the_first_action_get_the_startup_grace():
    """A policy that has not acted yet (first chunk, a remote policy still
    discovering its cameras) gets startup_grace_s; once it has acted,
    max_starved_ticks starved ticks in a row end the run."""
    from rollout_ros.core.control_loop import ControlLoop

    answers = [None] * 8 + [{'j.pos': 1.0}] + [None] * 10
    loop = ControlLoop(
        30.0, lambda: 0, lambda obs: answers.pop(0), lambda a: None, max_starved_ticks=3, startup_grace_s=60.0
    )
    for _ in range(8):
        loop._tick()
    assert not loop.starved_out and loop.starved_ticks == 8  # 8 > 3, but still within the grace
    loop._tick()  # the first action
    for _ in range(3):
        loop._tick()
    assert loop.starved_out and loop.starved_ticks == 11

    never = ControlLoop(30.0, lambda: 0, lambda obs: None, lambda a: None, max_starved_ticks=3, startup_grace_s=0.05)
    deadline = time.monotonic() + 5.0
    while not never.starved_out and time.monotonic() < deadline:
        never._tick()
        time.sleep(0.01)
    assert never.starved_out  # a start that never comes still ends the run
