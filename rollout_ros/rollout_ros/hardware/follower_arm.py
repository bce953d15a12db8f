# SPDX-License-Identifier: Apache-2.0
"""A follower arm over its servo bus, in ROS units (radians), with the safety
that must hold whoever sends the commands: joint limits from calibration,
a per-command cap on the distance from the present position, holding, and
torque handling. No rclpy here: the driver node and the Python API share it.
"""

import threading
import time

from rollout_ros.core.calibration import MotorCalibration
from rollout_ros.hardware.buses import make_bus
from rollout_ros.hardware.motion import MoveOutcome, linear_move
from rollout_ros.hardware.robots import RobotSpec

# Registers lerobot's calibration writes to Dynamixel servos.
CALIBRATION_REGISTERS = {
    'Homing_Offset': 'homing_offset',
    'Min_Position_Limit': 'range_min',
    'Max_Position_Limit': 'range_max',
}


class FollowerArm:
    def __init__(
        self,
        spec: RobotSpec,
        port: str,
        calibration: dict[str, MotorCalibration],
        max_relative_target: float | dict[str, float] | None = None,
        bus=None,
        can_options: dict | None = None,
    ):
        self.spec = spec
        self.port = port
        self.calibration = calibration
        self.joint_maps = spec.joint_maps(calibration)
        # One cap for every joint, or a cap per joint name (0/None = no cap).
        if isinstance(max_relative_target, dict):
            self._step_caps = {m: max_relative_target.get(m) or None for m in spec.motor_names}
        else:
            self._step_caps = {m: max_relative_target or None for m in spec.motor_names}
        self.bus = bus or make_bus(spec, port, can_options)
        self._lock = threading.Lock()
        self.present: dict[str, float] = {}
        self.last_send_s = 0.0  # CLOCK_MONOTONIC when the latest command went to the bus
        self.torque_enabled = False

    @property
    def joint_names(self) -> list[str]:
        return self.spec.motor_names

    def connect(self) -> list[str]:
        """Open the bus and make the servos match the calibration file.

        Returns the names of the motors whose registers had to be rewritten.
        """
        self.bus.connect()
        with self._lock:
            self.bus.set_torque(False)
            self.torque_enabled = False
            rewritten = []
            for motor in self.joint_names if self.spec.calibration_in_motors else ():
                cal = self.calibration[motor]
                for register, field in CALIBRATION_REGISTERS.items():
                    if self.bus.read(register, motor) != getattr(cal, field):
                        self.bus.write(register, motor, getattr(cal, field))
                        rewritten.append(motor)
            for motor, register, value in self.spec.setup_registers:
                if self.bus.read(register, motor) != value:
                    self.bus.write(register, motor, value)
        return sorted(set(rewritten))

    def read(self) -> dict[str, float]:
        with self._lock:
            ticks = self.bus.sync_read('Present_Position')
        self.present = {m: self.joint_maps[m].ticks_to_rad(t) for m, t in ticks.items()}
        return dict(self.present)

    def clip(self, target: dict[str, float]) -> dict[str, float]:
        """Apply joint limits and the max step from the present position."""
        out = {}
        for motor, rad in target.items():
            lo, hi = self.joint_maps[motor].limits_rad
            rad = min(hi, max(lo, rad))
            step = self._step_caps[motor]
            if step and motor in self.present:
                cur = self.present[motor]
                rad = min(cur + step, max(cur - step, rad))
            out[motor] = rad
        return out

    def send(self, target: dict[str, float]) -> dict[str, float]:
        """Send a goal for some or all joints; returns what was actually sent."""
        unknown = set(target) - set(self.joint_maps)
        if unknown:
            raise KeyError(f'unknown joints {sorted(unknown)}; this arm has {self.joint_names}')
        sent = self.clip(target)
        ticks = {m: self.joint_maps[m].rad_to_ticks(r) for m, r in sent.items()}
        with self._lock:
            # Read just before the write: after it, getting the GIL back can
            # take a busy process longer than the write itself.
            self.last_send_s = time.monotonic()
            self.bus.sync_write('Goal_Position', ticks)
        return sent

    def hold(self) -> dict[str, float]:
        """Make the present position the goal (stop wherever the arm is)."""
        present = self.read()
        ticks = {m: self.joint_maps[m].rad_to_ticks(r) for m, r in present.items()}
        with self._lock:
            self.last_send_s = time.monotonic()
            self.bus.sync_write('Goal_Position', ticks)
        return present

    def move_to(
        self, target: dict[str, float], max_speed: float, rate_hz: float, timeout_s: float = 30.0, sleep=None
    ) -> bool:
        """Go to `target` along a straight line in joint space at no more than
        `max_speed` rad/s on any joint; the duration grows with the distance
        instead of being fixed (a fixed-time ramp is fast over long distances).

        Returns False if it would take longer than `timeout_s` (nothing is
        sent then) or ran out of time on the way.
        """

        def send_and_track(goal):
            self.send(goal)
            self.read()  # the max_relative_target clip of the next step measures from here

        outcome = linear_move(self.read(), target, max_speed, rate_hz, send_and_track, timeout_s=timeout_s, sleep=sleep)
        return outcome is MoveOutcome.ARRIVED

    def enable_torque(self) -> None:
        # Goal = present first, or the arm would jump to a stale goal.
        self.hold()
        with self._lock:
            self.bus.set_torque(True)
        self.torque_enabled = True

    def disable_torque(self) -> None:
        with self._lock:
            self.bus.set_torque(False)
        self.torque_enabled = False

    def disconnect(self, disable_torque: bool = True) -> None:
        if self.bus.is_connected:
            self.bus.disconnect(disable_torque)
        if disable_torque:
            self.torque_enabled = False
