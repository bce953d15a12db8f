# SPDX-License-Identifier: Apache-2.0
"""The teleop (leader arm) node as a strategy sees it, for the handovers of
dagger and episodic: the leader's pose, its `~/move_to` (an actuated leader
driven to the follower at a capped speed) and `~/release` (torque off so a
hand can move it), and the follower's speed-capped approach to the leader.
"""

import numpy as np
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger

from rollout_ros.nodes.lifecycle_client import call_blocking
from rollout_ros.strategies.base_strategy import keep_positions
from rollout_ros_interfaces.srv import MoveToPose


def capped_step(current, target, max_step: float) -> tuple[np.ndarray, bool]:
    """One step from `current` towards `target`, no joint moving more than
    `max_step`; and whether `target` is reached with it."""
    current, target = np.asarray(current, float), np.asarray(target, float)
    delta = target - current
    if np.all(np.abs(delta) <= max_step):
        return target, True
    return current + np.clip(delta, -max_step, max_step), False


class LeaderLink:
    def __init__(self, strategy, teleop: str):
        """`strategy`: a BaseStrategyNode (its link node carries the calls);
        `teleop`: the teleop node's name, absolute or in the strategy's namespace."""
        self.strategy = strategy
        self.positions: dict[str, tuple[float, object]] = {}
        link, group = strategy._link, strategy._io_group
        teleop = strategy.node_path(teleop)
        strategy._subs.append(
            link.create_subscription(
                JointState, f'{teleop}/joint_states', keep_positions(self.positions), 10, callback_group=group
            )
        )
        self._move = link.create_client(MoveToPose, f'{teleop}/move_to', callback_group=group)
        self._release = link.create_client(Trigger, f'{teleop}/release', callback_group=group)

    def destroy(self) -> None:
        for client in (self._move, self._release):
            self.strategy._link.destroy_client(client)

    def pose(self, names: list[str]) -> list[float] | None:
        """The leader's fresh joint positions (radians, follower joint space), or None."""
        return self.strategy.fresh_positions(self.positions, names)

    def move_to(self, action, max_speed: float) -> float | None:
        """Blocking (worker thread): start driving an actuated leader to the
        follower `action`; the planned duration [s], or None when refused."""
        names, positions = self.strategy.mapper.joint_command(action)
        req = MoveToPose.Request()
        req.target = JointState(name=names, position=positions)
        req.max_speed = float(max_speed)
        resp = call_blocking(self._move, req, 5.0) if self._move.wait_for_service(timeout_sec=1.0) else None
        if resp is None or not resp.success:
            self.strategy.get_logger().warning(f'leader move refused: {resp.message if resp else "no teleop node"}')
            return None
        return resp.duration_s

    def release(self) -> None:
        """Blocking (worker thread): torque off (a move under way stops)."""
        if self._release.wait_for_service(timeout_sec=1.0):
            call_blocking(self._release, Trigger.Request(), 2.0)
