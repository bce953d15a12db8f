# SPDX-License-Identifier: Apache-2.0
"""DAgger strategy: the policy drives, a human takes over when it goes wrong,
and the takeovers become training data (`intervention=True`).

Space (or pedal A) pauses and resumes, Tab (pedal B) starts and ends a
correction, Enter (pedal C) uploads, Esc stops. On pause an actuated leader
(SO leaders) is driven to the follower's pose at a capped speed by the
teleop node and goes limp when the correction starts; with a passive leader
(Koch) the follower instead approaches the leader's pose at
`handover_speed` before following it. All of that happens without blocking
the loop: leader moves run in the teleop node, follower approaches are
speed-capped steps of the loop itself.

Corrections-only (default): each correction is one episode, until
`num_episodes`. With `record_autonomous` everything is recorded, pauses
included with their real time stamps, and the recorder rotates episodes as
sentry does (never in the middle of a correction).
"""

import sys

import numpy as np

from rollout_ros.core.dagger_phases import AUTONOMOUS, CORRECTING, CORRECTION, PAUSE_RESUME, PAUSED, DaggerPhases
from rollout_ros.core.errors import ConfigError
from rollout_ros.core.limits import LIMITS
from rollout_ros.hardware.leaders import get_leader_spec
from rollout_ros.nodes.spin import run_node
from rollout_ros.strategies.leader_link import LeaderLink, capped_step
from rollout_ros.strategies.recording import RecordingStrategyNode


