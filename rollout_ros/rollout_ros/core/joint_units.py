# SPDX-License-Identifier: Apache-2.0
"""Unit maps between servo ticks, ROS radians and LeRobot feature values.

ROS side: joint positions in radians, zero at the middle of the calibrated
range (the pose lerobot's calibration asks you to hold), positive in the
servo's counting direction. LeRobot side: the values lerobot's motor buses
produce from the same ticks (RANGE_M100_100, RANGE_0_100 or DEGREES).

Ticks -> radians is affine, and so is ticks -> LeRobot value, hence radians
-> LeRobot value is affine too (plus lerobot's clamping to the calibrated
range). Carrying radians over ROS and converting at the edges keeps ROS
tools meaningful while the policy sees exactly what it was trained on.
"""

import math
from dataclasses import dataclass
from enum import Enum

from rollout_ros.core.calibration import MotorCalibration


class NormMode(str, Enum):
    RANGE_M100_100 = 'range_m100_100'
    RANGE_0_100 = 'range_0_100'
    DEGREES = 'degrees'


@dataclass(frozen=True)
class JointMap:
    """Affine maps of one joint, derived from its calibration."""

    name: str
    norm_mode: NormMode
    calibration: MotorCalibration
    resolution: int
    # lerobot applies drive_mode in software for some buses (Feetech) and
    # leaves it to the servo's own register for others (Dynamixel).
    apply_drive_mode: bool = False

    @property
    def _max_res(self) -> int:
        # lerobot divides by (resolution - 1) in DEGREES mode; the radian
        # scale uses the same step so DEGREES == degrees(radians) exactly.
        return self.resolution - 1

    @property
    def _mid(self) -> float:
        return (self.calibration.range_min + self.calibration.range_max) / 2

    @property
    def _span(self) -> int:
        return self.calibration.range_max - self.calibration.range_min

    @property
    def _inverted(self) -> bool:
        return self.apply_drive_mode and bool(self.calibration.drive_mode)

    # ticks <-> radians (the driver's conversion)
    def ticks_to_rad(self, ticks: float) -> float:
        return (ticks - self._mid) * 2 * math.pi / self._max_res

    def rad_to_ticks(self, rad: float) -> int:
        return int(round(self._mid + rad * self._max_res / (2 * math.pi)))

    @property
    def limits_rad(self) -> tuple[float, float]:
        return (self.ticks_to_rad(self.calibration.range_min), self.ticks_to_rad(self.calibration.range_max))

    # radians <-> LeRobot feature value (the loop's conversion)
    def rad_to_feature(self, rad: float) -> float:
        if self.norm_mode is NormMode.DEGREES:
            return math.degrees(rad)
        lo, hi = self.limits_rad
        rad = min(hi, max(lo, rad))
        ticks = self._mid + rad * self._max_res / (2 * math.pi)
        frac = (ticks - self.calibration.range_min) / self._span
        if self.norm_mode is NormMode.RANGE_M100_100:
            value = frac * 200 - 100
            return -value if self._inverted else value
        value = frac * 100
        return 100 - value if self._inverted else value

    def feature_to_rad(self, value: float) -> float:
        if self.norm_mode is NormMode.DEGREES:
            return math.radians(value)
        if self.norm_mode is NormMode.RANGE_M100_100:
            value = -value if self._inverted else value
            frac = (min(100.0, max(-100.0, value)) + 100) / 200
        else:
            value = 100 - value if self._inverted else value
            frac = min(100.0, max(0.0, value)) / 100
        ticks = self.calibration.range_min + frac * self._span
        return self.ticks_to_rad(ticks)


@dataclass(frozen=True)
class MotorAngleMap:
    """A joint whose motor reports its own angle (Damiao: radians from the
    zero set at calibration), so there are no ticks: the bus value is the ROS
    radian value, limits come from the robot's configuration in degrees, and
    LeRobot's value is plain degrees, unclamped (what its OpenArm follower
    reports). Same methods as JointMap."""

    name: str
    limits_deg: tuple[float, float]
    norm_mode: NormMode = NormMode.DEGREES

    def ticks_to_rad(self, value: float) -> float:
        return float(value)

    def rad_to_ticks(self, rad: float) -> float:
        return float(rad)

    @property
    def limits_rad(self) -> tuple[float, float]:
        return (math.radians(self.limits_deg[0]), math.radians(self.limits_deg[1]))

    def rad_to_feature(self, rad: float) -> float:
        return math.degrees(rad)

    def feature_to_rad(self, value: float) -> float:
        return math.radians(value)
