# SPDX-License-Identifier: Apache-2.0
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


def lerobot_motor_bus(spec, calibration):
    """lerobot's own motor bus for a robot spec, built without opening a port,
    so our unit maps can be compared with its _normalize/_unnormalize."""
    import pytest

    motors_mod = pytest.importorskip('lerobot.motors')
    modes = {
        'range_m100_100': motors_mod.MotorNormMode.RANGE_M100_100,
        'range_0_100': motors_mod.MotorNormMode.RANGE_0_100,
        'degrees': motors_mod.MotorNormMode.DEGREES,
    }
    motors = {m.name: motors_mod.Motor(m.id, m.model, modes[m.norm_mode.value]) for m in spec.motors}
    calib = {k: motors_mod.MotorCalibration(**vars(v)) for k, v in calibration.items()}
    if spec.bus == 'dynamixel':
        dxl = pytest.importorskip('lerobot.motors.dynamixel')
        return dxl.DynamixelMotorsBus(port='/dev/null', motors=motors, calibration=calib)
    feetech = pytest.importorskip('lerobot.motors.feetech')
    try:
        return feetech.FeetechMotorsBus(port='/dev/null', motors=motors, calibration=calib)
    except ImportError:
        # Without feetech-servo-sdk only the port plumbing is missing; the
        # normalisation under test lives in the base class.
        from lerobot.motors.motors_bus import SerialMotorsBus

        bus = object.__new__(feetech.FeetechMotorsBus)
        SerialMotorsBus.__init__(bus, '/dev/null', motors, calib)
        return bus


def spin_in_background(*nodes):
    """A single-threaded executor spinning `nodes` on a daemon thread."""
    import threading

    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor()
    for node in nodes:
        executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    return executor
