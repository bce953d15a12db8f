# SPDX-License-Identifier: Apache-2.0
"""Leader arms (the arms a human moves to teleoperate a follower), described
like the followers in robots.py, plus the map from a leader's pose to the
follower's joint space.

Motors, models and norm modes follow lerobot's teleoperator classes: leader
values are fed to the follower as actions unchanged, so a leader joint at
x% of its calibrated range puts the follower joint at x% of its own.
"""

from dataclasses import dataclass, replace
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
    # How lerobot turns this leader's values into the follower's action:
    # (follower joint, leader joint, factor), action = factor * leader value.
    # Empty: same joint, same value.
    follower_map: tuple[tuple[str, str, float], ...] = ()


def _koch_leader(use_degrees: bool) -> LeaderSpec:
    if use_degrees:
        # lerobot's koch_leader has no degrees option: it would send -100..100
        # values that a degrees follower takes for degrees.
        raise ConfigError(
            'use_degrees',
            "lerobot's koch_leader always reports joints in -100..100, "
            'so it cannot drive a follower configured in degrees.',
            'set use_degrees to false (the koch_follower default in lerobot).',
        )
    body = NormMode.RANGE_M100_100
    motors = tuple(
        MotorSpec(name, i, 'xl330-m077', NormMode.RANGE_0_100 if name == 'gripper' else body)
        for i, name in enumerate(_JOINTS, start=1)
    )
    # Extended position for the body so a horn mounted near 0/4095 does not
    # wrap; current-based position for the gripper, which lerobot torques with
    # a half-open goal so it works as a trigger that springs back when let go.
    setup = []
    for m in motors:
        setup += [(m.name, 'Return_Delay_Time', 0), (m.name, 'Operating_Mode', 5 if m.name == 'gripper' else 4)]
    return LeaderSpec(
        'koch_leader',
        'dynamixel',
        motors,
        setup_registers=tuple(setup),
        actuated=False,
        held_goals=(('gripper', 50.0),),
    )


def _so_leader(teleop_type: str, use_degrees: bool) -> LeaderSpec:
    body = NormMode.DEGREES if use_degrees else NormMode.RANGE_M100_100
    motors = tuple(
        MotorSpec(name, i, 'sts3215', NormMode.RANGE_0_100 if name == 'gripper' else body)
        for i, name in enumerate(_JOINTS, start=1)
    )
    # lerobot's SO leader configure(): minimal return delay, full acceleration
    # and position mode, all torque off; unlike the follower it leaves gains
    # and the gripper's torque limits at the servo's values.
    setup = []
    for m in motors:
        setup += [
            (m.name, 'Return_Delay_Time', 0),
            (m.name, 'Maximum_Acceleration', 254),
            (m.name, 'Acceleration', 254),
            (m.name, 'Operating_Mode', 0),
        ]
    # lerobot files both SO leaders' calibrations under its class name, so_leader.
    return LeaderSpec(
        teleop_type,
        'feetech',
        motors,
        apply_drive_mode=True,
        setup_registers=tuple(setup),
        calibration_name='so_leader',
        actuated=True,
    )


def _so100_leader(use_degrees: bool) -> LeaderSpec:
    return _so_leader('so100_leader', use_degrees)


def _so101_leader(use_degrees: bool) -> LeaderSpec:
    return _so_leader('so101_leader', use_degrees)


# OpenArm Mini (Feetech STS3215, 7 joints and a gripper), read as lerobot's
# openarm_mini reads it: its joint_6 and joint_7 drive the follower's joint_7
# and joint_6, some joints turn the other way per side, and its 0..100
# gripper is -0.65 follower degrees per unit (100 = -65 deg, fully open).
_MINI_JOINTS = tuple(f'joint_{i}' for i in range(1, 8))
_MINI_FLIPS = {
    '': (),
    'left': ('joint_1', 'joint_3', 'joint_4', 'joint_5', 'joint_6', 'joint_7'),
    'right': ('joint_1', 'joint_2', 'joint_3', 'joint_4', 'joint_5', 'joint_7'),
}
_MINI_SWAP = {'joint_6': 'joint_7', 'joint_7': 'joint_6'}
MINI_GRIPPER_DEG_PER_UNIT = -0.65


