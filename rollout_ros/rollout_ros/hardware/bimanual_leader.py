# SPDX-License-Identifier: Apache-2.0
"""Two leader arms on their own buses behind one LeaderArm interface, with
`left_`/`right_` joint names as lerobot's bi_* teleoperators have them. A
move drives both arms at once, each with the same speed cap. No rclpy here.
"""

import threading

from rollout_ros.core.calibration import MotorCalibration
from rollout_ros.hardware.leader_arm import LeaderArm, NotActuatedError
from rollout_ros.hardware.leaders import LeaderSpec
from rollout_ros.hardware.motion import MoveOutcome


class BimanualLeader:
    def __init__(self, spec: LeaderSpec, ports: dict[str, str], calibration: dict[str, MotorCalibration]):
        """`ports`: side ('left'/'right') -> port; `calibration` by prefixed joint name."""
        self.spec = spec
        self.actuated = spec.actuated
        self.arms: dict[str, LeaderArm] = {}
        for prefix, arm_spec in spec.arms:
            side = prefix.rstrip('_')
            calib = {name: calibration[f'{prefix}{name}'] for name in arm_spec.motor_names}
            self.arms[prefix] = LeaderArm(arm_spec, ports[side], calib, actuated=arm_spec.actuated)

    @property
    def joint_names(self) -> list[str]:
        return self.spec.motor_names

    @property
    def torqued(self) -> frozenset[str]:
        return frozenset(f'{p}{m}' for p, arm in self.arms.items() for m in arm.torqued)

    def connect(self) -> list[str]:
        rewritten = []
        try:
            for prefix, arm in self.arms.items():
                rewritten += [f'{prefix}{m}' for m in arm.connect()]
        except BaseException:
            self.disconnect()
            raise
        return rewritten

    def read(self) -> dict[str, float]:
        return {f'{p}{m}': r for p, arm in self.arms.items() for m, r in arm.read().items()}

    def _split(self, target: dict[str, float]) -> dict[str, dict[str, float]]:
        unknown = set(target) - set(self.joint_names)
        if unknown:
            raise KeyError(f'unknown joints {sorted(unknown)}; this leader has {self.joint_names}')
        return {p: {n.removeprefix(p): v for n, v in target.items() if n.startswith(p)} for p in self.arms}

    def move_duration(self, target: dict[str, float], max_speed: float) -> float:
        return max(
            arm.move_duration(part, max_speed) for arm, part in zip(self.arms.values(), self._split(target).values())
        )

    def move_to(
        self,
        target: dict[str, float],
        max_speed: float,
        rate_hz: float,
        timeout_s: float = 30.0,
        cancelled=None,
        sleep=None,
    ) -> MoveOutcome:
        """Both arms at once; the outcome of the one that did worst."""
        if not self.actuated:
            raise NotActuatedError(f'{self.spec.type} is not actuated: a human moves it.')
        parts = self._split(target)
        outcomes: dict[str, MoveOutcome | BaseException] = {}

        def run(prefix):
            try:
                outcomes[prefix] = self.arms[prefix].move_to(
                    parts[prefix], max_speed, rate_hz, timeout_s, cancelled=cancelled, sleep=sleep
                )
            except BaseException as e:  # noqa: BLE001 - handed to the caller below
                outcomes[prefix] = e

        threads = [threading.Thread(target=run, args=(p,), name=f'leader-move-{p}', daemon=True) for p in self.arms]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for result in outcomes.values():
            if isinstance(result, BaseException):
                raise result
        for worst in (MoveOutcome.TOO_FAR, MoveOutcome.TIMED_OUT, MoveOutcome.CANCELLED):
            if worst in outcomes.values():
                return worst
        return MoveOutcome.ARRIVED

    def release(self) -> None:
        errors = []
        for arm in self.arms.values():
            try:
                arm.release()
            except Exception as e:  # noqa: BLE001 - the other arm is released all the same
                errors.append(e)
        if errors:
            raise errors[0]

    def disconnect(self) -> None:
        errors = []
        for arm in self.arms.values():
            try:
                arm.disconnect()
            except Exception as e:  # noqa: BLE001 - the other arm is disconnected all the same
                errors.append(e)
        if errors:
            raise errors[0]
