"""Leader arms (the arms a human moves to teleoperate a follower), described
like the followers in robots.py, plus the map from a leader's pose to the
follower's joint space.

Motors, models and norm modes follow lerobot's teleoperator classes: leader
values are fed to the follower as actions unchanged, so a leader joint at
x% of its calibrated range puts the follower joint at x% of its own.
"""

from dataclasses import dataclass
from pathlib import Path

from rollout_ros.core.calibration import MotorCalibration, default_calibration_dir, load_calibration
from rollout_ros.core.errors import ConfigError
from rollout_ros.core.joint_units import JointMap, NormMode
from rollout_ros.hardware.robots import MotorSpec, RobotSpec

_JOINTS = ('shoulder_pan', 'shoulder_lift', 'elbow_flex', 'wrist_flex', 'wrist_roll', 'gripper')


@dataclass(frozen=True)
class LeaderSpec(RobotSpec):
    # Whether lerobot drives this leader's joints (it then has feedback
    # features: SO leaders can be moved to the follower's pose).
    actuated: bool = False
    # (motor, goal in LeRobot units): joints lerobot keeps torqued while a
    # human teleoperates, e.g. the Koch gripper that springs back to open.
    held_goals: tuple[tuple[str, float], ...] = ()


def _koch_leader(use_degrees: bool) -> LeaderSpec:
    if use_degrees:
        # lerobot's koch_leader has no degrees option: it would send -100..100
        # values that a degrees follower takes for degrees.
        raise ConfigError('use_degrees', "lerobot's koch_leader always reports joints in -100..100, "
                          'so it cannot drive a follower configured in degrees.',
                          'set use_degrees to false (the koch_follower default in lerobot).')
    body = NormMode.RANGE_M100_100
    motors = tuple(MotorSpec(name, i, 'xl330-m077', NormMode.RANGE_0_100 if name == 'gripper' else body)
                   for i, name in enumerate(_JOINTS, start=1))
    # Extended position for the body so a horn mounted near 0/4095 does not
    # wrap; current-based position for the gripper, which lerobot torques with
    # a half-open goal so it works as a trigger that springs back when let go.
    setup = []
    for m in motors:
        setup += [(m.name, 'Return_Delay_Time', 0),
                  (m.name, 'Operating_Mode', 5 if m.name == 'gripper' else 4)]
    return LeaderSpec('koch_leader', 'dynamixel', motors, setup_registers=tuple(setup),
                      actuated=False, held_goals=(('gripper', 50.0),))


def _so_leader(teleop_type: str, use_degrees: bool) -> LeaderSpec:
    body = NormMode.DEGREES if use_degrees else NormMode.RANGE_M100_100
    motors = tuple(MotorSpec(name, i, 'sts3215', NormMode.RANGE_0_100 if name == 'gripper' else body)
                   for i, name in enumerate(_JOINTS, start=1))
    # lerobot's SO leader configure(): minimal return delay, full acceleration
    # and position mode, all torque off; unlike the follower it leaves gains
    # and the gripper's torque limits at the servo's values.
    setup = []
    for m in motors:
        setup += [(m.name, 'Return_Delay_Time', 0), (m.name, 'Maximum_Acceleration', 254),
                  (m.name, 'Acceleration', 254), (m.name, 'Operating_Mode', 0)]
    # lerobot files both SO leaders' calibrations under its class name, so_leader.
    return LeaderSpec(teleop_type, 'feetech', motors, apply_drive_mode=True, setup_registers=tuple(setup),
                      calibration_name='so_leader', actuated=True)


def _so100_leader(use_degrees: bool) -> LeaderSpec:
    return _so_leader('so100_leader', use_degrees)


def _so101_leader(use_degrees: bool) -> LeaderSpec:
    return _so_leader('so101_leader', use_degrees)


LEADERS = {
    'koch_leader': _koch_leader,
    'so100_leader': _so100_leader,
    'so101_leader': _so101_leader,
}


def get_leader_spec(teleop_type: str, use_degrees: bool = False) -> LeaderSpec:
    if teleop_type not in LEADERS:
        raise ConfigError('teleop_type', f'unknown leader type {teleop_type!r}.',
                          f'use one of {sorted(LEADERS)}.')
    return LEADERS[teleop_type](use_degrees)


# -- calibration files -----------------------------------------------------------------

def leader_calibration_paths(calibration_dir: str | Path | None, spec: LeaderSpec,
                             teleop_id: str) -> list[Path]:
    """Where a leader's calibration may be, in the order looked at.

    lerobot writes <root>/teleoperators/<class name>/<id>.json; the class of
    both SO leaders is named so_leader. Releases where each type had its own
    class used the type name, so that directory is looked at second.
    """
    base = Path(calibration_dir).expanduser() if calibration_dir else default_calibration_dir()
    names = dict.fromkeys([spec.calibration_dir_name, spec.type])
    return [base / 'teleoperators' / name / f'{teleop_id}.json' for name in names]


def load_leader_calibration(calibration_dir: str | Path | None, spec: LeaderSpec, teleop_id: str,
                            port: str = '<port>') -> dict[str, MotorCalibration]:
    paths = leader_calibration_paths(calibration_dir, spec, teleop_id)
    path = next((p for p in paths if p.is_file()), None)
    if path is None:
        also = f' (nor at {", ".join(map(str, paths[1:]))})' if len(paths) > 1 else ''
        raise ConfigError(
            'teleop_id', f'no calibration of leader {teleop_id!r} at {paths[0]}{also}.',
            f'calibrate the leader once with lerobot: lerobot-calibrate --teleop.type={spec.type} '
            f'--teleop.port={port} --teleop.id={teleop_id} (or set calibration_dir to the directory '
            'that holds teleoperators/).')
    try:
        return load_calibration(path, spec.motor_names, spec.type, port)
    except ConfigError as e:   # same problem, but the parameter to fix is the leader's
        raise ConfigError('teleop_id', e.problem, e.fix) from e


# -- leader pose -> follower joint space -------------------------------------------------

class LeaderFollowerMap:
    """Leader radians <-> follower radians through the LeRobot value both
    share: what lerobot's teleop loop sends the follower as action."""

    def __init__(self, leader_maps: dict[str, JointMap], follower_maps: dict[str, JointMap]):
        if set(leader_maps) != set(follower_maps):
            raise ConfigError('teleop_type', f'the leader has joints {sorted(leader_maps)}, the follower '
                              f'{sorted(follower_maps)}.', 'pair a leader with a follower of the same arm.')
        mismatched = [n for n in leader_maps if leader_maps[n].norm_mode is not follower_maps[n].norm_mode]
        if mismatched:
            raise ConfigError('use_degrees', f'leader and follower normalise {mismatched} differently, so '
                              'leader values would mean something else to the follower.',
                              'use the same use_degrees for both.')
        self.leader_maps = leader_maps
        self.follower_maps = follower_maps

    def to_follower(self, leader_rad: dict[str, float]) -> dict[str, float]:
        return {m: self.follower_maps[m].feature_to_rad(self.leader_maps[m].rad_to_feature(r))
                for m, r in leader_rad.items()}

    def to_leader(self, follower_rad: dict[str, float]) -> dict[str, float]:
        return {m: self.leader_maps[m].feature_to_rad(self.follower_maps[m].rad_to_feature(r))
                for m, r in follower_rad.items()}
