# SPDX-License-Identifier: Apache-2.0
"""OpenArm calibration as lerobot does it: the arm hangs straight down with
the gripper closed, each motor's present position becomes its zero (stored
in the motor), and the file lerobot writes records a nominal +-90 deg range
per joint. The file's values are not used for normalisation (Damiao motors
report angles from their own zero); its presence says the arm was zeroed.
"""

from pathlib import Path

from rollout_ros.core.calibration import MotorCalibration, calibration_path, save_calibration
from rollout_ros.hardware.robots import RobotSpec

NOMINAL_RANGE_DEG = (-90, 90)


def lerobot_calibration(spec: RobotSpec) -> dict[str, MotorCalibration]:
    """What lerobot's openarm_follower calibrate() saves for these motors."""
    return {m.name: MotorCalibration(m.id, 0, 0, *NOMINAL_RANGE_DEG) for m in spec.motors}


def zero_and_save(bus, spec: RobotSpec, calibration_dir, robot_id: str) -> Path:
    """Torque off, zero every motor where it stands, write lerobot's file; returns its path."""
    bus.set_torque(False)
    bus.set_zero()
    path = calibration_path(calibration_dir, spec.calibration_dir_name, robot_id)
    save_calibration(path, lerobot_calibration(spec))
    return path