def openarm_mini(side: str = '') -> LeaderSpec:
    if side not in _MINI_FLIPS:
        raise ConfigError('teleop_side', f'openarm_mini side {side!r} is unknown.', "use left, right or ''.")
    # Body joints are degrees whatever use_degrees says (lerobot's openarm_mini).
    motors = tuple(MotorSpec(name, i, 'sts3215', NormMode.DEGREES) for i, name in enumerate(_MINI_JOINTS, start=1))
    motors += (MotorSpec('gripper', 8, 'sts3215', NormMode.RANGE_0_100),)
    setup = []
    for m in motors:
        setup += [
            (m.name, 'Return_Delay_Time', 0),
            (m.name, 'Maximum_Acceleration', 254),
            (m.name, 'Acceleration', 254),
            (m.name, 'Operating_Mode', 0),
        ]
    fmap = tuple((_MINI_SWAP.get(j, j), j, -1.0 if j in _MINI_FLIPS[side] else 1.0) for j in _MINI_JOINTS)
    fmap += (('gripper', 'gripper', MINI_GRIPPER_DEG_PER_UNIT),)
    return LeaderSpec(
        'openarm_mini',
        'feetech',
        motors,
        apply_drive_mode=True,
        setup_registers=tuple(setup),
        calibration_name='openarm_mini',
        actuated=True,
        follower_map=fmap,
        side=side,
    )


def bimanual_leader(teleop_type: str, left: LeaderSpec, right: LeaderSpec) -> LeaderSpec:
    """Two leaders as lerobot's bi_* teleoperators name them: `left_`/`right_`
    joints, calibrations `<id>_left`/`<id>_right` under the arm's class name."""
    arms = (('left_', left), ('right_', right))
    fmap = ()
    for prefix, arm in arms:
        pairs = arm.follower_map or tuple((m, m, 1.0) for m in arm.motor_names)
        fmap += tuple((f'{prefix}{f}', f'{prefix}{lj}', k) for f, lj, k in pairs)
    return LeaderSpec(
        teleop_type,
        'composite',
        tuple(replace(m, name=f'{p}{m.name}') for p, a in arms for m in a.motors),
        left.resolution,
        left.apply_drive_mode,
        calibration_name=left.calibration_dir_name,
        arms=arms,
        actuated=left.actuated and right.actuated,
        held_goals=tuple((f'{p}{m}', v) for p, a in arms for m, v in a.held_goals),
        follower_map=fmap if (left.follower_map or right.follower_map) else (),
    )


LEADERS = {
    'koch_leader': _koch_leader,
    'so100_leader': _so100_leader,
    'so101_leader': _so101_leader,
    'bi_so_leader': lambda use_degrees: bimanual_leader(
        'bi_so_leader', _so101_leader(use_degrees), _so101_leader(use_degrees)
    ),
    'openarm_mini': lambda use_degrees: openarm_mini(),
    # lerobot's bi_openarm_mini sets each arm's side itself.
    'bi_openarm_mini': lambda use_degrees: bimanual_leader(
        'bi_openarm_mini', openarm_mini('left'), openarm_mini('right')
    ),
}
SIDED_LEADERS = {'openarm_mini': openarm_mini}


def get_leader_spec(teleop_type: str, use_degrees: bool = False, side: str = '') -> LeaderSpec:
    if teleop_type not in LEADERS:
        raise ConfigError('teleop_type', f'unknown leader type {teleop_type!r}.', f'use one of {sorted(LEADERS)}.')
    if side:
        if teleop_type not in SIDED_LEADERS:
            raise ConfigError(
                'teleop_side',
                f'{teleop_type} has no sides.',
                f'leave it empty; sides exist for {sorted(SIDED_LEADERS)}.',
            )
        return SIDED_LEADERS[teleop_type](side)
    return LEADERS[teleop_type](use_degrees)


# -- calibration files -----------------------------------------------------------------


