# SPDX-License-Identifier: Apache-2.0
"""Robot descriptions: motors, models and LeRobot normalisation per joint.

Joint names, ids, models and norm modes follow lerobot's robot classes so a
checkpoint trained with lerobot on the same arm sees identical numbers.
"""

from dataclasses import dataclass, replace

from rollout_ros.core.calibration import MotorCalibration, calibration_path, load_calibration
from rollout_ros.core.errors import ConfigError
from rollout_ros.core.joint_units import JointMap, MotorAngleMap, NormMode


@dataclass(frozen=True)
class MotorSpec:
    name: str
    id: int
    model: str
    norm_mode: NormMode
    recv_id: int = 0  # CAN motors: the id their replies come from (0 = serial servos)


@dataclass(frozen=True)
class RobotSpec:
    type: str
    bus: str  # 'dynamixel', 'feetech' or 'damiao': which bus class drives it (hardware.buses)
    motors: tuple[MotorSpec, ...]
    resolution: int = 4096
    apply_drive_mode: bool = False
    # (motor, register, value) written at configure with torque off: operating
    # modes, gains and limits the robot class in lerobot sets.
    setup_registers: tuple[tuple[str, str, int], ...] = ()
    # lerobot files calibrations under its robot class name, which several
    # types share (so100/so101 -> so_follower); '' = the type itself.
    calibration_name: str = ''
    # Bimanual robots: (prefix, arm spec) per arm, each driven by its own driver.
    arms: tuple[tuple[str, 'RobotSpec'], ...] = ()
    # Motors that report their own angle (Damiao): (joint, min, max) in
    # degrees, the limits lerobot clips actions to; joint maps are then
    # MotorAngleMaps and the calibration file holds no register values.
    joint_limits_deg: tuple[tuple[str, float, float], ...] = ()
    # MIT-mode gains per joint: (joint, kp, kd).
    gains: tuple[tuple[str, float, float], ...] = ()
    side: str = ''  # lerobot's `side` of a one-arm robot that has per-side defaults

    @property
    def motor_names(self) -> list[str]:
        return [m.name for m in self.motors]

    @property
    def feature_names(self) -> list[str]:
        return [f'{m.name}.pos' for m in self.motors]

    @property
    def calibration_dir_name(self) -> str:
        return self.calibration_name or self.type

    @property
    def calibration_in_motors(self) -> bool:
        """Whether the calibration file's registers are written to the motors
        (serial servos); Damiao motors keep only their zero."""
        return not self.joint_limits_deg

    def joint_maps(self, calibration: dict[str, MotorCalibration]) -> dict[str, JointMap]:
        if self.joint_limits_deg:
            return {name: MotorAngleMap(name, (lo, hi)) for name, lo, hi in self.joint_limits_deg}
        return {
            m.name: JointMap(m.name, m.norm_mode, calibration[m.name], self.resolution, self.apply_drive_mode)
            for m in self.motors
        }


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
    setup += (
        ('Position_P_Gain', 'elbow_flex', 1500),
        ('Position_I_Gain', 'elbow_flex', 0),
        ('Position_D_Gain', 'elbow_flex', 600),
    )
    return RobotSpec('koch_follower', 'dynamixel', motors, setup_registers=tuple((m, r, v) for r, m, v in setup))


