# SPDX-License-Identifier: Apache-2.0
"""Follower-arm driver node.

Publishes `joint_states` (radians) at `state_rate_hz`, executes
`joint_commands` (JointState positions, by name) through the arm's safety
clipping, and publishes each executed command on `~/executed_commands`.
A watchdog holds the present position when commands stop arriving for
`command_timeout_s`. Torque goes on at activate (goal = present first), the
arm holds at deactivate, and at cleanup/shutdown it optionally drives back to
the pose it had at activation (speed-capped) and turns torque off when
`disable_torque_on_shutdown` is set.

A bus that keeps failing (`max_bus_errors` transactions in a row) takes the
node through ErrorProcessing to unconfigured: nothing more is written, so
the servos keep their last goal, and supervisors see the transition. Any
exception of the read/write path counts as a bus error (an escaped one
would kill the executor thread). configure starts again from scratch, with
every fault counter reset.

Only one node commands the arm: with `command_source` set (the run's
strategy; the rollout CLI and the launch files set it) every command is
checked against the publisher that sent it, and a command of any other node
is dropped and logged as an error naming that node. Unbound, commands run
only while a single node publishes on `joint_commands`.
"""

import json
import sys
import threading
import time

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.subscription import MessageInfo
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from rollout_ros.core.errors import ConfigError
from rollout_ros.core.limits import LIMITS
from rollout_ros.core.stats import CommandTimes
from rollout_ros.hardware.bus_errors import BusError
from rollout_ros.hardware.follower_arm import FollowerArm
from rollout_ros.nodes.managed_node import ManagedNode
from rollout_ros.nodes.robot_params import declare_robot_params, load_robot
from rollout_ros.nodes.spin import run_node

UNKNOWN_NODE = '_NODE_NAME_UNKNOWN_'  # rmw's name for a node not discovered yet
# Depth 1 both ends: after a stall only the newest command is executed, never
# a backlog of stale ones replayed at full speed.
COMMAND_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=1)


