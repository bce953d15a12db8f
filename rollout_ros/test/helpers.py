"""Small helpers shared by the tests."""

import time


def wait_for(pred, timeout: float = 5.0) -> bool:
    """Poll `pred` until it is true or `timeout` passes (generous: CI has 2 cores)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return False


def run_logged(rollout):
    """Run a built Rollout to its end; (summary, actions commanded in order)."""
    try:
        rollout.start()
        rollout.wait()
        actions = list(rollout.strategy.loop.action_log)
    finally:
        summary = rollout.stop()
    return summary, actions