def _so_follower(robot_type: str, use_degrees: bool) -> RobotSpec:
    body = NormMode.DEGREES if use_degrees else NormMode.RANGE_M100_100
    motors = (
        MotorSpec('shoulder_pan', 1, 'sts3215', body),
        MotorSpec('shoulder_lift', 2, 'sts3215', body),
        MotorSpec('elbow_flex', 3, 'sts3215', body),
        MotorSpec('wrist_flex', 4, 'sts3215', body),
        MotorSpec('wrist_roll', 5, 'sts3215', body),
        MotorSpec('gripper', 6, 'sts3215', NormMode.RANGE_0_100),
    )
    # What lerobot's SO follower configure() writes: minimal return delay and
    # full acceleration (configure_motors), position mode with its default
    # gains, and a gripper limited to half torque/current so a long grasp
    # does not burn it out. lerobot also clears bit 4 of Phase on STS3215
    # (single-turn feedback); a read-modify-write does not fit this table.
    setup = []
    for m in motors:
        setup += [
            (m.name, 'Return_Delay_Time', 0),
            (m.name, 'Maximum_Acceleration', 254),
            (m.name, 'Acceleration', 254),
            (m.name, 'Operating_Mode', 0),
            (m.name, 'P_Coefficient', 16),
            (m.name, 'I_Coefficient', 0),
            (m.name, 'D_Coefficient', 32),
        ]
    setup += [
        ('gripper', 'Max_Torque_Limit', 500),
        ('gripper', 'Protection_Current', 250),
        ('gripper', 'Overload_Torque', 25),
    ]
    # lerobot's Feetech bus applies drive_mode in software when normalising.
    return RobotSpec(
        robot_type,
        'feetech',
        motors,
        apply_drive_mode=True,
        setup_registers=tuple(setup),
        calibration_name='so_follower',
    )


def _so100_follower(use_degrees: bool) -> RobotSpec:
    return _so_follower('so100_follower', use_degrees)


def _so101_follower(use_degrees: bool) -> RobotSpec:
    return _so_follower('so101_follower', use_degrees)


def bimanual(robot_type: str, arm: RobotSpec, right_arm: RobotSpec | None = None) -> RobotSpec:
    """Two arms as lerobot's bi_* robots name them: joints and features get
    `left_`/`right_` prefixes, and arm calibrations are `<id>_left`/`<id>_right`.
    `right_arm` when the sides differ (OpenArm's per-side joint limits)."""
    arms = (('left_', arm), ('right_', right_arm or arm))
    motors = tuple(replace(m, name=f'{prefix}{m.name}') for prefix, a in arms for m in a.motors)
    return RobotSpec(
        robot_type,
        'composite',
        motors,
        arm.resolution,
        arm.apply_drive_mode,
        calibration_name=arm.calibration_dir_name,
        arms=arms,
        joint_limits_deg=tuple(
            (f'{prefix}{name}', lo, hi) for prefix, a in arms for name, lo, hi in a.joint_limits_deg
        ),
        gains=tuple((f'{prefix}{name}', kp, kd) for prefix, a in arms for name, kp, kd in a.gains),
    )


# OpenArm (Damiao motors over CAN), as lerobot's openarm_follower configures
# it: joint_1..joint_7 and the gripper, send ids 1..8 answering on 0x11..0x18.
_OPENARM_MOTORS = (
    ('joint_1', 'dm8009'),
    ('joint_2', 'dm8009'),
    ('joint_3', 'dm4340'),
    ('joint_4', 'dm4340'),
    ('joint_5', 'dm4310'),
    ('joint_6', 'dm4310'),
    ('joint_7', 'dm4310'),
    ('gripper', 'dm4310'),
)
_OPENARM_KP = (240.0, 240.0, 240.0, 240.0, 24.0, 31.0, 25.0, 25.0)
_OPENARM_KD = (5.0, 5.0, 3.0, 5.0, 0.3, 0.3, 0.3, 0.3)
# Joint limits [deg]: lerobot's per-side defaults, and the narrow ones it uses
# when no side is given (so an arm of unknown side barely moves).
_OPENARM_LIMITS = {
    '': {
        'joint_1': (-5.0, 5.0),
        'joint_2': (-5.0, 5.0),
        'joint_3': (-5.0, 5.0),
        'joint_4': (0.0, 5.0),
        'joint_5': (-5.0, 5.0),
        'joint_6': (-5.0, 5.0),
        'joint_7': (-5.0, 5.0),
        'gripper': (-5.0, 0.0),
    },
    'left': {
        'joint_1': (-75.0, 75.0),
        'joint_2': (-90.0, 9.0),
        'joint_3': (-85.0, 85.0),
        'joint_4': (0.0, 135.0),
        'joint_5': (-85.0, 85.0),
        'joint_6': (-40.0, 40.0),
        'joint_7': (-80.0, 80.0),
        'gripper': (-65.0, 0.0),
    },
    'right': {
        'joint_1': (-75.0, 75.0),
        'joint_2': (-9.0, 90.0),
        'joint_3': (-85.0, 85.0),
        'joint_4': (0.0, 135.0),
        'joint_5': (-85.0, 85.0),
        'joint_6': (-40.0, 40.0),
        'joint_7': (-80.0, 80.0),
        'gripper': (-65.0, 0.0),
    },
}


