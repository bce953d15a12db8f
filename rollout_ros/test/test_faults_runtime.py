# SPDX-License-Identifier: Apache-2.0
"""Fault suite (runtime faults): every fault ends with one clear error, the arm
held, torque handled as configured and a non-zero exit, within seconds.

Bus level: malformed (short) replies and serial I/O errors are bus errors
with the retry rules of a lost reply, register writes are retried, and the
port works again after a transient error. Driver level: recovery from a bus
fault, twice, then a normal stop with torque off. Run level (processes, as
launch starts them): policy process killed, emulator process killed, port
closed, short replies; each measured from the fault to the hold and to the
exit (printed as `FAULT {...}` JSON lines, see the report in the README).
"""

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from rollout_ros.hardware.bus_errors import BusError
from rollout_ros.hardware.dynamixel.bus import DynamixelBus
from rollout_ros.hardware.emulator.feetech_emulator import FeetechBusEmulator
from rollout_ros.hardware.feetech.bus import FeetechBus

KOCH = {
    'shoulder_pan': (1, 'xl430-w250'),
    'shoulder_lift': (2, 'xl430-w250'),
    'elbow_flex': (3, 'xl330-m288'),
    'wrist_flex': (4, 'xl330-m288'),
    'wrist_roll': (5, 'xl330-m288'),
    'gripper': (6, 'xl330-m288'),
}


@pytest.fixture
def dxl_bus(emulator):
    bus = DynamixelBus(emulator.port, KOCH)
    bus.connect()
    yield bus
    bus.disconnect(disable_torque=False)


# ---------------------------------------------------------------- bus level


def test_short_sync_read_reply_is_a_retried_bus_error(dxl_bus, emulator):
    # dynamixel-sdk's GroupSyncRead.getData raises IndexError on a reply one
    # byte short; that must be a failed attempt, retried, then a BusError.
    emulator.faults.short_replies(1)
    assert set(dxl_bus.sync_read('Present_Position')) == set(KOCH)
    assert emulator.faults.shortened == 1
    emulator.faults.short_replies(3)
    with pytest.raises(BusError, match=r'3 attempts: malformed reply \(IndexError'):
        dxl_bus.sync_read('Present_Position')
    emulator.faults.clear()
    assert set(dxl_bus.sync_read('Present_Position')) == set(KOCH)


def test_short_single_read_reply_is_a_bus_error(dxl_bus, emulator):
    emulator.faults.short_replies(3)
    with pytest.raises(BusError, match='short reply'):
        dxl_bus.read('Present_Position', 'gripper')


def test_dynamixel_register_writes_are_retried(dxl_bus, emulator):
    emulator.faults.drop_replies(2)  # two lost acks: the third attempt lands
    dxl_bus.set_torque(True, ['gripper'])
    assert emulator.register(6, 'Torque_Enable') == 1
    emulator.faults.drop_replies(2)
    dxl_bus.write('Position_P_Gain', 'elbow_flex', 700)
    assert emulator.register(3, 'Position_P_Gain') == 700
    emulator.faults.drop_replies(3)
    with pytest.raises(BusError, match='write Torque_Enable=0 to gripper.*3 attempts'):
        dxl_bus.set_torque(False, ['gripper'])


def test_feetech_register_writes_are_retried():
    with FeetechBusEmulator({1: 'sts3215', 2: 'sts3215'}) as emu:
        bus = FeetechBus(emu.port, {'a': (1, 'sts3215'), 'b': (2, 'sts3215')})
        bus.connect()
        try:
            emu.faults.drop_replies(2)
            bus.set_torque(True, ['a'])
            assert emu.register(1, 'Torque_Enable') == 1
            emu.faults.drop_replies(3)
            with pytest.raises(BusError, match='3 attempts'):
                bus.write('Torque_Enable', 'b', 1)
        finally:
            bus.disconnect(disable_torque=False)


def test_serial_io_error_is_reported_and_the_port_recovers(dxl_bus, emulator):
    """A transient I/O error from pyserial: the message names it (not the SDK's
    stuck "Port is in use!") and the next transaction works."""
    ser = dxl_bus._port_handler.ser
    real_read, failures = ser.read, []

    def flaky_read(n=1):
        if len(failures) < 3:
            failures.append(n)
            raise OSError(errno.EIO, 'Input/output error')
        return real_read(n)

    ser.read = flaky_read
    with pytest.raises(BusError, match='Input/output error') as err:
        dxl_bus.sync_read('Present_Position')
    assert 'in use' not in str(err.value)
    time.sleep(0.2)  # the servos' replies to the failed requests are in by now
    assert set(dxl_bus.sync_read('Present_Position')) == set(KOCH)
    # Single transactions too, and the stale replies are not taken for theirs.
    dxl_bus.write('Torque_Enable', 'gripper', 1)
    assert dxl_bus.read('Torque_Enable', 'gripper') == 1
    assert emulator.register(6, 'Torque_Enable') == 1


