# SPDX-License-Identifier: Apache-2.0
"""The driver node over dynamixel-sdk and the emulated bus: commands reach the
servos (after safety clipping), present positions come back as JointState,
the watchdog holds, and torque follows the lifecycle."""

import time

import pytest
from helpers import spin_in_background, wait_for
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState

from rollout_ros.core.calibration import calibration_path, load_calibration
from rollout_ros.demo import ROBOT_ID, ROBOT_TYPE
from rollout_ros.hardware.robots import get_robot_spec
from rollout_ros.nodes.robot_driver_node import RobotDriverNode

SPEC = get_robot_spec(ROBOT_TYPE)


@pytest.fixture
def driver(ros, assets, emulator):
    node = RobotDriverNode(
        parameter_overrides=[
            Parameter('robot_port', value=emulator.port),
            Parameter('robot_type', value=ROBOT_TYPE),
            Parameter('robot_id', value=ROBOT_ID),
            Parameter('calibration_dir', value=str(assets['calibration_dir'])),
            Parameter('max_relative_target', value=0.2),
            Parameter('command_timeout_s', value=0.3),
        ]
    )
    ex = spin_in_background(node)
    yield node
    node.trigger_shutdown()
    ex.shutdown(timeout_sec=1.0)
    node.destroy_node()


def maps(assets):
    path = calibration_path(assets['calibration_dir'], ROBOT_TYPE, ROBOT_ID)
    return SPEC.joint_maps(load_calibration(path, SPEC.motor_names))


def test_commands_reach_servos_and_states_come_back(driver, assets, emulator):
    jmaps = maps(assets)
    received = []
    sub_node = driver  # same node, plain subscription, for the states it publishes
    sub = sub_node.create_subscription(JointState, 'joint_states', received.append, 10)
    cmd_pub = sub_node.create_publisher(JointState, 'joint_commands', 10)

    driver.trigger_configure()
    assert driver.state_label == 'inactive', driver.last_error
    assert all(emulator.register(i, 'Torque_Enable') == 0 for i in range(1, 7))
    driver.trigger_activate()
    assert driver.state_label == 'active'
    assert all(emulator.register(i, 'Torque_Enable') == 1 for i in range(1, 7))
    assert wait_for(lambda: len(received) > 3)
    assert received[-1].name == SPEC.motor_names

    # A small step within max_relative_target reaches the servos exactly.
    target = {m: 0.1 if m != 'gripper' else 0.05 for m in SPEC.motor_names}
    emulator.clear_goal_writes()
    cmd_pub.publish(JointState(name=list(target), position=list(target.values())))
    expected = {m.id: jmaps[m.name].rad_to_ticks(target[m.name]) for m in SPEC.motors}
    assert wait_for(lambda: {i: emulator.register(i, 'Goal_Position') for i in expected} == expected)

    # The servos converge and the published state reports it in radians.
    def converged():
        msg = received[-1]
        return all(abs(p - target[n]) < 0.01 for n, p in zip(msg.name, msg.position))

    assert wait_for(converged)

    # A far target is clipped to max_relative_target from the present position.
    present = received[-1].position[0]
    cmd_pub.publish(JointState(name=['shoulder_pan'], position=[1.5]))
    clipped = jmaps['shoulder_pan'].rad_to_ticks(present + 0.2)
    assert wait_for(lambda: abs(emulator.register(1, 'Goal_Position') - clipped) <= 3)

    # Commands stop: the watchdog makes the present position the goal.
    time.sleep(0.6)
    present = emulator.register(1, 'Present_Position')
    assert abs(emulator.register(1, 'Goal_Position') - present) <= 2
    driver.destroy_subscription(sub)


def test_torque_off_at_cleanup(driver, emulator):
    driver.trigger_configure()
    driver.trigger_activate()
    assert emulator.register(3, 'Torque_Enable') == 1
    driver.trigger_deactivate()
    assert emulator.register(3, 'Torque_Enable') == 1  # holds while inactive
    driver.trigger_cleanup()
    assert all(emulator.register(i, 'Torque_Enable') == 0 for i in range(1, 7))


