# SPDX-License-Identifier: Apache-2.0
"""Episodic strategy (lerobot-rollout --strategy.type=episodic): `num_episodes`
episodes of at most `episode_time_s`, each but the last followed by
`reset_time_s` of reset, as lerobot-record does with a policy.

Right arrow (pedal C) ends the episode or the reset early, left arrow
(pedal A) discards the episode and records it again, Esc stops (what was
recorded is kept). The phases live in core/episodic_phases.py.

While recording, the policy drives and every policy tick is a dataset row;
an episode opens on the recorder before its clock starts, so it holds no
row from before it and at most episode_time_s x fps rows. During a reset
nothing is recorded and the policy is not asked; it is reset before the
next episode. The robot meanwhile
- with a teleoperator, follows the leader: an actuated leader is first
  driven to the follower by the teleop node and then released
  (`smooth_leader_to_follower_handover`), and the follower approaches the
  leader's pose at `handover_speed` before following it;
- without one, returns to the pose it had when the loop started at
  `handover_speed` and holds it (`reset_to_initial_position`), or holds
  where it is.
Nothing in a reset blocks the loop: leader moves run in the teleop node,
follower moves are speed-capped steps of the loop itself.
"""

import sys
import threading
import time

import numpy as np
from rclpy.time import Time

from rollout_ros.core.episodic_phases import DISCARD, DONE, NEXT, RECORDING, REDO, RESETTING, SAVE, EpisodicPhases, Step
from rollout_ros.core.limits import LIMITS
from rollout_ros.hardware.leaders import get_leader_spec
from rollout_ros.nodes.spin import run_node
from rollout_ros.strategies.leader_link import LeaderLink, capped_step
from rollout_ros.strategies.recording import RecordingStrategyNode


