# SPDX-License-Identifier: Apache-2.0
"""Mapping between ROS joint positions (radians, by joint name) and LeRobot
feature dicts (`<joint>.pos` in lerobot's units). Everything goes by name;
a missing joint is an error, never a silently shifted vector."""

from rollout_ros.core.joint_units import JointMap

POS_SUFFIX = '.pos'


class FeatureMapper:
    def __init__(self, joint_maps: dict[str, JointMap], joint_prefix: str = ''):
        self.joint_maps = joint_maps
        self.joint_prefix = joint_prefix

    @property
    def feature_names(self) -> list[str]:
        return [f'{name}{POS_SUFFIX}' for name in self.joint_maps]

    @property
    def ros_joint_names(self) -> list[str]:
        return [f'{self.joint_prefix}{name}' for name in self.joint_maps]

    def observation_state(self, names, positions) -> dict[str, float]:
        """JointState (names, radians) -> {'<joint>.pos': lerobot value}."""
        by_name = dict(zip(names, positions))
        out = {}
        for joint, jmap in self.joint_maps.items():
            ros_name = f'{self.joint_prefix}{joint}'
            if ros_name not in by_name:
                raise KeyError(f'joint {ros_name!r} missing from joint state (got {list(names)})')
            out[f'{joint}{POS_SUFFIX}'] = jmap.rad_to_feature(by_name[ros_name])
        return out

    def joint_command(self, action: dict[str, float]) -> tuple[list[str], list[float]]:
        """{'<joint>.pos': lerobot value} -> (ROS joint names, radians)."""
        names, positions = [], []
        for joint, jmap in self.joint_maps.items():
            key = f'{joint}{POS_SUFFIX}'
            if key not in action:
                raise KeyError(f'action lacks {key!r} (got {sorted(action)})')
            names.append(f'{self.joint_prefix}{joint}')
            positions.append(jmap.feature_to_rad(action[key]))
        return names, positions