class RobotDriverNode(ManagedNode):
    def __init__(self, node_name: str = 'robot_driver', **kwargs):
        super().__init__(node_name, **kwargs)
        declare_robot_params(self)
        self.declare(
            'robot_port', '/dev/ttyACM0', 'Serial port of the servo bus (CAN robots: the CAN channel, e.g. can0).'
        )
        # CAN robots (openarm_follower), as lerobot's flags of the same names.
        self.declare(
            'can_interface',
            'socketcan',
            'python-can interface of a CAN robot (socketcan on the robot; virtual or udp_multicast for emulated arms).',
        )
        self.declare('use_can_fd', True, 'CAN FD frames (OpenArm runs CAN FD).')
        self.declare(
            'can_bitrate', 1_000_000, 'Nominal CAN bitrate [bit/s] (SocketCAN: set by ip link).', min_value=10_000
        )
        self.declare('can_data_bitrate', 5_000_000, 'CAN FD data-phase bitrate [bit/s].', min_value=10_000)
        self.declare('state_rate_hz', 50.0, 'Rate of joint_states [Hz].', min_value=1.0, max_value=1000.0)
        self.declare(
            'max_relative_target',
            0.35,
            'Largest step of one command from the present position [rad]; 0 disables (not recommended).',
            read_only=False,
            **LIMITS['max_relative_target'].kwargs(),
        )
        self.declare(
            'max_relative_target_per_joint',
            '',
            'JSON map joint -> step cap [rad] overriding max_relative_target for those joints, e.g. {"gripper": 0.8}.',
        )
        self.declare(
            'command_timeout_s',
            0.25,
            'Hold the present position when no command came for this long [s].',
            read_only=False,
            min_value=0.01,
            max_value=10.0,
        )
        self.declare('disable_torque_on_shutdown', True, 'Turn torque off at cleanup/shutdown (the arm goes limp).')
        self.declare(
            'return_to_start', False, 'At cleanup/shutdown, first drive back to the pose the arm had at activation.'
        )
        self.declare(
            'return_speed', 0.5, 'Joint speed cap of the return to start [rad/s].', min_value=0.01, max_value=10.0
        )
        self.declare(
            'max_bus_errors',
            5,
            'Consecutive failed bus transactions before the node gives up (error transition).',
            min_value=1,
        )
        self.declare(
            'command_rate_hz',
            0.0,
            'Rate commands are expected at, for the period error of ~/command_timing [Hz]; '
            '0 = the median interval between commands.',
            min_value=0.0,
        )
        self.command_times = CommandTimes()
        self.hold_times = CommandTimes()  # the watchdog's goal writes, which are no commands
        self.direct_commander = False  # set by a strategy in this process that calls execute()
        self._last_read_time = 0.0
        self.create_service(Trigger, '~/command_timing', self._on_command_timing)
        self.declare(
            'command_source',
            '',
            'Fully qualified name of the one node whose joint_commands this driver executes (the '
            "run's strategy, e.g. /robot1/base_strategy); commands of any other publisher are "
            "dropped and logged as errors. '' = unbound: commands are executed only while a single "
            'node publishes joint_commands.',
        )
        self._senders: dict[bytes, tuple[bool, str]] = {}  # publisher gid -> (may command, node)
        self._publisher_count = -1
        self.foreign_commands = 0  # commands dropped because another node sent them
        self.arm: FollowerArm | None = None
        self._state_pub = None
        self._exec_pub = None
        self._timer = None
        self._cmd_sub = None
        self._last_cmd_time = 0.0
        self._holding = True
        self._active = False
        self._group = MutuallyExclusiveCallbackGroup()
        self.bus_errors = 0
        self._consecutive_errors = 0
        self.faulted = False
        self.start_pose: dict[str, float] | None = None

    def configure(self) -> None:
        self.faulted = False
        self.bus_errors = 0
        self._consecutive_errors = 0
        self._holding = True
        self._last_cmd_time = 0.0
        port = self.param('robot_port')
        spec, calibration = load_robot(self, port)
        if spec.arms:
            raise ConfigError(
                'robot_type',
                f'{spec.type} has {len(spec.arms)} arms on separate buses.',
                'run one robot_driver per arm (robot_type of the arm, robot_id '
                '<id>_left/<id>_right, joint_prefix left_/right_); the rollout CLI and '
                'the launch file do this for bi_* robots.',
            )
        try:
            arm = FollowerArm(spec, port, calibration, self._step_caps(spec), can_options=self._can_options())
            rewritten = arm.connect()
        except BusError as e:
            raise ConfigError(
                'robot_port', str(e), 'check the port name, that the arm is powered and its cable plugged.'
            ) from e
        self.arm = arm
        if rewritten:
            self.get_logger().info(f'wrote calibration to motors {rewritten}')
        self.arm.read()
        prefix = self.param('joint_prefix')
        self._names = [f'{prefix}{m}' for m in arm.joint_names]
        self._by_ros_name = dict(zip(self._names, arm.joint_names))
        self._state_pub = self.create_lifecycle_publisher(JointState, 'joint_states', 10)
        self._exec_pub = self.create_lifecycle_publisher(JointState, '~/executed_commands', 10)

    def _can_options(self) -> dict:
        return dict(
            interface=self.param('can_interface'),
            fd=self.param('use_can_fd'),
            bitrate=self.param('can_bitrate'),
            data_bitrate=self.param('can_data_bitrate'),
        )

    def _step_caps(self, spec) -> dict[str, float]:
        caps = {m: self.param('max_relative_target') for m in spec.motor_names}
        text = self.param('max_relative_target_per_joint').strip()
        if text:
            try:
                per_joint = json.loads(text)
            except json.JSONDecodeError as e:
                raise ConfigError(
                    'max_relative_target_per_joint',
                    f'not valid JSON ({e}).',
                    'e.g. {"gripper": 0.8, "wrist_roll": 0.5}.',
                ) from e
            unknown = set(per_joint) - set(caps)
            if unknown:
                raise ConfigError(
                    'max_relative_target_per_joint',
                    f'unknown joints {sorted(unknown)}.',
                    f'use joint names of {spec.type}: {spec.motor_names}.',
                )
            caps.update({m: float(v) for m, v in per_joint.items()})
        return caps

    def activate(self) -> None:
        self.start_pose = self.arm.read()
        self.arm.enable_torque()
        self._holding = True
        self._active = True
        self._senders.clear()
        self._publisher_count = -1
        self._cmd_sub = self.create_subscription(
            JointState, 'joint_commands', self._on_command, COMMAND_QOS, callback_group=self._group
        )
        self._timer = self.create_timer(1.0 / self.param('state_rate_hz'), self._on_timer, callback_group=self._group)

    def deactivate(self) -> None:
        self._active = False
        for ent, destroy in ((self._timer, self.destroy_timer), (self._cmd_sub, self.destroy_subscription)):
            if ent is not None:
                destroy(ent)
        self._timer = self._cmd_sub = None
        if self.arm is not None and self.arm.torque_enabled and not self.faulted:
            self.arm.hold()

    def on_deactivate(self, state):
        ret = super().on_deactivate(state)
        # ERROR (not FAILURE) routes a faulted driver through ErrorProcessing.
        return TransitionCallbackReturn.ERROR if self.faulted else ret

    def cleanup(self) -> None:
        try:
            self._release()
        finally:
            for pub in (self._state_pub, self._exec_pub):
                if pub is not None:
                    self.destroy_lifecycle_publisher(pub)
            self._state_pub = self._exec_pub = None

    def abort(self) -> None:
        # Hold, then the configured torque policy; nothing left to do once released.
        self._teardown()
        if self.arm is not None:  # cut short between the lifecycle flags and the release
            self._release()

    def _release(self) -> None:
        arm, self.arm = self.arm, None
        if arm is None:
            return
        if self.faulted:
            # The bus is unreliable: write nothing, the servos keep their last
            # goal; only the port is closed so a reconfigure can open it again.
            try:
                arm.disconnect(disable_torque=False)
            except Exception as e:  # noqa: BLE001 - a dead port may fail to close
                self.get_logger().warning(f'closing the faulted port: {e}')
            return
        try:
            if self.param('return_to_start') and self.start_pose and arm.torque_enabled:
                self.get_logger().info('returning to the start pose')
                if not arm.move_to(self.start_pose, self.param('return_speed'), self.param('state_rate_hz')):
                    self.get_logger().warning('start pose too far for the return timeout; stopped')
            arm.disconnect(self.param('disable_torque_on_shutdown'))
        except Exception as e:
            # Torque left on (or a return cut short) must not pass for a clean
            # stop: the transition fails and the process exits non-zero.
            self.last_error = f'releasing the arm: {e}'
            try:
                arm.bus._close()
            except Exception:  # noqa: BLE001
                pass
            raise BusError(self.last_error) from e

    def _stamp_msg(self, positions: dict[str, float]) -> JointState:
        msg = JointState()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.name = [n for n in self._names]
        msg.position = [positions[m] for m in self.arm.joint_names]
        return msg

    def _bus_failed(self, what: str, error: Exception) -> None:
        if not isinstance(error, BusError):
            error = f'{type(error).__name__}: {error}'
        self.bus_errors += 1
        self._consecutive_errors += 1
        self.get_logger().error(f'{what}: {error}', throttle_duration_sec=1.0)
        if self._consecutive_errors >= self.param('max_bus_errors') and not self.faulted:
            self.faulted = True
            self._active = False
            self.last_error = (
                f'servo bus failed {self._consecutive_errors} times in a row ({error}); servos keep their last goal'
            )
            self.get_logger().error(self.last_error)
            # A transition cannot run inside this callback (it destroys the
            # callback's own timer), so it goes to a thread.
            threading.Thread(target=self.trigger_deactivate, daemon=True).start()

    def read_state(self) -> JointState | None:
        """Read the joints now and publish them on joint_states (any thread);
        None when inactive or the bus failed."""
        if not self._active or self.arm is None:
            return None
        try:
            present = self.arm.read()
        except Exception as e:  # noqa: BLE001 - any failure of the bus path is a bus error
            self._bus_failed('reading joint states', e)
            return None
        self._last_read_time = time.monotonic()
        self._consecutive_errors = 0
        msg = self._stamp_msg(present)
        self._state_pub.publish(msg)
        return msg

    # Who may command ---------------------------------------------------------
    def _bound_source(self) -> str:
        source = self.param('command_source').rstrip('/')
        if source and not source.startswith('/'):
            source = f'{self.get_namespace().rstrip("/")}/{source}'
        return source

    def _classify_senders(self) -> None:
        """Map each publisher of joint_commands to (may command, node name).

        Graph queries cost microseconds; they run when a command comes from a
        publisher not seen yet and when the number of publishers changes."""
        topic = self._cmd_sub.topic_name
        infos = self.get_publishers_info_by_topic(topic)
        # The graph can know an endpoint before the name of its node: such a
        # publisher is not classified yet (its commands wait), but it counts.
        nodes = {
            bytes(i.endpoint_gid): f'{i.node_namespace.rstrip("/")}/{i.node_name}'
            for i in infos
            if i.node_name != UNKNOWN_NODE
        }
        bound = self._bound_source()
        sole = len(set(nodes.values())) + len(infos) - len(nodes) == 1
        senders = {gid: (node == bound if bound else sole, node) for gid, node in nodes.items()}
        refused = sorted({node for gid, (ok, node) in senders.items() if not ok and gid not in self._senders})
        if refused and bound:
            self.get_logger().error(
                f'{", ".join(refused)} publish{"es" if len(refused) == 1 else ""} on {topic}: '
                f'ignored, this driver executes only the commands of {bound} (command_source)'
            )
        elif refused:
            self.get_logger().error(
                f'{len(set(nodes.values()))} nodes publish on {topic} '
                f'({", ".join(sorted(set(nodes.values())))}): no command is executed until '
                'one remains; set command_source to the node that commands this arm'
            )
        self._senders = senders

    def _sender(self, info: MessageInfo) -> tuple[bool, str]:
        """(may command, node name) of the publisher of one message."""
        gid = info.get('publisher_gid')
        if gid is None:
            return False, 'an unknown publisher'
        gid = bytes(gid['data'])
        # The graph can learn of a publisher's node a moment after its first
        # sample arrives: a short wait, once per publisher, instead of a lost command.
        deadline = time.monotonic() + 0.1
        while gid not in self._senders:
            self._classify_senders()
            if gid in self._senders or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        # A publisher still not in the graph is not known to be ours: dropped.
        return self._senders.get(gid, (False, 'a publisher not yet discovered'))

    def _on_timer(self) -> None:
        if not self._active or self.arm is None:
            return
        count = self._cmd_sub.get_publisher_count()
        if count != self._publisher_count:
            self._publisher_count = count
            self._classify_senders()
        # A strategy in this process reads the state itself right before each
        # observation, as lerobot-rollout does; a timer read in between would
        # only hold the bus when its next command is due. The timer reads when
        # those reads stop.
        rate = self.param('command_rate_hz')
        fresh = max(2.0 / self.param('state_rate_hz'), 1.5 / rate if rate > 0 else 0.0)
        if not (self.direct_commander and time.monotonic() - self._last_read_time < fresh):
            if self.read_state() is None:
                return
        stale = time.monotonic() - self._last_cmd_time > self.param('command_timeout_s')
        if stale and not self._holding:
            self.get_logger().warning('commands stopped: holding the present position')
            try:
                self.arm.hold()
                self.hold_times.add(self.arm.last_send_s)
            except Exception as e:  # noqa: BLE001
                self._bus_failed('holding', e)
                return
            self._holding = True

    def _on_command(self, msg: JointState, info: MessageInfo) -> None:
        if not self._active or self.arm is None:
            return
        allowed, sender = self._sender(info)
        if not allowed:
            self.foreign_commands += 1
            self.get_logger().error(
                f'{self.foreign_commands} commands ignored so far, latest from {sender}', throttle_duration_sec=5.0
            )
            return
        if self.direct_commander:
            return  # the strategy in this process calls execute(); the topic copy is for observers
        self.execute(msg)

    def execute(self, msg: JointState) -> None:
        """Write one command to the bus (joint_commands semantics), from any thread.

        A strategy composed in this process calls it from its control loop:
        the command reaches the bus without waiting for this node's executor
        (shared there with cameras and timers) or a DDS hop, which is where
        the robot's jitter came from."""
        if not self._active or self.arm is None:
            return
        if len(msg.name) != len(msg.position):
            self.get_logger().error(
                'joint_commands: name and position lengths differ; ignored', throttle_duration_sec=1.0
            )
            return
        # Commands may address several drivers (one per arm): take our joints.
        target = {self._by_ros_name[n]: p for n, p in zip(msg.name, msg.position) if n in self._by_ros_name}
        if not target:
            self.get_logger().warning(
                f'joint_commands names none of our joints {self._names} (got {list(msg.name)}); ignored',
                throttle_duration_sec=5.0,
            )
            return
        try:
            sent = self.arm.send(target)
        except Exception as e:  # noqa: BLE001 - any failure of the bus path is a bus error
            self._bus_failed('sending command', e)
            return
        self._last_cmd_time = time.monotonic()
        self.command_times.add(self.arm.last_send_s)
        self._holding = False
        out = JointState()
        out.header = msg.header
        out.name = [n for n in msg.name if n in self._by_ros_name]
        out.position = [sent[self._by_ros_name[n]] for n in out.name]
        self._exec_pub.publish(out)

    def command_timing(self, reset: bool = False, period_s: float | None = None) -> dict:
        """Figures of the commands written since the last reset (see core.stats.command_timing)."""
        if period_s is None and self.param('command_rate_hz') > 0:
            period_s = 1.0 / self.param('command_rate_hz')
        figures = self.command_times.timing(period_s)
        # Gaps longer than command_timeout_s hold the arm: goal writes that are no commands.
        holds = self.hold_times.values()
        figures['holds'] = int(holds.size)
        if holds.size:  # when (CLOCK_MONOTONIC), to tell them from commands in a bus trace
            figures['hold_times_s'] = [round(float(t), 6) for t in holds[:100]]
        if reset:
            self.command_times.reset()
            self.hold_times.reset()
        return figures

    def _on_command_timing(self, _request, response):
        response.message = json.dumps(self.command_timing(reset=True))
        response.success = True
        return response


def main(args=None):
    return run_node(RobotDriverNode, args)


if __name__ == '__main__':
    sys.exit(main())