def test_closed_port_keeps_reporting_the_serial_error(dxl_bus, emulator):
    emulator.close_port()
    calls = [
        lambda: dxl_bus.sync_read('Present_Position'),
        lambda: dxl_bus.sync_write('Goal_Position', {'gripper': 2000}),
        lambda: dxl_bus.write('Torque_Enable', 'gripper', 0),
    ]
    for call in calls * 2:
        with pytest.raises(BusError) as err:
            call()
        assert 'in use' not in str(err.value) and 'port closed' in str(err.value), err.value


# ---------------------------------------------------------------- driver level


@pytest.fixture
def driver(ros, assets, emulator):
    from helpers import spin_in_background
    from rclpy.parameter import Parameter

    from rollout_ros.demo import ROBOT_ID, ROBOT_TYPE
    from rollout_ros.nodes.robot_driver_node import RobotDriverNode

    params = dict(
        robot_port=emulator.port,
        robot_type=ROBOT_TYPE,
        robot_id=ROBOT_ID,
        calibration_dir=str(assets['calibration_dir']),
        max_bus_errors=3,
        command_timeout_s=5.0,
    )
    node = RobotDriverNode(
        f'driver_faults_{os.getpid()}', parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]
    )
    ex = spin_in_background(node)
    yield node
    emulator.faults.clear()
    node.trigger_shutdown()
    ex.shutdown(timeout_sec=1.0)
    node.destroy_node()


def _state_publishers(node) -> int:
    return len([i for i in node.get_publishers_info_by_topic('/joint_states') if i.node_name == node.get_name()])


def test_driver_recovers_from_a_bus_fault_twice_then_stops_with_torque_off(driver, emulator):
    from helpers import wait_for

    ids = range(1, 7)
    for round_ in range(3):
        driver.trigger_configure()
        driver.trigger_activate()
        assert driver.state_label == 'active', (round_, driver.last_error)
        assert driver.faulted is False and driver.bus_errors == 0
        assert _state_publishers(driver) == 1, round_  # not one more per recovery
        assert all(emulator.register(i, 'Torque_Enable') == 1 for i in ids)
        if round_ == 2:
            break
        emulator.faults.drop_replies(0, probability=1.0)
        assert wait_for(lambda: driver.state_label == 'unconfigured', timeout=10), (round_, driver.state_label)
        assert 'servo bus failed' in driver.last_error
        assert _state_publishers(driver) == 0
        emulator.faults.clear()
    # A normal stop after two recoveries still holds, then turns torque off.
    emulator.clear_goal_writes()
    driver.trigger_deactivate()
    assert driver.state_label == 'inactive'
    # The hold is a sync write (no ack): give the emulator's thread a moment.
    assert wait_for(lambda: {dxl_id for _, dxl_id, _ in emulator.goal_writes} == set(ids))
    held = {dxl_id: goal for _, dxl_id, goal in emulator.goal_writes}
    assert set(held) == set(ids)
    assert all(abs(held[i] - emulator.register(i, 'Present_Position')) <= 3 for i in ids)
    driver.trigger_cleanup()
    assert driver.state_label == 'unconfigured', driver.last_error
    assert all(emulator.register(i, 'Torque_Enable') == 0 for i in ids)


def test_lost_torque_off_ack_is_retried_or_fails_the_stop(driver, emulator):
    driver.trigger_configure()
    driver.trigger_activate()
    driver.trigger_deactivate()
    emulator.faults.drop_replies(2)  # two lost acks: retried
    driver.trigger_cleanup()
    assert driver.state_label == 'unconfigured' and not driver.last_error
    assert all(emulator.register(i, 'Torque_Enable') == 0 for i in range(1, 7))
    driver.trigger_configure()
    driver.trigger_activate()
    driver.trigger_deactivate()
    emulator.faults.drop_replies(0, probability=1.0)  # the servos never ack: the stop fails loudly
    driver.trigger_cleanup()
    assert 'releasing the arm' in driver.last_error and 'torque disable failed' in driver.last_error


# ---------------------------------------------------------------- run level (processes)

