# SPDX-License-Identifier: Apache-2.0
"""Action chunks from a policy node in another process, queued on the strategy side.

The topic transport of the rtc backend (strategy ``policy_transport: topic``,
policy node ``inference_type: rtc``). The control loop never waits for the
network: each tick it publishes its observation and pops the next queued
action; the policy node computes chunks in its background thread and
publishes them; the queue here merges them with the same ``ActionQueue`` as
the in-process engine, so a chunk skips exactly the actions executed while
it was computed and travelled.

Wire protocol. Both topics live under the policy node's name, reliable,
depth 10 (a lost chunk would starve the loop; a lost observation would
desynchronise the index count).

``<policy>/observation``, rollout_ros_interfaces/RolloutFrame, one per policy
tick, from here:

* ``header.stamp``: the tick time: when the observation was taken, and when
  the action executed on this tick is due.
* ``header.frame_id``: that action's index, decimal: the number of actions
  executed so far plus a random per-session base (see below).
* ``state_names``/``state``: observation.state in LeRobot units.
* ``task``: the instruction ('' = the policy node's own).
* ``camera_names``/``camera_stamps``: the capture stamps of the frames the
  observation used; the policy node takes them from its own subscriptions
  to the camera topics. The action fields are left empty.

``<policy>/action_chunk``, trajectory_msgs/JointTrajectory, one per
inference, from the policy node:

* ``header.stamp``: the time ``points[0]`` is for, i.e. the stamp of the
  observation the chunk was computed from.
* ``header.frame_id``: ``"<index>;merge=<replace|blend>;blend_steps=<n>"``:
  the index of ``points[0]`` (the observation's index), then how to merge it
  into the queue (replace: an RTC chunk that already continues the plan;
  blend: fade the seam over n actions).
* ``joint_names``: action names in LeRobot units, e.g. ``shoulder_pan.pos``.
* ``points[i].positions``: action i; ``time_from_start`` = i / fps.

Why indices, not times: what a chunk must skip is what was executed since
its observation, which a starved tick (nothing executed) makes different
from the elapsed time. Why a random base: after a reset the indices of the
new session never meet the old one's, so the policy node knows to reset its
policy and a chunk still in flight from before the reset is dropped here.
"""

import random
import threading

import numpy as np
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from rollout_ros.core.action_queue import MODES, REPLACE, ActionQueue
from rollout_ros_interfaces.msg import RolloutFrame

OBSERVATION_TOPIC = 'observation'
CHUNK_TOPIC = 'action_chunk'
QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10)
# Session bases are drawn from [2**40, 2**56): two sessions' index ranges
# (a run executes far fewer than 2**32 actions) overlap with odds ~2**-24.
_BASE_BITS = 56
_MAX_SESSION_ACTIONS = 1 << 32


def format_chunk_id(index: int, mode: str, blend_steps: int) -> str:
    if mode not in MODES:
        raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
    return f'{int(index)};merge={mode};blend_steps={int(blend_steps)}'


def parse_chunk_id(text: str) -> tuple[int, str, int]:
    """(index, merge mode, blend steps) from a chunk's header.frame_id; ValueError when malformed."""
    head, *fields = text.split(';')
    opts = dict(f.split('=', 1) for f in fields if '=' in f)
    mode = opts.get('merge', REPLACE)
    if mode not in MODES:
        raise ValueError(f'merge={mode!r} is not one of {MODES}')
    return int(head), mode, int(opts.get('blend_steps', 0))


def chunk_message(
    names, rows: np.ndarray, index: int, stamp, fps: float, mode: str, blend_steps: int
) -> JointTrajectory:
    msg = JointTrajectory()
    msg.header.stamp = stamp
    msg.header.frame_id = format_chunk_id(index, mode, blend_steps)
    msg.joint_names = list(names)
    step_ns = 1e9 / fps
    for i, row in enumerate(np.asarray(rows, dtype=float)):
        ns = int(round(i * step_ns))
        point = JointTrajectoryPoint(positions=row.tolist())
        point.time_from_start.sec, point.time_from_start.nanosec = divmod(ns, 1_000_000_000)
        msg.points.append(point)
    return msg


class RemoteIndex:
    """Policy-node side: the consumer's action indices mapped onto a local queue's count.

    ``local(index)`` returns the local count for a remote index, and whether
    it starts a new session (the caller then resets its engine).
    """

    def __init__(self):
        self._offset = None
        self._last = None

    def local(self, index: int, local_now: int) -> tuple[int, bool]:
        new = self._last is None or not 0 <= index - self._last < _MAX_SESSION_ACTIONS
        if new:
            self._offset = local_now - index
        self._last = index
        return index + self._offset, new

    def forget(self) -> None:
        self._last = None