class EpisodicStrategyNode(RecordingStrategyNode):
    strategy_type = 'episodic'

    def __init__(self, node_name: str = 'episodic_strategy', **kwargs):
        super().__init__(node_name, **kwargs)
        self.declare(
            'num_episodes',
            50,
            'Episodes to record; the run ends after the last one (lerobot --dataset.num_episodes).',
            **LIMITS['num_episodes'].kwargs(),
        )
        self.declare(
            'episode_time_s',
            60.0,
            'Longest episode [s]; it holds at most episode_time_s x fps rows (lerobot --dataset.episode_time_s).',
            **LIMITS['episode_time_s'].kwargs(),
        )
        self.declare(
            'reset_time_s',
            60.0,
            'Reset after each episode but the last [s]; nothing is recorded (lerobot --dataset.reset_time_s).',
            **LIMITS['reset_time_s'].kwargs(),
        )
        self.declare(
            'next_keys',
            ['right', 'n', 'KEY_C'],
            'Keys / pedal codes: end the episode or the reset early.',
            read_only=False,
        )
        self.declare(
            'redo_keys',
            ['left', 'r', 'KEY_A'],
            'Keys / pedal codes: discard the episode (while '
            'recording, or during the reset after it) and record it again.',
            read_only=False,
        )
        self.declare(
            'teleop_node',
            '',
            'Teleop (leader arm) node driving the robot during resets: its '
            "~/joint_states, ~/move_to and ~/release; '' = no teleoperator.",
        )
        self.declare(
            'teleop_type',
            'koch_leader',
            'Leader type; decides whether the leader is actuated (driven to the follower at a reset) or passive.',
        )
        self.declare(
            'reset_to_initial_position',
            True,
            'Without a teleoperator: during resets, bring the robot '
            'back to the pose it had when the loop started, at handover_speed; false = hold it where '
            'it is (lerobot --strategy.reset_to_initial_position).',
        )
        self.declare(
            'smooth_leader_to_follower_handover',
            True,
            'At a reset, drive an actuated leader to the '
            "follower's pose before releasing it; false = the follower approaches the leader instead "
            '(lerobot --strategy.smooth_leader_to_follower_handover).',
        )
        self.declare(
            'smooth_handover',
            True,
            'At a reset, move an actuated leader to the follower (see '
            'smooth_leader_to_follower_handover); false = no leader move, for clutch-style teleops. The '
            "follower's approach to the leader stays capped at handover_speed either way; where the "
            'poses already match it ends at once (lerobot --strategy.smooth_handover).',
        )
        self.declare(
            'handover_speed',
            0.5,
            'Joint speed cap of the follower during a reset, approaching the leader or the initial pose [rad/s].',
            min_value=0.01,
            max_value=10.0,
        )
        self.declare(
            'leader_move_speed',
            0.0,
            "Speed cap of the leader's move to the follower at a reset [rad/s]; 0 = the teleop node's move_speed.",
            min_value=0.0,
            max_value=10.0,
        )
        self.phases: EpisodicPhases | None = None
        self.leader: LeaderLink | None = None
        self.episode_frames: list[int] = []  # rows of each kept episode, in order
        # (unix time, phase entered, cause, what became of the episode): when a
        # recording phase began (the recorder's opening) and every step after.
        self.timeline: list[tuple[float, str, str, str | None]] = []
        self._actuated = False
        self._initial = None  # the loop's first observed state
        self._opened_at: int | None = None  # ns: the recorder opened the episode
        self._tick_records = False
        self._approaching = False
        self._leader_ready = threading.Event()
        self._handover_cancel = threading.Event()

    # Lifecycle ----------------------------------------------------------------
    def configure(self) -> None:
        teleop = self.param('teleop_node').strip()
        self._actuated = bool(teleop.strip('/')) and get_leader_spec(self.param('teleop_type')).actuated
        super().configure()
        if teleop.strip('/'):
            self.leader = LeaderLink(self, teleop)

    def cleanup(self) -> None:
        if self.leader is not None:
            self.leader.destroy()
            self.leader = None
        super().cleanup()

    def activate(self) -> None:
        self.phases = EpisodicPhases(
            self.param('num_episodes'), self.param('episode_time_s'), self.param('reset_time_s'), self.param('fps')
        )
        self.episode_frames = []
        self.timeline = []
        self._initial = None
        self._tick_records = False
        super().activate()

    def on_loop_started(self) -> None:
        self._open_episode()

    def before_walk_back(self) -> None:
        self._handover_cancel.set()
        if self._actuated and self.phases.phase == RESETTING:
            self.run_async(self.leader.release)
        p = self.phases
        if self.recording and p.phase == RECORDING and p.frames == 0:
            self.request('discard_episode')  # opened, nothing in it yet
        elif self.recording:
            # Saved by the base class: the open episode, or the one awaiting the end of its reset.
            self.episode_frames = [*p.kept_frames, p.frames if p.phase == RECORDING else p.last_episode_frames]
        super().before_walk_back()

    # Status -------------------------------------------------------------------
    def fill_status(self, msg) -> None:
        super().fill_status(msg)
        p = self.phases
        msg.phase = p.phase if p.phase != RECORDING or p.started else 'starting'
        msg.episode = p.episode
        msg.num_episodes = p.num_episodes
        msg.phase_time_left_s = float(p.time_left(time.monotonic()))

    def summary_extras(self) -> dict:
        p = self.phases
        return {
            **super().summary_extras(),
            'discarded': p.discarded if p else 0,
            'episode_frames': self.episode_frames or (list(p.kept_frames) if p else []),
            'transitions': [f'{s.old}->{s.new}:{s.cause}' for s in p.steps] if p else [],
        }

    # Operator input -----------------------------------------------------------
    def on_key(self, key: str) -> None:
        if key in self.param('next_keys'):
            event = NEXT
        elif key in self.param('redo_keys'):
            event = REDO
        else:
            return
        if not self.phases.request(event):
            self.get_logger().info(
                f'{key}: no {event} while {self.phases.phase}'
                + ('' if self.phases.started or self.phases.phase != RECORDING else ' (the episode is opening)')
            )

    # The loop's action source -------------------------------------------------
    def _policy(self, obs):
        if self._initial is None:
            self._initial = dict(obs[0])
        p = self.phases
        for step in p.advance(time.monotonic()):
            self._on_step(step)
        self._tick_records = False
        hold = self.loop.last_command or obs[0]
        if p.phase == RECORDING:
            if not p.started:
                opened = self._opened_at
                # Only observations taken after the recorder opened the episode
                # are rows of it; until then the robot holds its pose.
                if opened is None or Time.from_msg(obs[2]).nanoseconds < opened:
                    return hold
                p.begin(time.monotonic())
                self.timeline.append((opened * 1e-9, RECORDING, 'begin', None))
            action = super()._policy(obs)
            self._tick_records = action is not None
            return action
        if p.phase == RESETTING:
            return self._reset_action(obs, hold)
        return hold

    def _record(self, obs, action) -> None:
        if self._tick_records:
            super()._record(obs, action)
            self.phases.count_frame()

    def _on_step(self, step: Step) -> None:
        """On the loop thread between two ticks: anything slow goes to the worker."""
        p = self.phases
        self.timeline.append((time.time(), step.new, step.cause, step.close))
        self.get_logger().info(f'episode {p.episode}/{p.num_episodes}: {step.old} -> {step.new} ({step.cause})')
        if step.old == RECORDING:
            self._flush_pending()  # the episode's last row goes out before its save
        if step.close == SAVE:
            self.request('save_episode')
        elif step.close == DISCARD:
            self.speaker.say('Re-record episode')
            self.request('discard_episode')
        if step.new == RESETTING and step.old == RECORDING:
            self._start_reset()
        elif step.new == RECORDING:
            self._handover_cancel.set()
            self.reset_policy()
            self.loop.interpolator.reset()
            self._open_episode()
        elif step.new == DONE:
            self.get_logger().info(f'{p.saved} episodes recorded: done')
            self.speaker.say('Stop recording')
            self.loop.stop()

    def _open_episode(self) -> None:
        self._opened_at = None
        self.speaker.say(f'Recording episode {self.phases.episode}')

        def opened(ok: bool, message: str) -> None:
            if ok:
                self._opened_at = self.get_clock().now().nanoseconds
            else:
                self.last_error = f'the recorder could not open episode {self.phases.episode}: {message}'
                self.get_logger().error(self.last_error)
                self.loop.stop()

        self.request('start_episode', then=opened)

    # Reset --------------------------------------------------------------------
    def _start_reset(self) -> None:
        self.speaker.say('Reset the environment')
        self._approaching = True
        self._handover_cancel.clear()
        self._leader_ready.set()
        if (
            self._actuated
            and self.param('smooth_handover')
            and self.param('smooth_leader_to_follower_handover')
            and self.loop.last_command is not None
        ):
            self._leader_ready.clear()
            pose = self.loop.last_command
            self.run_async(lambda: self._hand_leader_over(pose))

    def _hand_leader_over(self, pose) -> None:
        """Worker: the leader comes to the follower, then goes limp for the operator's hand."""
        try:
            duration = self.leader.move_to(pose, self.param('leader_move_speed'))
            if duration is not None:
                self._handover_cancel.wait(duration + 0.1)
            self.leader.release()
        finally:
            self._leader_ready.set()

    def _reset_action(self, obs, hold):
        names = self.mapper.ros_joint_names
        if self.leader is not None:
            if not self._leader_ready.is_set():
                return hold  # the leader is still coming to the follower
            target = self.leader.pose(names)
            if target is None:
                # A starved tick holds the arm; a leader gone for max_starved_ticks ends the run.
                self.starve_reason = (
                    f'no fresh leader pose from {self.param("teleop_node")} '
                    f'(max_frame_age_s={self.param("max_frame_age_s")} s)'
                )
                return None
        elif self.param('reset_to_initial_position'):
            target = self.mapper.joint_command(self._initial)[1]
        else:
            return hold
        target = np.asarray(target, float)
        if self._approaching:
            current = self.mapper.joint_command(hold)[1]
            target, reached = capped_step(current, target, self.param('handover_speed') / self.param('fps'))
            # Following a leader: capped until it is reached, then the hand leads.
            self._approaching = not reached or self.leader is None
        return self.mapper.observation_state(names, target.tolist())


def main(args=None):
    return run_node(EpisodicStrategyNode, args, autostart=True)


if __name__ == '__main__':
    sys.exit(main())
