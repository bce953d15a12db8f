"""Robot descriptions: motors, models and LeRobot normalisation per joint.

Joint names, ids, models and norm modes follow lerobot's robot classes so a
checkpoint trained with lerobot on the same arm sees identical numbers.
"""

from dataclasses import dataclass

from rollout_ros.core.calibration import MotorCalibration
from rollout_ros.core.errors import ConfigError
from rollout_ros.core.joint_units import JointMap, NormMode


@dataclass(frozen=True)
class MotorSpec:
    name: str
    id: int
    model: str
    norm_mode: NormMode


@dataclass(frozen=True)
class RobotSpec:
    type: str
    bus: str            # 'dynamixel' or 'feetech': which bus class drives it (hardware.buses)
    motors: tuple[MotorSpec, ...]
    resolution: int = 4096
    apply_drive_mode: bool = False
    # (motor, register, value) written at configure with torque off: operating
    # modes, gains and limits the robot class in lerobot sets.
    setup_registers: tuple[tuple[str, str, int], ...] = ()

    @property
    def motor_names(self) -> list[str]:
        return [m.name for m in self.motors]

    @property
    def feature_names(self) -> list[str]:
        return [f'{m.name}.pos' for m in self.motors]

    def joint_maps(self, calibration: dict[str, MotorCalibration]) -> dict[str, JointMap]:
        return {m.name: JointMap(m.name, m.norm_mode, calibration[m.name], self.resolution,
                                 self.apply_drive_mode) for m in self.motors}


def _koch_follower(use_degrees: bool) -> RobotSpec:
    body = NormMode.DEGREES if use_degrees else NormMode.RANGE_M100_100
    motors = (
        MotorSpec('shoulder_pan', 1, 'xl430-w250', body),
        MotorSpec('shoulder_lift', 2, 'xl430-w250', body),
        MotorSpec('elbow_flex', 3, 'xl330-m288', body),
        MotorSpec('wrist_flex', 4, 'xl330-m288', body),
        MotorSpec('wrist_roll', 5, 'xl330-m288', body),
        MotorSpec('gripper', 6, 'xl330-m288', NormMode.RANGE_0_100),
    )
    # Extended position for the body (a mis-assembled horn near 0/4095 must not
    # wrap), current-based position for the gripper so it grasps without
    # forcing, stiffer elbow gains: what lerobot's Koch follower sets.
    setup = tuple(('Operating_Mode', m.name, 5 if m.name == 'gripper' else 4) for m in motors)
    setup += (('Position_P_Gain', 'elbow_flex', 1500), ('Position_I_Gain', 'elbow_flex', 0),
              ('Position_D_Gain', 'elbow_flex', 600))
    return RobotSpec('koch_follower', 'dynamixel', motors,
                     setup_registers=tuple((m, r, v) for r, m, v in setup))


ROBOTS = {
    'koch_follower': _koch_follower,
}


def get_robot_spec(robot_type: str, use_degrees: bool = False) -> RobotSpec:
    if robot_type not in ROBOTS:
        raise ConfigError('robot_type', f'unknown robot type {robot_type!r}.',
                          f'use one of {sorted(ROBOTS)}.')
    return ROBOTS[robot_type](use_degrees)