def leader_calibration_paths(calibration_dir: str | Path | None, spec: LeaderSpec, teleop_id: str) -> list[Path]:
    """Where a leader's calibration may be, in the order looked at.

    As LeRobot's Teleoperator: <calibration_dir>/<id>.json when a directory is
    given, else <default>/teleoperators/<class name>/<id>.json; the class of
    both SO leaders is named so_leader. Releases where each type had its own
    class used the type name, so that default directory is looked at second.
    """
    if calibration_dir:
        return [Path(calibration_dir).expanduser() / f'{teleop_id}.json']
    base = default_calibration_dir()
    names = dict.fromkeys([spec.calibration_dir_name, spec.type])
    return [base / 'teleoperators' / name / f'{teleop_id}.json' for name in names]


def load_leader_calibration(
    calibration_dir: str | Path | None, spec: LeaderSpec, teleop_id: str, port: str = '<port>'
) -> dict[str, MotorCalibration]:
    if spec.arms:
        merged = {}
        for prefix, arm in spec.arms:
            side = prefix.rstrip('_')
            calib = load_leader_calibration(calibration_dir, arm, f'{teleop_id}_{side}', f'<{side} port>')
            merged.update({f'{prefix}{name}': c for name, c in calib.items()})
        return merged
    paths = leader_calibration_paths(calibration_dir, spec, teleop_id)
    path = next((p for p in paths if p.is_file()), None)
    if path is None:
        also = f' (nor at {", ".join(map(str, paths[1:]))})' if len(paths) > 1 else ''
        raise ConfigError(
            'teleop_id',
            f'no calibration of leader {teleop_id!r} at {paths[0]}{also}.',
            f'calibrate the leader once with lerobot: lerobot-calibrate --teleop.type={spec.type} '
            f'--teleop.port={port} --teleop.id={teleop_id} (or set teleop_calibration_dir to the folder '
            f'that holds {teleop_id}.json).',
        )
    try:
        return load_calibration(path, spec.motor_names, spec.type, port)
    except ConfigError as e:  # same problem, but the parameter to fix is the leader's
        raise ConfigError('teleop_id', e.problem, e.fix) from e


# -- leader pose -> follower joint space -------------------------------------------------


class LeaderFollowerMap:
    """Leader radians <-> follower radians through the LeRobot value both
    share: what lerobot's teleop loop sends the follower as action
    (`follower_map`: the leader's LeaderSpec.follower_map, when it is not
    joint for joint)."""

    def __init__(
        self,
        leader_maps: dict[str, JointMap],
        follower_maps: dict[str, JointMap],
        follower_map: tuple[tuple[str, str, float], ...] = (),
    ):
        self.pairs = follower_map or tuple((m, m, 1.0) for m in leader_maps)
        if follower_map:
            followers = {f for f, _, _ in follower_map}
            if followers != set(follower_maps) or {lj for _, lj, _ in follower_map} != set(leader_maps):
                raise ConfigError(
                    'teleop_type',
                    f'the leader drives follower joints {sorted(followers)}, the follower has {sorted(follower_maps)}.',
                    'pair a leader with a follower of the same arm (openarm_mini with '
                    'openarm_follower, bi_openarm_mini with bi_openarm_follower).',
                )
            self.leader_maps = leader_maps
            self.follower_maps = follower_maps
            return
        if set(leader_maps) != set(follower_maps):
            raise ConfigError(
                'teleop_type',
                f'the leader has joints {sorted(leader_maps)}, the follower {sorted(follower_maps)}.',
                'pair a leader with a follower of the same arm.',
            )
        mismatched = [n for n in leader_maps if leader_maps[n].norm_mode is not follower_maps[n].norm_mode]
        if mismatched:
            raise ConfigError(
                'use_degrees',
                f'leader and follower normalise {mismatched} differently, so '
                'leader values would mean something else to the follower.',
                'use the same use_degrees for both.',
            )
        self.leader_maps = leader_maps
        self.follower_maps = follower_maps

    def to_follower(self, leader_rad: dict[str, float]) -> dict[str, float]:
        return {
            f: self.follower_maps[f].feature_to_rad(k * self.leader_maps[lj].rad_to_feature(leader_rad[lj]))
            for f, lj, k in self.pairs
            if lj in leader_rad
        }

    def to_leader(self, follower_rad: dict[str, float]) -> dict[str, float]:
        return {
            lj: self.leader_maps[lj].feature_to_rad(self.follower_maps[f].rad_to_feature(follower_rad[f]) / k)
            for f, lj, k in self.pairs
            if f in follower_rad
        }
