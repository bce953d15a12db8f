# SPDX-License-Identifier: Apache-2.0
"""LeRobot calibration files: `<calibration_dir>/<id>.json` when a directory is
given (LeRobot's --robot.calibration_dir), else LeRobot's default location
`$HF_LEROBOT_CALIBRATION/robots/<robot class>/<id>.json`.

The JSON maps each motor name to {id, drive_mode, homing_offset, range_min,
range_max}, exactly as lerobot writes it, so an arm calibrated with
`lerobot-calibrate` works here unchanged and vice versa.
"""

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from rollout_ros.core.errors import ConfigError

CALIBRATION_FIELDS = ('id', 'drive_mode', 'homing_offset', 'range_min', 'range_max')


@dataclass(frozen=True)
class MotorCalibration:
    id: int
    drive_mode: int
    homing_offset: int
    range_min: int
    range_max: int


def default_calibration_dir() -> Path:
    """Where lerobot keeps calibrations (it honours the same variables)."""
    if os.environ.get('HF_LEROBOT_CALIBRATION'):
        return Path(os.environ['HF_LEROBOT_CALIBRATION']).expanduser()
    hf_home = Path(os.environ.get('HF_HOME', '~/.cache/huggingface')).expanduser()
    lerobot_home = Path(os.environ.get('HF_LEROBOT_HOME', hf_home / 'lerobot')).expanduser()
    return lerobot_home / 'calibration'


def calibration_path(calibration_dir: str | Path | None, robot_type: str, robot_id: str) -> Path:
    """Where LeRobot keeps the calibration of robot `robot_id`: directly in `calibration_dir` when one is
    given, as LeRobot's Robot does, else under its default directory for `robot_type` (the class name)."""
    if calibration_dir:
        return Path(calibration_dir).expanduser() / f'{robot_id}.json'
    return default_calibration_dir() / 'robots' / robot_type / f'{robot_id}.json'


def load_calibration(
    path: Path, motor_names: list[str], robot_type: str = '', port: str = '<port>'
) -> dict[str, MotorCalibration]:
    if not path.is_file():
        raise ConfigError(
            'robot_id',
            f'no calibration file at {path}.',
            f'calibrate the arm once with lerobot: lerobot-calibrate --robot.type={robot_type} '
            f'--robot.port={port} --robot.id={path.stem} (or set calibration_dir to where '
            'the file is).',
        )
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(
            'robot_id',
            f'calibration file {path} is not valid JSON ({e}).',
            'recalibrate the arm with lerobot-calibrate.',
        ) from e
    missing = [m for m in motor_names if m not in raw]
    if missing:
        raise ConfigError(
            'robot_id',
            f'calibration file {path} lacks motors {missing}.',
            f'is it the calibration of a {robot_type}? Recalibrate with lerobot-calibrate.',
        )
    calib = {}
    for name in motor_names:
        entry = raw[name]
        absent = [f for f in CALIBRATION_FIELDS if f not in entry]
        if absent:
            raise ConfigError(
                'robot_id',
                f'calibration of motor {name!r} in {path} lacks {absent}.',
                'recalibrate the arm with lerobot-calibrate.',
            )
        c = MotorCalibration(**{f: int(entry[f]) for f in CALIBRATION_FIELDS})
        if c.range_max <= c.range_min:
            raise ConfigError(
                'robot_id',
                f'motor {name!r} in {path} has range_min >= range_max.',
                'recalibrate the arm with lerobot-calibrate.',
            )
        calib[name] = c
    return calib


def save_calibration(path: Path, calibration: dict[str, MotorCalibration]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: asdict(v) for k, v in calibration.items()}, indent=4))