class DaggerStrategyNode(RecordingStrategyNode):
    strategy_type = 'dagger'

    def __init__(self, node_name: str = 'dagger_strategy', **kwargs):
        super().__init__(node_name, **kwargs)
        self.declare(
            'teleop_node',
            'teleop',
            'Teleop (leader arm) node: its ~/joint_states, ~/move_to and ~/release are used. Required for dagger.',
        )
        self.declare(
            'teleop_type',
            'koch_leader',
            'Leader type; decides whether the leader is actuated '
            '(driven to the follower on pause) or passive (the follower comes to it).',
        )
        self.declare(
            'pause_resume_keys', ['space', 'KEY_A'], 'Keys / pedal codes: pause or resume the policy.', read_only=False
        )
        self.declare(
            'correction_keys', ['tab', 'KEY_B'], 'Keys / pedal codes: start or end a correction.', read_only=False
        )
        self.declare('upload_keys', ['enter', 'KEY_C'], 'Keys / pedal codes: upload saved episodes.', read_only=False)
        self.declare(
            'record_autonomous',
            False,
            'Record autonomous and paused frames too (episodes rotated by the recorder), not only corrections.',
        )
        self.declare(
            'num_episodes',
            50,
            'Corrections-only mode: stop after this many saved corrections.',
            **LIMITS['num_episodes'].kwargs(),
        )
        self.declare('smooth_handover', True, 'On pause, drive an actuated leader to the follower pose.')
        self.declare(
            'handover_speed',
            0.5,
            'Joint speed cap while the follower approaches a passive '
            "leader's pose at the start of a correction [rad/s].",
            min_value=0.01,
            max_value=10.0,
        )
        self.declare(
            'leader_move_speed',
            0.0,
            "Speed cap of the leader's move to the follower on pause [rad/s]; 0 = the teleop node's move_speed.",
            min_value=0.0,
            max_value=10.0,
        )
        self.phases = DaggerPhases()
        self.corrections = 0
        self.transitions: list[tuple[str, str]] = []
        self.leader: LeaderLink | None = None
        self._approaching = False
        self._tick_intervention = False
        self._actuated = False

    def configure(self) -> None:
        teleop = self.param('teleop_node').strip()
        if not teleop.strip('/'):
            raise ConfigError(
                'teleop_node',
                'dagger needs a leader arm to correct with.',
                'start a teleop node and name it here (teleop:=... in the launch file).',
            )
        self._actuated = get_leader_spec(self.param('teleop_type')).actuated
        super().configure()
        self.leader = LeaderLink(self, teleop)

    def cleanup(self) -> None:
        if self.leader is not None:
            self.leader.destroy()
            self.leader = None
        super().cleanup()

    def activate(self) -> None:
        self.phases.reset()
        self.corrections = 0
        self.transitions = []
        self._approaching = False
        super().activate()

    def on_loop_started(self) -> None:
        if self.param('record_autonomous'):
            self.request('start_episode')

    def before_walk_back(self) -> None:
        if self._actuated and self.phases.phase != AUTONOMOUS:
            self.phases.reset()
            self._release_leader()
        super().before_walk_back()

    def intervention(self) -> bool:
        return self._tick_intervention

    def _record(self, obs, action) -> None:
        # Corrections only: a paused tick whose observation is stamped before
        # the recorder took the save would otherwise end up in the episode.
        if self._tick_intervention or self.param('record_autonomous'):
            super()._record(obs, action)

    def fill_status(self, msg) -> None:
        super().fill_status(msg)
        msg.phase = self.phases.phase

    def summary_extras(self) -> dict:
        return {
            **super().summary_extras(),
            'corrections': self.corrections,
            'transitions': [f'{a}->{b}' for a, b in self.transitions],
        }

    # Operator input -----------------------------------------------------------
    def on_key(self, key: str) -> None:
        if key in self.param('pause_resume_keys'):
            event = PAUSE_RESUME
        elif key in self.param('correction_keys'):
            event = CORRECTION
        elif key in self.param('upload_keys'):
            if self.phases.phase == CORRECTING:
                self.get_logger().info('upload postponed: not during a correction')
            else:
                self.request('push')
            return
        else:
            return
        if not self.phases.request(event):
            self.get_logger().info(f'{key}: no {event} from {self.phases.phase}')

    # The loop's action source -------------------------------------------------
    def _policy(self, obs):
        # This tick's action comes from the phase its observation was taken
        # in; a key pressed meanwhile takes effect from the next tick. The
        # recorder brackets episodes by stamp, so a correction episode holds
        # exactly the ticks acted on by the human.
        phase = self.phases.phase
        self._tick_intervention = phase == CORRECTING
        if phase == AUTONOMOUS:
            action = super()._policy(obs)
        elif phase == PAUSED:
            action = self.loop.last_command or obs[0]
        else:
            action = self._correction_action(obs)
        for old, new in self.phases.consume():
            self._on_transition(old, new)
        return action

    def _correction_action(self, obs):
        names = self.mapper.ros_joint_names
        leader = self.leader.pose(names)
        if leader is None:
            # No fresh leader pose: hold and count the tick, record nothing.
            self.starve_reason = (
                f'no fresh leader pose from {self.param("teleop_node")} '
                f'(max_frame_age_s={self.param("max_frame_age_s")} s)'
            )
            return None
        target = np.array(leader)
        if self._approaching:
            current = self.mapper.joint_command(self.loop.last_command or obs[0])[1]
            target, reached = capped_step(current, target, self.param('handover_speed') / self.param('fps'))
            self._approaching = not reached
        return self.mapper.observation_state(names, target.tolist())

    def _on_transition(self, old: str, new: str) -> None:
        """Runs on the loop thread between two ticks: anything slow goes to the worker."""
        self.transitions.append((old, new))
        self.get_logger().info(f'dagger: {old} -> {new}')
        self.speaker.say(new)
        corrections_only = not self.param('record_autonomous')
        if new == PAUSED and old == AUTONOMOUS:
            if self._actuated and self.param('smooth_handover'):
                self._leader_to_follower()
        elif new == CORRECTING:
            # Even an actuated leader, just driven to the follower, may have been
            # nudged: the follower never jumps to it.
            self._approaching = True
            if self._actuated:
                self.run_async(self._release_leader)
            if corrections_only:
                self.request('start_episode')
        elif new == PAUSED and old == CORRECTING:
            if corrections_only:
                self.corrections += 1
                self._flush_pending()  # the correction's last row goes out before its save
                self.request('save_episode')
                if self.corrections >= self.param('num_episodes'):
                    self.get_logger().info(f'{self.corrections} corrections recorded: done')
                    self.loop.stop()
            if self._actuated:
                self._leader_to_follower()
        elif new == AUTONOMOUS:
            self.reset_policy()
            self.loop.interpolator.reset()
            if self._actuated:
                self.run_async(self._release_leader)

    # Leader -------------------------------------------------------------------
    def _leader_to_follower(self) -> None:
        """Drive the actuated leader to the follower's last command (it then holds there)."""
        pose = self.loop.last_command
        if pose is not None:
            self.run_async(lambda: self._move_leader(pose))

    def _move_leader(self, action) -> None:
        self.leader.move_to(action, self.param('leader_move_speed'))

    def _release_leader(self) -> None:
        self.leader.release()


def main(args=None):
    return run_node(DaggerStrategyNode, args, autostart=True)


if __name__ == '__main__':
    sys.exit(main())