class ChunkConsumer:
    """The strategy's policy when the policy node runs elsewhere: the same calls
    as an in-process policy node (``infer``, ``submit_observation``,
    ``chunk_ready``, ``reset``), images given as the camera's Image messages
    (only their stamps are sent).
    """

    def __init__(self, node, policy_node: str, callback_group=None):
        self._node = node
        self._pub = node.create_publisher(RolloutFrame, f'{policy_node}/{OBSERVATION_TOPIC}', QOS)
        self._sub = node.create_subscription(
            JointTrajectory, f'{policy_node}/{CHUNK_TOPIC}', self._on_chunk, QOS, callback_group=callback_group
        )
        self.queue = ActionQueue()
        self._lock = threading.Lock()
        self._names: list[str] | None = None
        self.chunks = 0
        self.dropped_chunks = 0
        self.reset()

    @property
    def chunker(self):
        """What strategies reach for on an in-process policy node (to reset its queue)."""
        return self

    @property
    def delays(self):
        """Actions executed while each chunk was computed and delivered (= skipped from it)."""
        return self.queue.delays

    def reset(self) -> None:
        """New session: queued actions and any chunk still on its way are dropped."""
        with self._lock:
            self.queue.clear()
            self._start = self.queue.consumed
            self._base = random.getrandbits(_BASE_BITS - 1) + (1 << 40) - self._start

    def destroy(self) -> None:
        self._node.destroy_publisher(self._pub)
        self._node.destroy_subscription(self._sub)

    def submit_observation(self, state: dict[str, float], images: dict, task: str | None = None) -> None:
        msg = RolloutFrame()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.header.frame_id = str(self._base + self.queue.consumed)
        msg.state_names = list(state)
        msg.state = [float(v) for v in state.values()]
        msg.task = task or ''
        msg.camera_names = list(images)
        msg.camera_stamps = [img.header.stamp for img in images.values()]
        self._pub.publish(msg)

    # Counted by the queue itself, so every consumer of one reports the same way.
    starved = property(lambda self: self.queue.starved, doc='Dry pops after the first chunk (held ticks).')
    waiting_ticks = property(lambda self: self.queue.waiting, doc='Dry pops before the first chunk.')

    def next_action(self) -> dict[str, float] | None:
        """The next queued action by name; None when dry (the loop holds and counts it)."""
        row = self.queue.pop()
        if row is None:
            return None
        return dict(zip(self._names, row.tolist()))

    def infer(self, state: dict[str, float], images: dict, task: str | None = None):
        self.submit_observation(state, images, task)
        return self.next_action()

    def chunk_ready(self) -> bool:
        return self.queue.size > 0

    def stats(self) -> dict:
        return {
            'chunks': self.chunks,
            'dropped_chunks': self.dropped_chunks,
            'starved': self.starved,
            'waiting_ticks': self.waiting_ticks,
            'stale_chunks': self.queue.stale_chunks,
            'delay_p50': self.delays.percentile(50),
            'delay_max': self.delays.max(),
        }

    def _on_chunk(self, msg: JointTrajectory) -> None:
        log = self._node.get_logger()
        try:
            index, mode, blend_steps = parse_chunk_id(msg.header.frame_id)
        except ValueError as e:
            self.dropped_chunks += 1
            log.error(f'action chunk with frame_id {msg.header.frame_id!r} dropped: {e}', throttle_duration_sec=2.0)
            return
        names = list(msg.joint_names)
        rows = np.array([p.positions for p in msg.points], dtype=float)
        if rows.ndim != 2 or not len(rows) or rows.shape[1] != len(names):
            self.dropped_chunks += 1
            log.error(f'action chunk of shape {rows.shape} for {len(names)} joints dropped', throttle_duration_sec=2.0)
            return
        with self._lock:
            first = index - self._base
            if not self._start <= first <= self.queue.consumed:
                self.dropped_chunks += 1  # planned in another session (before a reset)
                return
            if self._names is not None and names != self._names:
                if sorted(names) != sorted(self._names):
                    self.dropped_chunks += 1
                    log.error(
                        f'action chunk names {names} differ from earlier chunks {self._names}',
                        throttle_duration_sec=2.0,
                    )
                    return
                # Queued rows are positional: keep the first chunk's order.
                rows = rows[:, [names.index(n) for n in self._names]]
            elif self._names is None:
                self._names = names
            self.queue.blend_steps = blend_steps
            self.queue.merge(rows, first, mode)
            self.chunks += 1
