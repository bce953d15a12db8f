# SPDX-License-Identifier: Apache-2.0
"""Allowed ranges of the numeric settings a user types, in one place.

The nodes declare their parameters with these ranges (rclpy then refuses an
out-of-range `-p` or params-file value), and the `rollout` CLI checks its
flags against the same numbers before it imports rclpy or starts anything,
so a bad number is one line naming the flag, not an rclpy traceback after
seconds of imports. No rclpy here.
"""

import math
from dataclasses import dataclass

from rollout_ros.core.errors import ConfigError


@dataclass(frozen=True)
class Range:
    low: float | None = None
    high: float | None = None
    unit: str = ''
    example: str = ''

    def kwargs(self) -> dict:
        """min_value / max_value for ManagedNode.declare."""
        return {'min_value': self.low, 'max_value': self.high}

    def problem(self, value) -> str:
        """Why `value` is refused, or '' when it is in range."""
        if not math.isfinite(value):
            return f'{value} is not a finite number.'
        if self.low is not None and value < self.low or self.high is not None and value > self.high:
            allowed = (
                f'{self.low:g} or more'
                if self.high is None
                else f'{self.high:g} or less'
                if self.low is None
                else f'{self.low:g} to {self.high:g}'
            )
            return f'{value:g} is out of range: allowed {allowed}{self.unit}.'
        return ''


# ROS parameter name -> range. Shared by the nodes' declarations and the CLI.
LIMITS = {
    'fps': Range(0.1, 1000.0, ' [Hz]', '30'),
    'duration': Range(0.0, None, ' [s]; 0 = until Ctrl-C', '60'),
    'interpolation_multiplier': Range(1, 20, '', '2'),
    'max_starved_ticks': Range(1, 100000, ' policy ticks', '15'),
    'max_relative_target': Range(0.0, 6.3, ' [rad]; 0 = no limit (not recommended)', '0.35'),
    'display_port': Range(1, 65535, '', '9876'),
    'torch_threads': Range(0, None, '; 0 = torch default', '1'),
    'queue_threshold': Range(0, None, '; 0 = half a chunk', '25'),
    'execution_horizon': Range(0, None, '; 0 = auto', '10'),
    'max_guidance_weight': Range(0.0, None, '', '10'),
    'upload_every_n_episodes': Range(1, None, '', '5'),
    'target_video_file_size_mb': Range(0.0, None, ' [MB]; 0 = 200 MB', '200'),
    'ring_buffer_seconds': Range(0.0, None, ' [s]', '10'),
    'ring_buffer_max_memory_mb': Range(1.0, None, ' [MB]', '1024'),
    'num_episodes': Range(1, None, '', '50'),
    'episode_time_s': Range(0.01, None, ' [s]', '60'),
    'reset_time_s': Range(0.0, None, ' [s]', '60'),
    'push_timeout_s': Range(0.0, 3600.0, ' [s]', '60'),
    'recorder_fps': Range(1, 1000, ' [Hz]', '30'),
    'camera_size': Range(1, 8192, ' [px]', '640'),
    'camera_fps': Range(0.1, 1000.0, ' [Hz]', '30'),
}


def check_value(flag: str, limit: str, value, fix: str = '') -> None:
    """ConfigError naming `flag` (a CLI flag or a ROS parameter) when `value`
    is outside LIMITS[limit]."""
    rng = LIMITS[limit]
    problem = rng.problem(value)
    if problem:
        if not fix:
            fix = f'e.g. {flag}={rng.example}.' if flag.startswith('-') else f'e.g. {flag}:={rng.example}.'
        raise ConfigError(flag, problem, fix)
