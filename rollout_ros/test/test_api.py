"""The Python API builds the same nodes as the CLI and applies injected
processors: observation before the policy, action before the command."""

from rollout_ros.api import build_rollout_context

GRIPPER_ID = 6          # Koch follower
GRIPPER_RANGE = (2048, 3072)   # demo calibration, RANGE_0_100


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
    assert summary['ticks'] > 20
    assert len(seen) >= summary['ticks'] - summary['starved_ticks'] and 'gripper.pos' in seen[0]
    lo, hi = GRIPPER_RANGE
    want = lo + 0.9 * (hi - lo)
    assert abs(emulator.register(GRIPPER_ID, 'Goal_Position') - want) <= 2
    assert ctx.strategy.node.state_label == 'finalized'
