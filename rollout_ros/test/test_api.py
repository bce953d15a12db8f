# SPDX-License-Identifier: Apache-2.0
"""The Python API builds the same nodes as the CLI and applies injected
processors: observation before the policy, action before the command."""

from rclpy.parameter import Parameter

from rollout_ros.api import build_rollout_context

GRIPPER_ID = 6  # Koch follower
GRIPPER_RANGE = (2048, 3072)  # demo calibration, RANGE_0_100


def test_setup_run_teardown_with_processors(ros, emulator, rollout_config):
    seen = []

    def observation_processor(state):
        seen.append(dict(state))
        return state

    def action_processor(action):
        return {**action, 'gripper.pos': 90.0}

    ctx = build_rollout_context(rollout_config(duration=1.5), observation_processor, action_processor)
    assert [n.get_name() for n in ctx.nodes][0].endswith('strategy')
    ctx.strategy.setup()
    try:
        summary = ctx.strategy.run()
    finally:
        ctx.strategy.teardown()
    assert summary['ticks'] >= 10  # ran (45 on an idle machine; the rate is bench/'s)
    assert len(seen) >= summary['ticks'] - summary['starved_ticks'] and 'gripper.pos' in seen[0]
    lo, hi = GRIPPER_RANGE
    want = lo + 0.9 * (hi - lo)
    assert abs(emulator.register(GRIPPER_ID, 'Goal_Position') - want) <= 2
    assert ctx.strategy.node.state_label == 'finalized'


def test_display_data_streams_every_policy_step_to_rerun(ros, emulator, rollout_config, tmp_path):
    import rerun as rr

    rrd = tmp_path / 'session.rrd'
    ctx = build_rollout_context(rollout_config(duration=1.5, display_data=True))
    ctx.strategy.node.set_parameters([Parameter('display_rrd_path', value=str(rrd))])
    ctx.strategy.setup()
    try:
        summary = ctx.strategy.run()
    finally:
        ctx.strategy.teardown()
    chunks = list(rr.experimental.RrdReader(str(rrd)).store().stream())
    rows = {}
    for chunk in chunks:
        rows[chunk.entity_path] = rows.get(chunk.entity_path, 0) + chunk.num_rows
    assert {'/observation.images.front', '/observation.state/gripper.pos', '/action/gripper.pos'} <= set(rows)
    # Best effort by design, but on an idle display nearly every step arrives.
    steps = summary['ticks'] - summary['starved_ticks']
    assert rows['/action/gripper.pos'] >= 0.8 * steps, (rows['/action/gripper.pos'], steps)
