# SPDX-License-Identifier: Apache-2.0
"""Teleoperation node: a leader arm's pose in the follower's joint space.

`~/joint_states` (sensor_msgs/JointState), at `rate_hz` while active: the
leader's pose as follower joint positions [rad] under the follower's joint
names. Each joint is what lerobot's teleop loop would command: the leader's
LeRobot value (leader calibration) read back as follower radians (follower
calibration), so publishing it as the follower's command copies the pose.

`~/move_to` (rollout_ros_interfaces/srv/MoveToPose), actuated leaders only:
drives the leader to a follower-space pose at a capped speed on a worker
thread, so states keep flowing; the reply comes as the move starts, with its
planned duration. `~/release` (std_srvs/srv/Trigger): torque off, the leader
goes limp again (a Koch leader's gripper keeps its lerobot spring).
"""

import math
import sys
import threading

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from rollout_ros.core.errors import ConfigError
from rollout_ros.hardware.bimanual_leader import BimanualLeader
from rollout_ros.hardware.bus_errors import BusError
from rollout_ros.hardware.leader_arm import LeaderArm
from rollout_ros.hardware.leaders import LeaderFollowerMap, get_leader_spec, load_leader_calibration
from rollout_ros.hardware.motion import MoveOutcome
from rollout_ros.nodes.managed_node import ManagedNode
from rollout_ros.nodes.robot_params import declare_robot_params, load_robot
from rollout_ros.nodes.spin import run_node
from rollout_ros_interfaces.srv import MoveToPose