def test_missing_calibration_is_a_configure_error(ros, emulator, tmp_path):
    node = RobotDriverNode(
        parameter_overrides=[
            Parameter('robot_port', value=emulator.port),
            Parameter('calibration_dir', value=str(tmp_path)),
        ]
    )
    node.trigger_configure()
    assert node.state_label == 'unconfigured'
    assert 'lerobot-calibrate' in node.last_error and 'robot_id' in node.last_error
    node.destroy_node()


def make_driver(assets, emulator, **params):
    base = dict(
        robot_port=emulator.port,
        robot_type=ROBOT_TYPE,
        robot_id=ROBOT_ID,
        calibration_dir=str(assets['calibration_dir']),
    )
    base.update(params)
    node = RobotDriverNode(parameter_overrides=[Parameter(k, value=v) for k, v in base.items()])
    return node, spin_in_background(node)


def test_watchdog_holds_within_two_periods(ros, assets, emulator):
    rate, timeout = 50.0, 0.1
    node, ex = make_driver(assets, emulator, state_rate_hz=rate, command_timeout_s=timeout, max_relative_target=1.0)
    try:
        node.trigger_configure()
        node.trigger_activate()
        pub = node.create_publisher(JointState, 'joint_commands', 10)
        emulator.clear_goal_writes()
        pub.publish(JointState(name=['shoulder_pan'], position=[0.5]))
        assert wait_for(lambda: len(emulator.goal_writes) >= 1)
        assert wait_for(lambda: len(emulator.goal_writes) >= 2, timeout=2.0)
        (t_cmd, _, goal), (t_hold, _, held) = emulator.goal_writes[0], emulator.goal_writes[1]
        assert held != goal  # the hold is the present position, short of the goal
        # Slack for a loaded 2-core machine; the budget itself is two periods.
        assert t_hold - t_cmd <= timeout + 2 / rate + 0.03, t_hold - t_cmd
    finally:
        node.trigger_shutdown()
        ex.shutdown(timeout_sec=1.0)
        node.destroy_node()


def test_return_to_start_is_speed_capped(ros, assets, emulator):
    rate, speed = 50.0, 1.0
    node, ex = make_driver(
        assets,
        emulator,
        state_rate_hz=rate,
        return_to_start=True,
        return_speed=speed,
        max_relative_target=0.5,
        command_timeout_s=5.0,
    )
    jmaps = maps(assets)
    try:
        node.trigger_configure()
        node.trigger_activate()
        start = dict(node.start_pose)
        pub = node.create_publisher(JointState, 'joint_commands', 10)
        for _ in range(3):
            pub.publish(JointState(name=['shoulder_pan', 'elbow_flex'], position=[0.9, -0.6]))
            time.sleep(0.3)
        assert abs(emulator.register(1, 'Present_Position') - jmaps['shoulder_pan'].rad_to_ticks(0.9)) < 10
        emulator.clear_goal_writes()
        node.trigger_deactivate()
        node.trigger_cleanup()
        pan = [ticks for _, dxl_id, ticks in emulator.goal_writes if dxl_id == 1]
        # A hold write, then the return: every step within the speed cap.
        step_cap = jmaps['shoulder_pan'].rad_to_ticks(speed / rate) - jmaps['shoulder_pan'].rad_to_ticks(0)
        steps = [abs(b - a) for a, b in zip(pan[1:], pan[2:])]
        assert len(steps) >= int(0.9 / speed * rate) - 2
        assert max(steps) <= step_cap + 1
        assert abs(pan[-1] - jmaps['shoulder_pan'].rad_to_ticks(start['shoulder_pan'])) <= 1
        assert all(emulator.register(i, 'Torque_Enable') == 0 for i in range(1, 7))
    finally:
        node.trigger_shutdown()
        ex.shutdown(timeout_sec=1.0)
        node.destroy_node()


def test_dead_bus_ends_in_error_transition(ros, assets, emulator):
    node, ex = make_driver(assets, emulator, max_bus_errors=3)
    try:
        node.trigger_configure()
        node.trigger_activate()
        emulator.stop()  # the adapter is unplugged
        assert wait_for(lambda: node.state_label == 'unconfigured', timeout=5.0), node.state_label
        assert node.faulted and 'servo bus failed' in node.last_error
    finally:
        node.trigger_shutdown()
        ex.shutdown(timeout_sec=1.0)
        node.destroy_node()


