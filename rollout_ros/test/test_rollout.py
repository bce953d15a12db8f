# SPDX-License-Identifier: Apache-2.0
"""End-to-end rollouts over real rclpy nodes, the emulated bus and the tiny ACT
checkpoint: what the servos receive must be the policy's actions mapped back
to ticks (checked with lerobot's own unnormalisation), and bad input must fail
at configure with the robot untouched."""

import os
import shutil
import subprocess
import sys
import time

import pytest
from helpers import lerobot_motor_bus, run_logged, spin_in_background, wait_for

from rollout_ros.cli import CameraConfig, Rollout, run
from rollout_ros.core.calibration import calibration_path, load_calibration
from rollout_ros.core.stats import command_timing
from rollout_ros.demo import ROBOT_ID, ROBOT_TYPE
from rollout_ros.hardware.robots import get_robot_spec

SPEC = get_robot_spec(ROBOT_TYPE)


def lerobot_ticks(assets, actions, robot_type=ROBOT_TYPE):
    """Expected goal ticks per action, computed by lerobot's motor bus."""
    spec = get_robot_spec(robot_type)
    path = calibration_path(assets['calibration_dir'], spec.calibration_dir_name, ROBOT_ID)
    bus = lerobot_motor_bus(spec, load_calibration(path, spec.motor_names))
    return [
        tuple(bus._unnormalize({m.id: a[f'{m.name}.pos'] for m in spec.motors})[m.id] for m in spec.motors)
        for a in actions
    ]


def received_goal_tuples(emulator, spec=SPEC):
    """Goal_Position writes grouped per sync write (ids 1..6 in one packet)."""
    tuples, current = [], {}
    for _, dxl_id, ticks in emulator.goal_writes:
        if dxl_id in current:
            tuples.append(current)
            current = {}
        current[dxl_id] = ticks
    if current:
        tuples.append(current)
    return [tuple(t[m.id] for m in spec.motors) for t in tuples if len(t) == len(spec.motors)]


def assert_servos_got_actions(assets, emulator, actions, robot_type=ROBOT_TYPE):
    expected = lerobot_ticks(assets, actions, robot_type)
    received = received_goal_tuples(emulator, get_robot_spec(robot_type))
    # Walk the received writes in order; holds (goal = present) sit between.
    # joint_commands has depth 1, so a command the driver had not taken when
    # the next one came is dropped, never replayed late: the received ones
    # are the policy's actions in order, a few possibly missing under load.
    matched = 0
    hits = []
    for got in received:
        ahead = next(
            (k for k in range(matched, len(expected)) if all(abs(g - e) <= 1 for g, e in zip(got, expected[k]))), None
        )
        if ahead is not None:
            matched = ahead + 1
            hits.append(ahead)
    assert len(hits) >= 0.9 * len(expected) - 1, (len(hits), len(expected), expected[:2], received[:4])
    assert len(expected) >= 2  # commands to compare (60 on an idle machine; a loaded one runs fewer)


