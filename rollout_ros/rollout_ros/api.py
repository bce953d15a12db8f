# SPDX-License-Identifier: Apache-2.0
"""Python API: a rollout in your own program, without ros2 launch.

    from rollout_ros.api import CameraConfig, RolloutConfig, build_rollout_context

    cfg = RolloutConfig(policy_path='outputs/act/pretrained_model', robot_type='so101_follower',
                        robot_port='/dev/ttyACM0', robot_id='arm',
                        cameras=[CameraConfig('front', '0')], fps=30, duration=60, task='pick')
    ctx = build_rollout_context(cfg, action_processor=my_safety_filter)
    ctx.strategy.setup()          # configure + activate every node, in order
    summary = ctx.strategy.run()  # until duration, a stop key, or ctx.strategy.stop()
    ctx.strategy.teardown()       # ordered shutdown; recordings saved and finalized

The nodes are the very ones the CLI and the launch files start, composed in
this process. Processors work in LeRobot feature space:
`observation_processor(state: dict) -> dict` sees the robot's state features
before the policy and the recorder do; `action_processor(action: dict) -> dict`
maps the policy's action to the robot's joints just before the command.
"""

import threading
from dataclasses import dataclass
from typing import Callable

import rclpy

from rollout_ros.cli import SUMMARY_KEYS, CameraConfig, Rollout, RolloutConfig  # noqa: F401 - re-exported
from rollout_ros.recording_config import DatasetConfig, RecordingConfig, TeleopConfig  # noqa: F401

Processor = Callable[[dict], dict]


class StrategyRunner:
    """setup / run / teardown of one composed rollout, as lerobot's strategies offer."""

    def __init__(self, rollout: Rollout):
        self._rollout = rollout
        self._stop = threading.Event()
        self.summary: dict = {}

    @property
    def node(self):
        """The strategy's lifecycle node (state, parameters, status)."""
        return self._rollout.strategy

    def setup(self) -> None:
        self._rollout.start()

    def run(self) -> dict:
        self._rollout.wait(self._stop)
        self.node.loop.stop()
        return self.node.loop.summary()

    def stop(self) -> None:
        """Ends run() from any thread."""
        self._stop.set()

    def teardown(self) -> dict:
        self.summary = self._rollout.stop()
        return self.summary

    def __enter__(self):
        self.setup()
        return self

    def __exit__(self, *exc) -> None:
        self.teardown()


@dataclass
class RolloutContext:
    config: RolloutConfig
    strategy: StrategyRunner

    @property
    def nodes(self) -> list:
        return [self.strategy.node, *self.strategy._rollout.managed]


def build_rollout_context(
    config: RolloutConfig, observation_processor: Processor | None = None, action_processor: Processor | None = None
) -> RolloutContext:
    """Build every node of the rollout (nothing connects or moves until setup())."""
    if not rclpy.ok():
        rclpy.init()
    rollout = Rollout(config)
    rollout.strategy.observation_processor = observation_processor
    rollout.strategy.action_processor = action_processor
    return RolloutContext(config, StrategyRunner(rollout))