class TeleopNode(ManagedNode):
    def __init__(self, node_name: str = 'teleop', **kwargs):
        super().__init__(node_name, **kwargs)
        self.declare(
            'teleop_type',
            'koch_leader',
            'Leader arm type, as lerobot names it (koch_leader, so100_leader, so101_leader).',
        )
        self.declare('teleop_port', '/dev/ttyACM1', 'Serial port of the leader arm.')
        self.declare(
            'teleop_left_port', '', 'Bimanual leaders (bi_so_leader, bi_openarm_mini): serial port of the left arm.'
        )
        self.declare('teleop_right_port', '', 'Bimanual leaders: serial port of the right arm.')
        self.declare('teleop_side', '', "openarm_mini: left or right (lerobot's per-side joint directions); '' = none.")
        self.declare(
            'teleop_id',
            'leader',
            'Leader calibration id: <teleop_calibration_dir>/<teleop_id>.json, or by default '
            "lerobot's <calibration root>/teleoperators/<name>/<teleop_id>.json, <name> being "
            "lerobot's (koch_leader, so_leader for both SO leaders).",
        )
        self.declare(
            'teleop_calibration_dir',
            '',
            "Folder holding <teleop_id>.json (lerobot --teleop.calibration_dir); '' = lerobot's "
            "default. calibration_dir is the follower's, whose joint space the pose is published in.",
        )
        # The follower's calibration and names: the pose is published in its joint space.
        declare_robot_params(self)
        self.declare(
            'rate_hz',
            60.0,
            'Rate of ~/joint_states and of goals during ~/move_to [Hz].',
            min_value=1.0,
            max_value=1000.0,
        )
        self.declare(
            'move_speed',
            0.5,
            'Speed cap of ~/move_to on every leader joint when the request gives none [rad/s].',
            read_only=False,
            min_value=0.01,
            max_value=10.0,
        )
        self.declare(
            'move_timeout_s',
            10.0,
            'Longest ~/move_to accepted; a farther target is refused [s].',
            read_only=False,
            min_value=0.1,
            max_value=600.0,
        )
        self.arm: LeaderArm | None = None
        self.bridge: LeaderFollowerMap | None = None
        self.move_outcome: MoveOutcome | None = None
        self._pub = None
        self._timer = None
        self._teleop_services = []
        self._active = False
        self._move_thread: threading.Thread | None = None
        self._move_cancel = threading.Event()
        self._timer_group = MutuallyExclusiveCallbackGroup()
        self._service_group = MutuallyExclusiveCallbackGroup()

    @property
    def moving(self) -> bool:
        return self._move_thread is not None and self._move_thread.is_alive()

    # -- lifecycle --------------------------------------------------------------------------

    def configure(self) -> None:
        port = self.param('teleop_port')
        spec = get_leader_spec(self.param('teleop_type'), self.param('use_degrees'), self.param('teleop_side'))
        calibration = load_leader_calibration(
            self.param('teleop_calibration_dir') or None, spec, self.param('teleop_id'), port
        )
        follower_spec, follower_calibration = load_robot(self, '<robot_port>')
        self.bridge = LeaderFollowerMap(
            spec.joint_maps(calibration), follower_spec.joint_maps(follower_calibration), spec.follower_map
        )
        if spec.arms:
            ports = {side: self.param(f'teleop_{side}_port') for side in ('left', 'right')}
            for side, side_port in ports.items():
                if not side_port:
                    raise ConfigError(
                        f'teleop_{side}_port',
                        f'{spec.type} needs the port of its {side} arm.',
                        f'set teleop_{side}_port (CLI: --teleop.{side}_arm_config.port).',
                    )
            arm = BimanualLeader(spec, ports, calibration)
        else:
            arm = LeaderArm(spec, port, calibration, actuated=spec.actuated)
        try:
            rewritten = arm.connect()
        except BusError as e:
            self._close(arm)
            raise ConfigError(
                'teleop_port', str(e), 'check the port name, that the leader is powered and its cable plugged.'
            ) from e
        self.arm = arm
        if rewritten:
            self.get_logger().info(f'wrote calibration to leader motors {rewritten}')
        prefix = self.param('joint_prefix')
        self._names = [f'{prefix}{m}' for m in follower_spec.motor_names]
        self._by_ros_name = {f'{prefix}{m}': m for m in follower_spec.motor_names}
        self._pub = self.create_lifecycle_publisher(JointState, '~/joint_states', 10)
        self._teleop_services = [
            self.create_service(MoveToPose, '~/move_to', self._on_move_to, callback_group=self._service_group),
            self.create_service(Trigger, '~/release', self._on_release, callback_group=self._service_group),
        ]

    def activate(self) -> None:
        self._active = True
        self._timer = self.create_timer(1.0 / self.param('rate_hz'), self._on_timer, callback_group=self._timer_group)

    def deactivate(self) -> None:
        self._active = False
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        # A leader that finished a move keeps holding it: letting go of an arm
        # nobody may be holding is the caller's decision (~/release).
        self._stop_move()

    def cleanup(self) -> None:
        self._stop_move()
        for srv in self._teleop_services:
            self.destroy_service(srv)
        self._teleop_services = []
        if self._pub is not None:
            self.destroy_lifecycle_publisher(self._pub)
            self._pub = None
        arm, self.arm = self.arm, None
        if arm is not None:
            self._close(arm)

    def _close(self, arm: LeaderArm) -> None:
        try:
            arm.disconnect()  # torque off, as lerobot's disconnect
        except BusError as e:
            self.get_logger().error(f'disconnecting the leader: {e}')

    # -- states -----------------------------------------------------------------------------

    def _on_timer(self) -> None:
        if not self._active or self.arm is None:
            return
        try:
            leader = self.arm.read()
        except BusError as e:
            # Not last_error: a glitch the next read survives is no failed run.
            self.get_logger().error(f'reading the leader: {e}', throttle_duration_sec=1.0)
            return
        follower = self.bridge.to_follower(leader)
        msg = JointState()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.name = list(self._names)
        msg.position = [follower[self._by_ros_name[n]] for n in self._names]
        self._pub.publish(msg)

    # -- services ---------------------------------------------------------------------------

    def _on_move_to(self, request, response):
        response.success = False
        refusal = self._move_refusal(request)
        if refusal:
            response.message = refusal
            return response
        target = self.bridge.to_leader(
            {self._by_ros_name[n]: p for n, p in zip(request.target.name, request.target.position)}
        )
        speed = request.max_speed or self.param('move_speed')
        timeout = self.param('move_timeout_s')
        try:
            planned = self.arm.move_duration(target, speed)
        except BusError as e:
            response.message = f'cannot read the leader: {e}'
            return response
        if planned > timeout:
            response.message = (
                f'refused: the move would take {planned:.2f} s at {speed:g} rad/s, more than '
                f'move_timeout_s={timeout:g}; raise max_speed or move_timeout_s.'
            )
            return response
        self._move_cancel.clear()
        self.move_outcome = None
        rate = self.param('rate_hz')
        self._move_thread = threading.Thread(
            target=self._move, args=(target, speed, rate, timeout), name='teleop-move', daemon=True
        )
        self._move_thread.start()
        response.success = True
        response.duration_s = planned
        response.message = f'moving at up to {speed:g} rad/s, about {planned:.2f} s'
        return response

    def _move_refusal(self, request) -> str:
        if not self._active or self.arm is None:
            return f'refused: the teleop node is {self.state_label}, not active.'
        if not self.arm.actuated:
            return (
                f'refused: {self.arm.spec.type} is not actuated (lerobot never drives it, a human '
                'moves it); bring the follower to the leader instead.'
            )
        if self.moving:
            return 'refused: a move is already running; wait for it to end or call ~/release.'
        target = request.target
        if len(target.name) != len(target.position):
            return 'refused: target has different numbers of names and positions.'
        unknown = [n for n in target.name if n not in self._by_ros_name]
        if unknown:
            return f'refused: unknown joints {unknown}; the follower joints are {self._names}.'
        if not all(math.isfinite(p) for p in target.position):
            return 'refused: target positions must be finite numbers.'
        if not (math.isfinite(request.max_speed) and request.max_speed >= 0):
            return f'refused: max_speed must be >= 0 (0 = move_speed), got {request.max_speed}.'
        return ''

    def _move(self, target: dict[str, float], speed: float, rate: float, timeout: float) -> None:
        try:
            outcome = self.arm.move_to(target, speed, rate, timeout, cancelled=self._move_cancel.is_set)
        except Exception as e:  # noqa: BLE001 - a worker's failure must reach the log, not vanish
            self.get_logger().error(f'moving the leader: {type(e).__name__}: {e}')
            return
        self.move_outcome = outcome
        if outcome is MoveOutcome.ARRIVED:
            self.get_logger().info('leader reached the target; holding it')
        else:
            self.get_logger().warning(f'leader move ended early: {outcome.value}')

    def _stop_move(self) -> None:
        self._move_cancel.set()
        thread = self._move_thread
        if thread is not None:
            # The move checks for cancellation every goal period.
            thread.join(timeout=2.0)
        self._move_thread = None

    def _on_release(self, request, response):
        if self.arm is None:
            response.success = False
            response.message = 'refused: the teleop node is not configured.'
            return response
        self._stop_move()
        try:
            self.arm.release()
        except BusError as e:
            response.success = False
            response.message = f'torque off failed: {e}'
            return response
        response.success = True
        kept = sorted(self.arm.torqued)
        response.message = 'torque off' + (f' (kept on {kept}, as lerobot does)' if kept else '')
        return response


def main(args=None):
    return run_node(TeleopNode, args)


if __name__ == '__main__':
    sys.exit(main())