def test_in_process_rollout_commands_are_policy_actions(ros, assets, emulator, rollout_config):
    cfg = rollout_config(duration=2.0, max_relative_target=6.3, action_log_len=10_000)
    from rollout_ros.cli import Rollout

    summary, actions = run_logged(Rollout(cfg))
    assert summary['ticks'] >= 20
    # A starved tick holds the arm, it is not an error; how few there are is bench/'s.
    assert summary['starved_ticks'] <= summary['ticks'] // 10
    assert len(actions) == summary['ticks']
    assert_servos_got_actions(assets, emulator, actions)
    # Torque off after the ordered shutdown.
    assert all(emulator.register(i, 'Torque_Enable') == 0 for i in range(1, 7))
    # The summary's figures at the bus write are what the servos received.
    # The watchdog's holds (goal = present) are goal writes but no commands.
    holds = list(summary.get('bus_hold_times_s', []))
    assert len(holds) == summary['bus_holds']
    received = []
    for t, dxl_id, _ in emulator.goal_writes:
        if dxl_id != 1 or not summary['bus_first_write_s'] <= t <= summary['bus_last_write_s'] + 0.015:
            continue
        if holds and t >= holds[0]:
            holds.pop(0)
            continue
        received.append(t)
    at_servos = command_timing(received, 1 / cfg.fps)
    # A handshake command still in flight when the loop starts may count too;
    # a command superseded before the driver took it is dropped (depth 1).
    assert -1 <= summary['ticks'] - summary['bus_commands'] <= max(1, summary['ticks'] // 10)
    assert abs(at_servos['commands'] - summary['bus_commands']) <= 1
    assert abs(summary['bus_max_gap_ms'] - at_servos['max_gap_ms']) < 1e3 / cfg.fps


def test_so101_rollout_through_feetech(ros, assets, tmp_path, rollout_config):
    """The same loop on an SO-101 (Feetech protocol, drive_mode on the elbow)."""
    from rollout_ros.cli import Rollout
    from rollout_ros.demo import prepare
    from rollout_ros.hardware.emulator.feetech_emulator import FeetechBusEmulator

    so101 = prepare(tmp_path, 'so101_follower')
    so101['checkpoint'] = assets['checkpoint']
    initial = dict(zip(range(1, 7), so101['initial']))
    with FeetechBusEmulator({i: 'sts3215' for i in range(1, 7)}, initial_positions=initial) as emu:
        cfg = rollout_config(
            robot_type='so101_follower',
            robot_port=emu.port,
            calibration_dir=str(so101['calibration_dir']),
            duration=1.5,
            max_relative_target=6.3,
            action_log_len=10_000,
        )
        summary, actions = run_logged(Rollout(cfg))
        assert summary['ticks'] >= 20
        assert_servos_got_actions(so101, emu, actions, 'so101_follower')
        assert all(emu.register(i, 'Torque_Enable') == 0 for i in range(1, 7))


def test_cross_process_policy_service(ros, assets, emulator, rollout_config):
    """Policy node in its own process, configured through its lifecycle
    services and called through ~/infer over DDS."""
    name = f'policy_xproc_{os.getpid()}'  # unique: no other /policy can answer
    cmd = [
        sys.executable,
        '-m',
        'rollout_ros.nodes.policy_node',
        '--ros-args',
        '-r',
        f'__node:={name}',
        '-p',
        f'policy_path:={assets["checkpoint"]}',
        '-p',
        'camera_names:=[front]',
        '-p',
        f'robot_type:={ROBOT_TYPE}',
    ]
    proc = subprocess.Popen(cmd, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # The subprocess's lifecycle services first: until they are up, the only
        # /<name> in the graph would be the in-process twin removed below.
        import rclpy
        from lifecycle_msgs.srv import ChangeState

        probe = rclpy.create_node(f'probe_{os.getpid()}')
        try:
            client = probe.create_client(ChangeState, f'/{name}/change_state')
            assert client.wait_for_service(timeout_sec=60), 'policy subprocess never came up'
        finally:
            probe.destroy_node()
        cfg = rollout_config(
            duration=2.0, max_relative_target=6.3, action_log_len=10_000, policy_call='service', policy_node_name=name
        )
        from rollout_ros.cli import Rollout

        rollout = Rollout(cfg)
        # The in-process policy node stays out of the graph: the strategy must
        # use the one in the other process.
        local_policy = rollout.managed[0]
        rollout.executor.remove_node(local_policy)
        local_policy.destroy_node()
        rollout.managed.remove(local_policy)
        rollout.strategy.local_nodes.pop(name)
        summary, actions = run_logged(rollout)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err[-2000:]
    assert summary['ticks'] >= 2  # 60 on an idle machine; the service overhead is bench/'s
    assert summary['starved_ticks'] <= summary['ticks'] // 10
    assert_servos_got_actions(assets, emulator, actions)


def assert_robot_untouched(emulator):
    assert emulator.goal_writes == []
    assert all(emulator.register(i, 'Torque_Enable') == 0 for i in range(1, 7))


@pytest.mark.parametrize(
    'overrides, param',
    [
        (dict(policy_path=''), 'policy_path'),
        (dict(policy_path='/nonexistent/checkpoint'), 'policy_path'),
        (dict(robot_type='kotch_follower'), 'robot_type'),
        (dict(robot_port='/dev/ttyNOPE0'), 'robot_port'),
        (dict(robot_id='never_calibrated'), 'robot_id'),
    ],
)
def test_bad_input_fails_at_configure(ros, emulator, rollout_config, overrides, param):
    with pytest.raises(RuntimeError, match=param):
        run(rollout_config(**overrides))
    assert_robot_untouched(emulator)


def test_camera_the_policy_needs_is_missing(ros, assets, emulator, rollout_config):
    side = CameraConfig('side', str(assets['video']), 128, 96, 30.0)
    with pytest.raises(RuntimeError, match='rename_map') as err:
        run(rollout_config(cameras=[side]))
    assert 'observation.images.front' in str(err.value)
    assert_robot_untouched(emulator)
    # The remedy the message names works.
    summary = run(
        rollout_config(
            cameras=[side], duration=0.5, rename_map='{"observation.images.side": "observation.images.front"}'
        )
    )
    assert summary['ticks'] > 5


def test_stop_event_ends_an_unbounded_run(ros, emulator, rollout_config):
    import threading

    stop = threading.Event()
    rollout = Rollout(rollout_config(duration=0.0))
    try:
        rollout.start()
        # Counted from a running loop: start-up time on a loaded machine varies.
        threading.Timer(1.0, stop.set).start()
        t0 = time.monotonic()
        rollout.wait(stop)
        assert time.monotonic() - t0 < 15
    finally:
        summary = rollout.stop()
    assert summary['ticks'] > 10
    assert all(emulator.register(i, 'Torque_Enable') == 0 for i in range(1, 7))


def test_dead_bus_mid_run_stops_the_rollout(ros, emulator, rollout_config):
    """The driver's error transition ends the run with an error naming it."""
    import threading

    from rollout_ros.cli import Rollout

    rollout = Rollout(rollout_config(duration=0.0))
    try:
        rollout.start()
        threading.Timer(1.0, emulator.stop).start()
        t0 = time.monotonic()
        rollout.wait()
        assert time.monotonic() - t0 < 10
        assert 'robot_driver' in rollout.strategy.last_error
        assert 'servo bus failed' in rollout.strategy.last_error
    finally:
        rollout.stop()


def test_bimanual_so_follower_drives_both_arms(ros, assets, tmp_path, rollout_config):
    """bi_so_follower: one driver per arm (left_/right_ joints, <id>_left and
    <id>_right calibrations as lerobot files them), one policy over 12 joints."""
    from rollout_ros.cli import Rollout
    from rollout_ros.core.calibration import MotorCalibration, save_calibration
    from rollout_ros.demo import CAMERA, DEMO_RANGES, IMAGE_HW
    from rollout_ros.hardware.emulator.feetech_emulator import FeetechBusEmulator
    from rollout_ros.policy.tiny_checkpoint import make_tiny_act_checkpoint

    bi = get_robot_spec('bi_so_follower')
    arm = bi.arms[0][1]
    calib_dir = tmp_path / 'calibration'
    for side, drive in (('left', 0), ('right', 1)):
        save_calibration(
            calibration_path(calib_dir, 'so_follower', f'{ROBOT_ID}_{side}'),
            {m.name: MotorCalibration(m.id, drive, 0, *DEMO_RANGES[m.name]) for m in arm.motors},
        )
    ckpt = make_tiny_act_checkpoint(tmp_path / 'ckpt', bi.feature_names, {CAMERA: (3, *IMAGE_HW)})
    initial = {m.id: sum(DEMO_RANGES[m.name]) // 2 for m in arm.motors}
    sts = {i: 'sts3215' for i in range(1, 7)}
    with (
        FeetechBusEmulator(sts, initial_positions=initial) as left,
        FeetechBusEmulator(sts, initial_positions=initial) as right,
    ):
        cfg = rollout_config(
            robot_type='bi_so_follower',
            policy_path=str(ckpt),
            arm_ports={'left': left.port, 'right': right.port},
            calibration_dir=str(calib_dir),
            duration=1.5,
            max_relative_target=6.3,
            action_log_len=10_000,
        )
        summary, actions = run_logged(Rollout(cfg))
        assert summary['ticks'] >= 20 and summary['starved_ticks'] <= summary['ticks'] // 10
        so_assets = {'calibration_dir': calib_dir}
        for side, emu in (('left', left), ('right', right)):
            # Each arm got its half, mapped with its own calibration.
            side_dir = tmp_path / f'as_{side}'
            shutil.copytree(calib_dir, side_dir, dirs_exist_ok=True)
            src = calibration_path(side_dir, 'so_follower', f'{ROBOT_ID}_{side}')
            src.rename(calibration_path(side_dir, 'so_follower', ROBOT_ID))
            half = [{k.removeprefix(f'{side}_'): v for k, v in a.items() if k.startswith(f'{side}_')} for a in actions]
            so_assets['calibration_dir'] = side_dir
            assert_servos_got_actions(so_assets, emu, half, 'so101_follower')


def test_bimanual_needs_both_ports(ros, emulator, rollout_config):
    from rclpy.node import Node

    from rollout_ros.core.errors import ConfigError

    with pytest.raises(ConfigError, match='right_arm_config.port'):
        run(rollout_config(robot_type='bi_so_follower', arm_ports={'left': emulator.port}))
    assert_robot_untouched(emulator)
    # The nodes made before the refusal are gone: the next run is not served twice.
    probe = Node('leak_probe')
    try:
        assert wait_for(lambda: 'policy' not in probe.get_node_names(), timeout=5.0), probe.get_node_names()
    finally:
        probe.destroy_node()


def test_rtc_backend_in_process_never_starves(ros, assets, emulator, rollout_config):
    """Background chunking through the policy node: the loop pulls queued
    actions, starts only once the first chunk is there, and what it commands
    reaches the servos."""
    from rollout_ros.cli import Rollout

    cfg = rollout_config(duration=2.0, max_relative_target=6.3, action_log_len=10_000, inference_type='rtc')
    rollout = Rollout(cfg)
    chunker = rollout.managed[0]
    summary, actions = run_logged(rollout)
    assert summary['ticks'] >= 20
    assert summary['starved_ticks'] <= summary['ticks'] // 10  # 0 on an idle machine: bench_rtc_slow_policy
    assert len(actions) == summary['ticks']
    assert_servos_got_actions(assets, emulator, actions)
    assert chunker.get_parameter('inference_type').value == 'rtc'


def test_rtc_over_the_service_is_refused_at_configure(ros, emulator, rollout_config):
    from rollout_ros.core.errors import ConfigError

    with pytest.raises(ConfigError, match='inference.type'):
        run(rollout_config(inference_type='rtc', policy_call='service'))
    assert_robot_untouched(emulator)


def test_interpolation_multiplier_end_to_end(ros, assets, emulator, rollout_config):
    """Robot commanded at fps*2, policy at fps: the servos get every policy
    action plus one interpolated step before each."""
    from rollout_ros.cli import Rollout

    cfg = rollout_config(duration=1.5, max_relative_target=6.3, action_log_len=10_000, interpolation_multiplier=2)
    summary, actions = run_logged(Rollout(cfg))
    assert summary['ticks'] >= 2 * len(actions) - 2
    assert_servos_got_actions(assets, emulator, actions)
    # Depth 1: a few commands superseded under load may never be written.
    assert len(received_goal_tuples(emulator)) >= 0.9 * (2 * len(actions)) - 2


def test_external_lifecycle_manager_drives_the_strategy(ros, emulator, rollout_config):
    """As under a launch file with a lifecycle manager: the strategy's own
    transitions are requested over its change_state service and run inside its
    executor, while it drives the other nodes over theirs (here on another
    executor, as other processes would be)."""
    from rollout_ros.cli import build_nodes
    from rollout_ros.nodes.lifecycle_client import LifecycleClient

    cfg = rollout_config(duration=0.0, policy_call='service')
    strategy, managed = build_nodes(cfg)
    executors = [spin_in_background(*managed), spin_in_background(strategy)]
    manager = rclpy_node('lifecycle_manager_test')
    mex = spin_in_background(manager)
    try:
        lc = LifecycleClient(manager, '/base_strategy')
        assert lc.wait_ready(10)
        assert lc.change('configure', 60), strategy.last_error
        assert lc.change('activate', 60), strategy.last_error
        assert wait_for(lambda: strategy.loop.pacer.ticks > 10, 15.0)
        assert lc.change('deactivate', 30) and lc.change('cleanup', 30)
        assert all(emulator.register(i, 'Torque_Enable') == 0 for i in range(1, 7))
    finally:
        strategy.trigger_shutdown()
        for ex in (*executors, mex):
            ex.shutdown(timeout_sec=1.0)
        for n in (strategy, *managed, manager):
            n.destroy_node()


def rclpy_node(name):
    import rclpy

    return rclpy.create_node(name)
