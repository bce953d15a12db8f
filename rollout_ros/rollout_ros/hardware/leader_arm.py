# SPDX-License-Identifier: Apache-2.0
"""A leader arm over its servo bus: limp so a human can move it, read in
radians with the follower's conventions (core/joint_units). An actuated
leader can also be driven to a pose and hold it, so that a human taking over
from a policy starts where the follower is. No rclpy here.
"""

import threading

from rollout_ros.core.calibration import MotorCalibration
from rollout_ros.hardware.buses import make_bus
from rollout_ros.hardware.follower_arm import CALIBRATION_REGISTERS
from rollout_ros.hardware.leaders import LeaderSpec
from rollout_ros.hardware.motion import MoveOutcome, linear_move, move_duration


class NotActuatedError(RuntimeError):
    """A move was asked of a leader that is only ever moved by hand."""


class LeaderArm:
    def __init__(self, spec: LeaderSpec, port: str, calibration: dict[str, MotorCalibration], actuated: bool, bus=None):
        self.spec = spec
        self.port = port
        self.calibration = calibration
        self.actuated = actuated
        self.joint_maps = spec.joint_maps(calibration)
        self.bus = bus or make_bus(spec, port)
        # Serialises multi-transaction changes (torque with goals); single
        # transactions rely on the bus's own lock.
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._held = tuple(m for m, _ in spec.held_goals)
        self._torqued: frozenset[str] = frozenset()

    @property
    def joint_names(self) -> list[str]:
        return self.spec.motor_names

    @property
    def torqued(self) -> frozenset[str]:
        """Joints this arm last turned torque on for (held springs, a move)."""
        return self._torqued

    def connect(self) -> list[str]:
        """Open the bus, make the servos match the calibration file and set
        them up for teleoperation as lerobot does.

        Returns the names of the motors whose calibration had to be rewritten.
        """
        self.bus.connect()
        with self._lock:
            self.bus.set_torque(False)
            self._torqued = frozenset()
            rewritten = self._write_calibration()
            for motor, register, value in self.spec.setup_registers:
                if self.bus.read(register, motor) != value:
                    self.bus.write(register, motor, value)
            # lerobot's order: torque on, then the goal.
            for motor, value in self.spec.held_goals:
                self.bus.set_torque(True, [motor])
                self.bus.write('Goal_Position', motor, self._value_to_ticks(motor, value))
            self._torqued = frozenset(self._held)
        return rewritten

    def _write_calibration(self) -> list[str]:
        registers = dict(CALIBRATION_REGISTERS)
        if not self.spec.apply_drive_mode:
            # The servo inverts itself (Dynamixel: the Koch leader's elbow);
            # lerobot counts a Drive_Mode register unlike the file as uncalibrated.
            registers['Drive_Mode'] = 'drive_mode'
        rewritten = set()
        for motor in self.joint_names:
            cal = self.calibration[motor]
            for register, field in registers.items():
                if self.bus.read(register, motor) != getattr(cal, field):
                    self.bus.write(register, motor, getattr(cal, field))
                    rewritten.add(motor)
        return sorted(rewritten)

    def _value_to_ticks(self, motor: str, value: float) -> int:
        jmap = self.joint_maps[motor]
        return jmap.rad_to_ticks(jmap.feature_to_rad(value))

    def read(self) -> dict[str, float]:
        ticks = self.bus.sync_read('Present_Position')
        return {m: self.joint_maps[m].ticks_to_rad(t) for m, t in ticks.items()}

    # -- actuated leaders ------------------------------------------------------------------

    def full_target(self, target: dict[str, float], present: dict[str, float]) -> dict[str, float]:
        """`target` within the calibrated limits; joints it does not name stay put."""
        unknown = set(target) - set(self.joint_maps)
        if unknown:
            raise KeyError(f'unknown joints {sorted(unknown)}; this leader has {self.joint_names}')
        out = dict(present)
        for motor, rad in target.items():
            lo, hi = self.joint_maps[motor].limits_rad
            out[motor] = min(hi, max(lo, rad))
        return out

    def move_duration(self, target: dict[str, float], max_speed: float) -> float:
        """How long move_to(target, max_speed) would take from the present pose [s]."""
        present = self.read()
        return move_duration(present, self.full_target(target, present), max_speed)

    def move_to(
        self,
        target: dict[str, float],
        max_speed: float,
        rate_hz: float,
        timeout_s: float = 30.0,
        cancelled=None,
        sleep=None,
    ) -> MoveOutcome:
        """Drive to `target` (radians by joint) at no more than `max_speed`
        rad/s on any joint and hold it there with torque on until release().

        Blocks for the whole move. `cancelled()` returning True, or release()
        from another thread, stops it on the way (holding where it got to
        unless released).
        """
        if not self.actuated:
            raise NotActuatedError(
                f'{self.spec.type} is not actuated: lerobot only reads it, a human '
                'moves it (bring the follower to the leader instead).'
            )
        self._cancel.clear()
        start = self.read()
        goal = self.full_target(target, start)
        if move_duration(start, goal, max_speed) > timeout_s:
            return MoveOutcome.TOO_FAR  # before torque goes on: a refused move leaves the arm as it was
        with self._lock:
            # Goal = present first, or torque-on would jump to a stale goal.
            self.bus.sync_write('Goal_Position', self._to_ticks(start))
            self.bus.set_torque(True)
            self._torqued = frozenset(self.joint_names)

        def stop() -> bool:
            return self._cancel.is_set() or (cancelled is not None and cancelled())

        return linear_move(
            start, goal, max_speed, rate_hz, self._send, timeout_s=timeout_s, sleep=sleep, cancelled=stop
        )

    def _to_ticks(self, rad: dict[str, float]) -> dict[str, int]:
        return {m: self.joint_maps[m].rad_to_ticks(r) for m, r in rad.items()}

    def _send(self, goal: dict[str, float]) -> None:
        ticks = self._to_ticks(goal)
        with self._lock:
            self.bus.sync_write('Goal_Position', ticks)

    def release(self) -> None:
        """Torque off so a human can move the arm again; joints lerobot keeps
        torqued for teleoperation (the Koch gripper's spring) stay as they are."""
        self._cancel.set()
        limp = [m for m in self.joint_names if m not in self._held]
        with self._lock:
            self.bus.set_torque(False, limp)
            self._torqued = self._torqued & frozenset(self._held)

    def disconnect(self) -> None:
        self._cancel.set()
        if self.bus.is_connected:
            self.bus.disconnect(True)
        self._torqued = frozenset()
