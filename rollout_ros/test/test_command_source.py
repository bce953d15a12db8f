# SPDX-License-Identifier: Apache-2.0
"""Only the run's own strategy commands the arm: the driver checks the sender
of every command, so a foreign process publishing on the same topic never
reaches the bus, and the error names it."""

import os
import subprocess
import sys
import textwrap

from helpers import spin_in_background, wait_for
from rcl_interfaces.msg import Log
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState

from rollout_ros.core.calibration import calibration_path, load_calibration
from rollout_ros.demo import ROBOT_ID, ROBOT_TYPE
from rollout_ros.hardware.robots import get_robot_spec
from rollout_ros.nodes.robot_driver_node import RobotDriverNode

SPEC = get_robot_spec(ROBOT_TYPE)
OURS, THEIRS = 0.1, -0.3  # shoulder_pan targets [rad] of the strategy and of the intruder

# A separate process commanding the arm at 30 Hz from a node of its own.
INTRUDER = textwrap.dedent("""
    import sys, time, rclpy
    from sensor_msgs.msg import JointState
    rclpy.init()
    node = rclpy.create_node(sys.argv[1])
    pub = node.create_publisher(JointState, sys.argv[2], 1)
    while rclpy.ok():
        pub.publish(JointState(name=['shoulder_pan'], position=[float(sys.argv[3])]))
        time.sleep(1 / 30)
""")


def pan_ticks(assets, rad):
    path = calibration_path(assets['calibration_dir'], ROBOT_TYPE, ROBOT_ID)
    return SPEC.joint_maps(load_calibration(path, SPEC.motor_names))['shoulder_pan'].rad_to_ticks(rad)


def make_driver(assets, emulator, ns, **params):
    base = dict(
        robot_port=emulator.port,
        robot_type=ROBOT_TYPE,
        robot_id=ROBOT_ID,
        calibration_dir=str(assets['calibration_dir']),
        max_relative_target=6.3,
        command_timeout_s=5.0,
    )
    node = RobotDriverNode(
        namespace=ns, parameter_overrides=[Parameter(k, value=v) for k, v in {**base, **params}.items()]
    )
    return node, spin_in_background(node)


def driver_errors(node):
    """/rosout errors of `node`, collected on a listener node."""
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile

    errors = []
    listener = rclpy.create_node(f'rosout_listener_{os.getpid()}')
    listener.create_subscription(
        Log,
        '/rosout',
        lambda m: errors.append(m.msg) if m.level >= Log.ERROR and m.name.endswith(node.get_name()) else None,
        # /rosout keeps its history for late listeners (transient local).
        QoSProfile(depth=1000, durability=DurabilityPolicy.TRANSIENT_LOCAL),
    )
    return listener, errors


def start_intruder(name, topic):
    return subprocess.Popen(
        [sys.executable, '-c', INTRUDER, name, topic, str(THEIRS)],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_foreign_commands_never_reach_the_bus(ros, assets, emulator):
    ns = f'/cmdsrc_{os.getpid()}'
    node, ex = make_driver(assets, emulator, ns, command_source='strategy')
    import rclpy

    strategy = rclpy.create_node('strategy', namespace=ns)
    listener, errors = driver_errors(node)
    sx = spin_in_background(strategy, listener)
    intruder = start_intruder('intruder', f'{ns}/joint_commands')
    try:
        node.trigger_configure()
        node.trigger_activate()
        assert node.state_label == 'active', node.last_error
        pub = strategy.create_publisher(JointState, 'joint_commands', 1)
        # The intruder's commands arrive while ours do; only ours are executed.
        assert wait_for(lambda: node.foreign_commands >= 30, timeout=60), 'the intruder never came up'
        emulator.clear_goal_writes()
        for _ in range(30):
            pub.publish(JointState(name=['shoulder_pan'], position=[OURS]))
            wait_for(lambda: False, timeout=1 / 30)
        assert wait_for(lambda: node.foreign_commands >= 60, timeout=10)
        goals = [t for _, i, t in emulator.goal_writes if i == 1]
        assert pan_ticks(assets, OURS) in goals
        assert pan_ticks(assets, THEIRS) not in goals
        assert all(abs(t - pan_ticks(assets, THEIRS)) > 50 for t in goals), goals
        assert wait_for(lambda: any('/intruder publishes on' in e and 'ignored' in e for e in errors)), errors
    finally:
        intruder.kill()
        intruder.communicate()
        node.trigger_shutdown()
        for e in (ex, sx):
            e.shutdown(timeout_sec=1.0)
        for n in (node, strategy, listener):
            n.destroy_node()


def test_unbound_driver_stops_executing_when_a_second_node_commands(ros, assets, emulator):
    ns = f'/unbound_{os.getpid()}'
    node, ex = make_driver(assets, emulator, ns)
    import rclpy

    first = rclpy.create_node('first', namespace=ns)
    listener, errors = driver_errors(node)
    sx = spin_in_background(first, listener)
    intruder = None
    try:
        node.trigger_configure()
        node.trigger_activate()
        pub = first.create_publisher(JointState, 'joint_commands', 1)
        emulator.clear_goal_writes()
        # Alone, the only publisher commands the arm.
        assert wait_for(
            lambda: (
                pub.publish(JointState(name=['shoulder_pan'], position=[OURS]))
                or any(i == 1 and t == pan_ticks(assets, OURS) for _, i, t in emulator.goal_writes)
            ),
            timeout=10,
        )
        intruder = start_intruder('second', f'{ns}/joint_commands')
        assert wait_for(lambda: node.foreign_commands >= 10, timeout=60), 'the second publisher never came up'
        emulator.clear_goal_writes()
        for _ in range(15):
            pub.publish(JointState(name=['shoulder_pan'], position=[OURS + 0.05]))
            wait_for(lambda: False, timeout=1 / 30)
        goals = [t for _, i, t in emulator.goal_writes if i == 1]
        assert pan_ticks(assets, THEIRS) not in goals and pan_ticks(assets, OURS + 0.05) not in goals, goals
        assert wait_for(lambda: any('/second' in e and f'{ns}/first' in e for e in errors)), errors
    finally:
        if intruder is not None:
            intruder.kill()
            intruder.communicate()
        node.trigger_shutdown()
        for e in (ex, sx):
            e.shutdown(timeout_sec=1.0)
        for n in (node, first, listener):
            n.destroy_node()