def openarm_follower(side: str = '') -> RobotSpec:
    if side not in _OPENARM_LIMITS:
        raise ConfigError(
            'robot_side',
            f'openarm_follower side {side!r} is unknown.',
            "use left or right (lerobot's per-side joint limits), or '' for its narrow defaults.",
        )
    # lerobot reports every Damiao joint in degrees, gripper included.
    motors = tuple(
        MotorSpec(name, i, model, NormMode.DEGREES, recv_id=0x10 + i)
        for i, (name, model) in enumerate(_OPENARM_MOTORS, start=1)
    )
    limits = _OPENARM_LIMITS[side]
    return RobotSpec(
        'openarm_follower',
        'damiao',
        motors,
        resolution=65536,
        side=side,
        calibration_name='openarm_follower',
        joint_limits_deg=tuple((m.name, *limits[m.name]) for m in motors),
        gains=tuple((m.name, kp, kd) for m, kp, kd in zip(motors, _OPENARM_KP, _OPENARM_KD)),
    )


ROBOTS = {
    'koch_follower': _koch_follower,
    'so100_follower': _so100_follower,
    'so101_follower': _so101_follower,
    'bi_so_follower': lambda use_degrees: bimanual('bi_so_follower', _so101_follower(use_degrees)),
    # Damiao joints are always degrees in lerobot: use_degrees does not apply.
    'openarm_follower': lambda use_degrees: openarm_follower(),
    'bi_openarm_follower': lambda use_degrees: bimanual(
        'bi_openarm_follower', openarm_follower('left'), openarm_follower('right')
    ),
}
# Robot types whose arms have per-side defaults (robot_side).
SIDED = {'openarm_follower': openarm_follower}


def load_robot_calibration(
    spec: RobotSpec, calibration_dir, robot_id: str, port: str = '<port>'
) -> dict[str, MotorCalibration]:
    """The calibration lerobot would use for this robot and id, by joint name."""
    if not spec.arms:
        path = calibration_path(calibration_dir, spec.calibration_dir_name, robot_id)
        calibration = load_calibration(path, spec.motor_names, spec.type, port)
        check_calibration_ids(spec, calibration, path)
        return calibration
    merged = {}
    for prefix, arm in spec.arms:
        side = prefix.rstrip('_')
        calib = load_robot_calibration(arm, calibration_dir, f'{robot_id}_{side}', f'<{side} port>')
        merged.update({f'{prefix}{name}': c for name, c in calib.items()})
    return merged


def check_calibration_ids(spec: RobotSpec, calibration: dict[str, MotorCalibration], path) -> None:
    """A calibration records the motor id each joint had when it was made;
    one made for another wiring would move the wrong servos' offsets and
    limits onto these (lerobot refuses it as not calibrated)."""
    bus_ids = {m.name: m.id for m in spec.motors}
    wrong = {
        name: (c.id, bus_ids[name]) for name, c in calibration.items() if name in bus_ids and c.id != bus_ids[name]
    }
    if wrong:
        listed = ', '.join(f'{n}: id {have} in the file, {want} on the bus' for n, (have, want) in wrong.items())
        raise ConfigError(
            'robot_id',
            f'the calibration {path} was made for other motor ids ({listed}).',
            'calibrate this arm (lerobot-calibrate) or give the id of its own calibration.',
        )


def get_robot_spec(robot_type: str, use_degrees: bool = False, side: str = '') -> RobotSpec:
    if robot_type not in ROBOTS:
        raise ConfigError('robot_type', f'unknown robot type {robot_type!r}.', f'use one of {sorted(ROBOTS)}.')
    if side:
        if robot_type not in SIDED:
            raise ConfigError(
                'robot_side', f'{robot_type} has no sides.', f'leave robot_side empty; sides exist for {sorted(SIDED)}.'
            )
        return SIDED[robot_type](side)
    return ROBOTS[robot_type](use_degrees)