def test_persistent_bus_fault_stops_all_writes(ros, assets, emulator):
    """Replies stop (a servo cable half-unplugged): after max_bus_errors the
    driver goes through ErrorProcessing and writes nothing more, so the servos
    keep their last goal."""
    node, ex = make_driver(assets, emulator, max_bus_errors=3, command_timeout_s=0.05)
    try:
        node.trigger_configure()
        node.trigger_activate()
        pub = node.create_publisher(JointState, 'joint_commands', 10)
        pub.publish(JointState(name=['shoulder_pan'], position=[0.2]))
        assert wait_for(lambda: len(emulator.goal_writes) > 6)
        emulator.faults.drop_replies(probability=1.0)
        assert wait_for(lambda: node.state_label == 'unconfigured', timeout=5.0), node.state_label
        writes = len(emulator.goal_writes)
        torque = [emulator.register(i, 'Torque_Enable') for i in range(1, 7)]
        for _ in range(10):
            pub.publish(JointState(name=['shoulder_pan'], position=[0.3]))
            time.sleep(0.03)
        assert len(emulator.goal_writes) == writes
        assert torque == [1] * 6  # torque stays on: the arm holds its last goal
        assert 'servo bus failed 3 times' in node.last_error
    finally:
        emulator.faults.clear()
        node.trigger_shutdown()
        ex.shutdown(timeout_sec=1.0)
        node.destroy_node()


def test_command_beyond_joint_limit_never_reaches_the_bus(ros, assets, emulator):
    node, ex = make_driver(assets, emulator, max_relative_target=0.0, command_timeout_s=5.0)
    try:
        node.trigger_configure()
        node.trigger_activate()
        executed = []
        node.create_subscription(JointState, '~/executed_commands', executed.append, 10)
        pub = node.create_publisher(JointState, 'joint_commands', 10)
        emulator.clear_goal_writes()
        pub.publish(JointState(name=['shoulder_lift', 'gripper'], position=[10.0, -10.0]))
        assert wait_for(lambda: executed)
        lo, hi = maps(assets)['shoulder_lift'].limits_rad
        assert executed[-1].position[0] == pytest.approx(hi)
        writes = {i: t for _, i, t in emulator.goal_writes}
        cal = load_calibration(calibration_path(assets['calibration_dir'], ROBOT_TYPE, ROBOT_ID), SPEC.motor_names)
        assert writes[2] == cal['shoulder_lift'].range_max
        assert writes[6] == cal['gripper'].range_min
    finally:
        node.trigger_shutdown()
        ex.shutdown(timeout_sec=1.0)
        node.destroy_node()


def test_per_joint_step_cap(ros, assets, emulator):
    node, ex = make_driver(
        assets,
        emulator,
        max_relative_target=0.1,
        max_relative_target_per_joint='{"gripper": 0.3}',
        command_timeout_s=5.0,
    )
    try:
        node.trigger_configure()
        node.trigger_activate()
        start = node.arm.read()
        executed = []
        node.create_subscription(JointState, '~/executed_commands', executed.append, 10)
        node.create_publisher(JointState, 'joint_commands', 10).publish(
            JointState(name=['elbow_flex', 'gripper'], position=[start['elbow_flex'] + 1.0, start['gripper'] + 1.0])
        )
        assert wait_for(lambda: executed)
        sent = dict(zip(executed[-1].name, executed[-1].position))
        assert sent['elbow_flex'] - start['elbow_flex'] == pytest.approx(0.1, abs=0.01)
        assert sent['gripper'] - start['gripper'] == pytest.approx(0.3, abs=0.01)
    finally:
        node.trigger_shutdown()
        ex.shutdown(timeout_sec=1.0)
        node.destroy_node()


def test_bad_per_joint_cap_is_a_configure_error(ros, assets, emulator):
    node, ex = make_driver(assets, emulator, max_relative_target_per_joint='{"elbow": 0.3}')
    try:
        node.trigger_configure()
        assert node.state_label == 'unconfigured'
        assert 'max_relative_target_per_joint' in node.last_error and 'elbow_flex' in node.last_error
        assert emulator.goal_writes == []
    finally:
        node.trigger_shutdown()
        ex.shutdown(timeout_sec=1.0)
        node.destroy_node()