# Fault to process exit. Measured 0.3-0.5 s for bus faults, ~4-5 s for a killed policy
# (two policy_timeout_s, then one stop_timeout_s probe); slack for a loaded 2-core machine.
EXIT_BUDGET_S = 20.0  # waited before the test gives up and sends SIGINT
BUS_FAULT_EXIT_S = 5.0
POLICY_FAULT_EXIT_S = 10.0
STARTUP_S = 240.0  # torch and the policy load in each child


def _measure(name: str, t_fault: float, t_hold, t_exit: float, rc: int) -> dict:
    figures = {
        'fault': name,
        'hold_s': None if t_hold is None else round(max(0.0, t_hold - t_fault), 3),
        'exit_s': round(t_exit - t_fault, 3),
        'rc': rc,
    }
    print('FAULT ' + json.dumps(figures))
    return figures


def _settled_at(emulator, t_fault: float, ids=range(1, 7), tol: int = 3):
    """When the goals sent to the servos stopped moving the arm: the time of the
    first goal write after the fault from which every later goal is where the
    arm rests now (None when a goal after the fault would still move it)."""
    rest = {i: emulator.register(i, 'Present_Position') for i in ids}
    after = [(t, i, g) for t, i, g in emulator.goal_writes if t >= t_fault]
    moving = [t for t, i, g in after if abs(g - rest[i]) > tol]
    if not moving:
        return t_fault
    later = [t for t, _, _ in after if t > moving[-1]]
    return later[0] if later else None


