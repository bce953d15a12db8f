"""Follower-arm driver node.

Publishes `joint_states` (radians) at `state_rate_hz`, executes
`joint_commands` (JointState positions, by name) through the arm's safety
clipping, and publishes each executed command on `~/executed_commands`.
A watchdog holds the present position when commands stop arriving for
`command_timeout_s`. Torque goes on at activate (goal = present first), the
arm holds at deactivate, and torque goes off at cleanup/shutdown when
`disable_torque_on_shutdown` is set.
"""

import threading
import time

import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from sensor_msgs.msg import JointState

from rollout_ros.core.errors import ConfigError
from rollout_ros.hardware.dynamixel.bus import BusError
from rollout_ros.hardware.follower_arm import FollowerArm
from rollout_ros.nodes.managed_node import ManagedNode
from rollout_ros.nodes.robot_params import declare_robot_params, load_robot
from rollout_ros.nodes.spin import run_node


class RobotDriverNode(ManagedNode):

    def __init__(self, node_name: str = 'robot_driver', **kwargs):
        super().__init__(node_name, **kwargs)
        declare_robot_params(self)
        self.declare('robot_port', '/dev/ttyACM0', 'Serial port of the servo bus.')
        self.declare('state_rate_hz', 50.0, 'Rate of joint_states [Hz].', min_value=1.0, max_value=1000.0)
        self.declare('max_relative_target', 0.35,
                     'Largest step of one command from the present position [rad]; 0 disables '
                     '(not recommended).', read_only=False, min_value=0.0, max_value=6.3)
        self.declare('command_timeout_s', 0.25,
                     'Hold the present position when no command came for this long [s].',
                     read_only=False, min_value=0.01, max_value=10.0)
        self.declare('disable_torque_on_shutdown', True,
                     'Turn torque off at cleanup/shutdown (the arm goes limp).')
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

    def configure(self) -> None:
        port = self.param('robot_port')
        spec, calibration = load_robot(self, port)
        try:
            arm = FollowerArm(spec, port, calibration, self.param('max_relative_target'))
            rewritten = arm.connect()
        except BusError as e:
            raise ConfigError('robot_port', str(e),
                              'check the port name, that the arm is powered and its cable plugged.') from e
        self.arm = arm
        if rewritten:
            self.get_logger().info(f'wrote calibration to motors {rewritten}')
        self.arm.read()
        prefix = self.param('joint_prefix')
        self._names = [f'{prefix}{m}' for m in arm.joint_names]
        self._by_ros_name = dict(zip(self._names, arm.joint_names))
        self._state_pub = self.create_lifecycle_publisher(JointState, 'joint_states', 10)
        self._exec_pub = self.create_lifecycle_publisher(JointState, '~/executed_commands', 10)

    def activate(self) -> None:
        self.arm.enable_torque()
        self._holding = True
        self._active = True
        self._cmd_sub = self.create_subscription(JointState, 'joint_commands', self._on_command, 10,
                                                 callback_group=self._group)
        self._timer = self.create_timer(1.0 / self.param('state_rate_hz'), self._on_timer,
                                        callback_group=self._group)

    def deactivate(self) -> None:
        self._active = False
        for ent, destroy in ((self._timer, self.destroy_timer),
                             (self._cmd_sub, self.destroy_subscription)):
            if ent is not None:
                destroy(ent)
        self._timer = self._cmd_sub = None
        if self.arm is not None and self.arm.torque_enabled:
            self.arm.hold()

    def cleanup(self) -> None:
        self._release()
        for pub in (self._state_pub, self._exec_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self._state_pub = self._exec_pub = None

    def shutdown(self) -> None:
        self.deactivate()
        self._release()

    def _release(self) -> None:
        if self.arm is not None:
            try:
                self.arm.disconnect(self.param('disable_torque_on_shutdown'))
            except BusError as e:
                self.get_logger().error(f'disconnect: {e}')
            self.arm = None

    def _stamp_msg(self, positions: dict[str, float]) -> JointState:
        msg = JointState()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.name = [n for n in self._names]
        msg.position = [positions[m] for m in self.arm.joint_names]
        return msg

    def _on_timer(self) -> None:
        if not self._active or self.arm is None:
            return
        try:
            present = self.arm.read()
        except BusError as e:
            self.bus_errors += 1
            self.get_logger().error(f'reading joint states: {e}', throttle_duration_sec=1.0)
            return
        self._state_pub.publish(self._stamp_msg(present))
        stale = time.monotonic() - self._last_cmd_time > self.param('command_timeout_s')
        if stale and not self._holding:
            self.get_logger().warning('commands stopped: holding the present position')
            self.arm.hold()
            self._holding = True

    def _on_command(self, msg: JointState) -> None:
        if not self._active or self.arm is None:
            return
        if len(msg.name) != len(msg.position):
            self.get_logger().error('joint_commands: name and position lengths differ; ignored',
                                    throttle_duration_sec=1.0)
            return
        try:
            target = {self._by_ros_name[n]: p for n, p in zip(msg.name, msg.position)}
        except KeyError as e:
            self.get_logger().error(f'joint_commands: unknown joint {e}; ignored',
                                    throttle_duration_sec=1.0)
            return
        try:
            sent = self.arm.send(target)
        except BusError as e:
            self.bus_errors += 1
            self.get_logger().error(f'sending command: {e}', throttle_duration_sec=1.0)
            return
        self._last_cmd_time = time.monotonic()
        self._holding = False
        out = JointState()
        out.header = msg.header
        out.name = [n for n in msg.name]
        out.position = [sent[self._by_ros_name[n]] for n in msg.name]
        self._exec_pub.publish(out)


def main(args=None):
    run_node(RobotDriverNode, args)


if __name__ == '__main__':
    main()