def _wait_exit(proc, t_fault: float):
    try:
        proc.wait(timeout=EXIT_BUDGET_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        pytest.fail(
            f'no exit within {EXIT_BUDGET_S} s of the fault (SIGINT then '
            f'{"worked" if proc.returncode != -9 else "failed too"})'
        )
    return time.monotonic()


def _rollout_cmd(assets, port: str, *extra: str) -> list[str]:
    from rollout_ros.demo import CAMERA, IMAGE_HW, ROBOT_ID, ROBOT_TYPE

    cams = (
        f'{{{CAMERA}: {{type: opencv, index_or_path: {assets["video"]}, width: {IMAGE_HW[1]}, '
        f'height: {IMAGE_HW[0]}, fps: 30}}}}'
    )
    return [
        sys.executable,
        '-m',
        'rollout_ros.cli',
        f'--policy.path={assets["checkpoint"]}',
        f'--robot.type={ROBOT_TYPE}',
        f'--robot.port={port}',
        f'--robot.id={ROBOT_ID}',
        f'--robot.calibration_dir={assets["calibration_dir"]}',
        f'--robot.cameras={cams}',
        '--robot.max_relative_target=6.3',
        '--fps=30',
        '--duration=0',
        '--task=faults',
        *extra,
    ]


def _spawn(cmd, log_path):
    log = open(log_path, 'w')
    return subprocess.Popen(cmd, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT, text=True), log


def _wait_running(emulator, proc, log_path):
    from helpers import wait_for

    ok = wait_for(lambda: len(emulator.goal_writes) > 30 or proc.poll() is not None, timeout=STARTUP_S)
    assert ok and proc.poll() is None, open(log_path).read()[-3000:]


@pytest.mark.parametrize('fault', ['short_reply', 'port_closed'])
def test_bus_fault_in_a_rollout_process(assets, emulator, tmp_path, fault):
    """The composed `rollout` process on the emulated Koch: a bus that only
    answers with data-less replies (dynamixel-sdk raised IndexError and the
    executor thread died: the process never exited) or a port that hangs up
    (reported as "Port is in use!"): one error naming the real cause, the
    goals stop, exit 2 within seconds."""
    log_path = tmp_path / 'rollout.log'
    proc, log = _spawn(_rollout_cmd(assets, emulator.port), log_path)
    try:
        _wait_running(emulator, proc, log_path)
        t_fault = time.monotonic()
        if fault == 'short_reply':
            emulator.faults.short_replies(0, probability=1.0)
        else:
            emulator.close_port()
        t_exit = _wait_exit(proc, t_fault)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    out = log_path.read_text()
    t_hold = _settled_at(emulator, t_fault) if fault == 'short_reply' else None
    figures = _measure(fault, t_fault, t_hold, t_exit, proc.returncode)
    assert proc.returncode == 2, out[-3000:]
    assert 'rollout: error:' in out and 'servo bus failed' in out, out[-3000:]
    assert 'Port is in use' not in out, out[-3000:]
    if fault == 'short_reply':
        assert 'malformed reply (IndexError' in out, out[-3000:]
        assert figures['hold_s'] is not None and figures['hold_s'] < 2.0, figures
    else:
        assert 'port closed?' in out, out[-3000:]
    assert 'Traceback' not in out, out[-3000:]
    assert figures['exit_s'] < BUS_FAULT_EXIT_S, figures


def test_policy_process_killed(ros, assets, emulator, tmp_path):
    """Launch-style processes: the strategy and the policy node each in their
    own process, camera and driver here. The policy process is SIGKILLed
    mid-run: before, nothing was logged, the run went on forever, teardown
    waited 120 s on the dead node and the exit code was 0."""
    from helpers import spin_in_background
    from rclpy.parameter import Parameter

    from rollout_ros.demo import CAMERA, IMAGE_HW, ROBOT_ID, ROBOT_TYPE
    from rollout_ros.nodes.camera_node import CameraNode
    from rollout_ros.nodes.robot_driver_node import RobotDriverNode

    tag = f'k{os.getpid()}'
    policy, camera, driver = f'policy_{tag}', f'camera_{CAMERA}_{tag}', f'robot_driver_{tag}'
    robot = [f'robot_type:={ROBOT_TYPE}', f'robot_id:={ROBOT_ID}', f'calibration_dir:={assets["calibration_dir"]}']
    cam_template = f'/camera_{{name}}_{tag}/image_raw'
    nodes = [
        CameraNode(
            camera,
            parameter_overrides=[
                Parameter('camera_name', value=CAMERA),
                Parameter('index_or_path', value=str(assets['video'])),
                Parameter('width', value=IMAGE_HW[1]),
                Parameter('height', value=IMAGE_HW[0]),
            ],
        ),
        RobotDriverNode(
            driver,
            parameter_overrides=[
                Parameter('robot_port', value=emulator.port),
                Parameter('robot_type', value=ROBOT_TYPE),
                Parameter('robot_id', value=ROBOT_ID),
                Parameter('max_relative_target', value=6.3),
                Parameter('calibration_dir', value=str(assets['calibration_dir'])),
                Parameter('joint_prefix', value=''),
            ],
        ),
    ]
    ex = spin_in_background(*nodes)

    def ros_args(*params):
        return [a for p in params for a in ('-p', p)]

    policy_cmd = [
        sys.executable,
        '-m',
        'rollout_ros.nodes.policy_node',
        '--ros-args',
        '-r',
        f'__node:={policy}',
        *ros_args(
            f'policy_path:={assets["checkpoint"]}',
            f'camera_names:=[{CAMERA}]',
            f'camera_topic_template:={cam_template}',
            f'robot_type:={ROBOT_TYPE}',
        ),
    ]
    strategy_cmd = [
        sys.executable,
        '-m',
        'rollout_ros.strategies.base_strategy',
        '--ros-args',
        '-r',
        f'__node:=strategy_{tag}',
        *ros_args(
            f'managed_nodes:=[{policy},{camera},{driver}]',
            f'policy_service:=/{policy}/infer',
            f'camera_names:=[{CAMERA}]',
            f'camera_topic_template:={cam_template}',
            'duration:=0.0',
            *robot,
        ),
    ]
    policy_proc, policy_log = _spawn(policy_cmd, tmp_path / 'policy.log')
    strategy_proc = strategy_log = None
    try:
        from lifecycle_msgs.srv import GetState

        probe = nodes[0].create_client(GetState, f'/{policy}/get_state')
        assert probe.wait_for_service(timeout_sec=STARTUP_S), (tmp_path / 'policy.log').read_text()[-3000:]
        strategy_proc, strategy_log = _spawn(strategy_cmd, tmp_path / 'strategy.log')
        _wait_running(emulator, strategy_proc, tmp_path / 'strategy.log')
        t_fault = time.monotonic()
        policy_proc.kill()
        t_exit = _wait_exit(strategy_proc, t_fault)
        out = (tmp_path / 'strategy.log').read_text()
        figures = _measure('policy_killed', t_fault, _settled_at(emulator, t_fault), t_exit, strategy_proc.returncode)
        assert strategy_proc.returncode == 1, out[-3000:]
        assert f'/{policy}/infer' in out and policy in out and 'no fresh action' in out, out[-3000:]
        assert nodes[1].state_label == 'finalized', nodes[1].state_label
        assert all(emulator.register(i, 'Torque_Enable') == 0 for i in range(1, 7))
        assert figures['hold_s'] is not None and figures['hold_s'] < 3.0, figures
        assert figures['exit_s'] < POLICY_FAULT_EXIT_S, figures
    finally:
        for proc, log in ((policy_proc, policy_log), (strategy_proc, strategy_log)):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            if log is not None:
                log.close()
        ex.shutdown(timeout_sec=1.0)
        for node in nodes:
            node.destroy_node()


def test_emulator_process_killed(ros, assets, tmp_path):
    """The bus's far end dies (the emulator process SIGKILLed, like an adapter
    losing power): the rollout process reports the serial error itself (not
    the SDK's "Port is in use!") and exits 2 within seconds."""
    import rclpy
    from helpers import spin_in_background, wait_for

    from rollout_ros.hardware.emulator.servo_bus_emulator import KOCH_IDS
    from rollout_ros_interfaces.msg import RolloutStatus

    emu_cmd = [
        sys.executable,
        '-m',
        'rollout_ros.hardware.emulator.servo_bus_emulator',
        '--preset',
        'koch',
        '--initial',
        ','.join(str(p) for p in assets['initial'][: len(KOCH_IDS)]),
    ]
    emu = subprocess.Popen(emu_cmd, stdout=subprocess.PIPE, text=True)
    line = emu.stdout.readline()
    assert line.startswith('PORT '), line
    statuses = []
    watcher = rclpy.create_node(f'fault_watcher_{os.getpid()}')
    watcher.create_subscription(RolloutStatus, '/base_strategy/status', statuses.append, 10)
    ex = spin_in_background(watcher)
    log_path = tmp_path / 'rollout.log'
    proc, log = _spawn(_rollout_cmd(assets, line.split()[1]), log_path)
    try:
        ok = wait_for(lambda: any(s.ticks > 30 for s in statuses) or proc.poll() is not None, timeout=STARTUP_S)
        assert ok and proc.poll() is None, log_path.read_text()[-3000:]
        t_fault = time.monotonic()
        emu.kill()
        t_exit = _wait_exit(proc, t_fault)
    finally:
        for p in (proc, emu):
            if p.poll() is None:
                p.kill()
            p.wait()
        log.close()
        ex.shutdown(timeout_sec=1.0)
        watcher.destroy_node()
    out = log_path.read_text()
    figures = _measure('emulator_killed', t_fault, None, t_exit, proc.returncode)
    assert proc.returncode == 2, out[-3000:]
    assert 'rollout: error:' in out and 'servo bus failed' in out, out[-3000:]
    assert 'Port is in use' not in out and 'port closed?' in out, out[-3000:]
    assert figures['exit_s'] < BUS_FAULT_EXIT_S, figures


def test_executor_thread_death_stops_the_run(ros, emulator, rollout_config):
    """A callback that raises ends rclpy's spin and with it every timer and
    service of the process: the run stops with that error (it used to stand
    with no executor), and the stop still holds and turns torque off."""
    from helpers import wait_for

    from rollout_ros.cli import Rollout

    rollout = Rollout(rollout_config(duration=0.0))
    try:
        rollout.start()
        assert wait_for(lambda: rollout.strategy.loop.pacer.ticks > 5, timeout=30)

        def broken_callback():
            raise RuntimeError('a bug in a callback')

        camera = next(n for n in rollout.managed if n.get_name().startswith('camera'))
        t_fault = time.monotonic()
        timer = camera.create_timer(0.01, broken_callback)
        give_up = threading.Event()
        threading.Timer(20.0, give_up.set).start()  # before: the run went on with no executor
        rollout.wait(give_up)
        assert time.monotonic() - t_fault < 5.0
        assert 'executor thread died: RuntimeError: a bug in a callback' in rollout.strategy.last_error
        camera.destroy_timer(timer)
    finally:
        rollout.stop()
    assert all(emulator.register(i, 'Torque_Enable') == 0 for i in range(1, 7))


def test_destroyed_handle_in_the_wait_set_does_not_kill_the_executor():
    """rclpy's spin raises InvalidHandle when a transition destroys an entity the
    wait set still held; that is teardown, not death. A stream of them is."""
    from rclpy.exceptions import InvalidHandle

    from rollout_ros.nodes.spin import MAX_STALE_HANDLES, spin_guarded

    class Spinning:
        def __init__(self, raises: int):
            self.raises, self.calls = raises, 0

        def spin(self):
            self.calls += 1
            if self.calls <= self.raises:
                raise InvalidHandle('cannot use Destroyable because destruction was requested')

    deaths = []
    once = Spinning(raises=1)
    spin_guarded(once, deaths.append).join(timeout=5)
    assert once.calls == 2 and deaths == []

    always = Spinning(raises=10**9)
    spin_guarded(always, deaths.append).join(timeout=5)
    assert always.calls == MAX_STALE_HANDLES + 1
    assert len(deaths) == 1 and 'destroyed handles' in deaths[0]
