# SPDX-License-Identifier: Apache-2.0
"""The recorder's writer thread: turns synced ticks into dataset rows and
runs every episode command, in the order they were received.

Everything that can block (add_frame waiting for a video encoder, a save
that concatenates video, a ring buffer drained into a new episode) runs here,
so the node's subscriptions and service callbacks never wait on the disk.
A command (start/save/discard/push/close) travels in the same queue as the
ticks, so a save covers exactly the ticks received before it was asked for.
No rclpy: ticks and results are plain objects.
"""

import json
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from rollout_ros.core.image_sync import SyncedTick
from rollout_ros.dataset.features import (
    EXECUTED_ACTION,
    IMAGE_PREFIX,
    INTERVENTION,
    STAMP_ACTION_SENT,
    STAMP_CAMERA_PREFIX,
    STAMP_OBSERVATION,
)

logger = logging.getLogger(__name__)
PROBLEM_LOG_PERIOD_S = 5.0


class RecorderError(RuntimeError):
    """A command that cannot be done now; the text is the service's reply."""


@dataclass
class Command:
    name: str  # start | save | discard | push | close
    args: dict = field(default_factory=dict)
    future: Future = field(default_factory=Future)


def stamp_s(t) -> float:
    """builtin_interfaces/Time -> unix seconds."""
    return t.sec + t.nanosec * 1e-9


class RowBuilder:
    """A RolloutFrame (state/action by name) and its images -> one dataset row
    in the dataset's order. A name the frame lacks is an error, never a
    shifted vector."""

    def __init__(self, features: dict, image_decoder):
        self.features = features
        self.state_names = list(features['observation.state']['names'])
        self.action_names = list(features['action']['names'])
        self.cameras = [k[len(IMAGE_PREFIX) :] for k in features if k.startswith(IMAGE_PREFIX)]
        self.decode = image_decoder  # ROS Image -> HxWx3 uint8 RGB
        self.executed_unknown = 0  # frames whose executed action the strategy could not give

    @staticmethod
    def _by_name(what, names, values, wanted):
        if len(names) != len(values):
            raise ValueError(f'frame has {len(names)} {what} names but {len(values)} values')
        index = {n: i for i, n in enumerate(names)}
        missing = [n for n in wanted if n not in index]
        if missing:
            raise ValueError(f'frame lacks {what} {missing} (has {list(names)})')
        return [values[index[n]] for n in wanted]

    def build(self, msg, images: dict) -> dict:
        """images: cam -> (capture stamp ns, ROS Image). The writer checks and
        casts the values; images must already be HxWx3 RGB."""
        row = {
            'observation.state': self._by_name('state', msg.state_names, msg.state, self.state_names),
            'action': self._by_name('action', msg.action_names, msg.action, self.action_names),
        }
        if EXECUTED_ACTION in self.features:
            if len(msg.action_executed):
                row[EXECUTED_ACTION] = self._by_name(
                    'executed action', msg.action_names, msg.action_executed, self.action_names
                )
            else:
                # Without limits in the way the command is the action; stats
                # and the Hub viewer would choke on NaN.
                self.executed_unknown += 1
                row[EXECUTED_ACTION] = row['action']
        if STAMP_OBSERVATION in self.features:
            row[STAMP_OBSERVATION] = stamp_s(msg.header.stamp)
            row[STAMP_ACTION_SENT] = stamp_s(msg.action_sent)
        if INTERVENTION in self.features:
            row[INTERVENTION] = bool(msg.intervention)
        for cam in self.cameras:
            stamp_ns, image = images[cam]
            pixels = self.decode(image)
            want = tuple(self.features[IMAGE_PREFIX + cam]['shape'])
            if pixels.shape != want:
                raise ValueError(
                    f'camera {cam!r} sends {pixels.shape[0]}x{pixels.shape[1]} images, the dataset '
                    f'has {want[0]}x{want[1]} (camera_shapes)'
                )
            row[IMAGE_PREFIX + cam] = np.ascontiguousarray(pixels)
            if STAMP_CAMERA_PREFIX + cam in self.features:
                row[STAMP_CAMERA_PREFIX + cam] = stamp_ns * 1e-9
        return row


class RecorderWorker:
    def __init__(
        self,
        writer,
        builder: RowBuilder,
        fps: float,
        *,
        default_task: str = 'rollout',
        ring=None,
        rotation=None,
        hub=None,
        upload_every: int = 5,
        max_backlog: int = 300,
        log=logger,
        on_failure=None,
    ):
        self.writer = writer
        self.builder = builder
        self.fps = float(fps)
        self.default_task = default_task
        self.ring = ring
        self.rotation = rotation
        self.hub = hub
        self.upload_every = max(1, int(upload_every))
        self.max_backlog = int(max_backlog)
        self.log = log
        # A writer failure (disk full, an I/O error) ends the recording: the
        # owner is told once and stops the run; nothing is written after it.
        self.on_failure = on_failure
        self.failed = ''
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        # Written by the worker thread only; the status timer reads them.
        self.recording = False
        self.episode_index = writer.num_episodes
        self.episode_frames = 0
        self.episode_missing = 0
        self.total_episodes = writer.num_episodes
        self.total_frames = writer.num_frames  # saved; the open episode's are episode_frames
        self.session_episodes = 0  # saved by this run (a resumed dataset holds more)
        self.session_frames = 0
        self.missing_images = 0  # ticks not written: an image never came
        self.bad_frames = 0  # ticks not written: names/shapes do not fit the dataset
        self.idle_frames = 0  # ticks while not recording and no ring buffer
        self.dropped_backlog = 0  # ticks not written: the worker was too far behind
        self.write_errors = 0
        self.ring_frames_dropped = 0  # left in the ring when the recorder stopped
        self.add_frame_max_s = 0.0
        self.rotations = 0
        self.last_save: dict = {}
        self.last_problem = ''
        self._last_log_t = -PROBLEM_LOG_PERIOD_S
        self._saved_since_push = 0
        self._ring_warned = False
        threading.Thread(target=self._run, name='recorder-worker', daemon=True).start()

    # Producer side (any thread) ----------------------------------------------
    def put_tick(self, tick: SyncedTick) -> None:
        if self._queue.qsize() >= self.max_backlog:
            self.dropped_backlog += 1
            self._problem(
                f'{self.dropped_backlog} tick(s) dropped: the writer is {self.max_backlog} '
                'ticks behind (disk or encoder too slow)'
            )
            return
        self._queue.put(tick)

    def put_command(self, cmd: Command) -> Future:
        if self._closed:
            cmd.future.set_exception(RecorderError('the recorder is closed'))
        elif self.failed and cmd.name != 'close':
            cmd.future.set_exception(RecorderError(f'the recording stopped: {self.failed}'))
        else:
            self._queue.put(cmd)
        return cmd.future

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    # Worker thread --------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, Command):
                if self.failed and item.name != 'close':
                    item.future.set_exception(RecorderError(f'the recording stopped: {self.failed}'))
                    continue
                try:
                    item.future.set_result(getattr(self, f'_cmd_{item.name}')(**item.args))
                except Exception as e:  # noqa: BLE001 - every failure goes back to the caller
                    if not isinstance(e, RecorderError):
                        self.log.error(f'{item.name} failed: {type(e).__name__}: {e}')
                        if item.name in ('start', 'save', 'discard'):
                            self._fail(f'{item.name} failed: {type(e).__name__}: {e}')
                    item.future.set_exception(e)
                if item.name == 'close':
                    return
            elif not self.failed:
                try:
                    self._on_tick(item)
                except Exception as e:  # noqa: BLE001 - rows that do not fit are caught in _on_tick
                    self._fail(f'writing a frame failed: {type(e).__name__}: {e}')

    def _fail(self, text: str) -> None:
        """The writer failed: close the open episode as far as the disk lets
        (saved, else dropped so no partial file stays), stop taking ticks and
        tell the owner. Saved episodes are untouched: each was durable when saved."""
        self.write_errors += 1
        self.last_problem = text
        if self.failed:
            return
        self.failed = text
        closed = ''
        if self.recording and self.episode_frames:
            try:
                closed = f'; the open episode was saved ({self._save("writer failure")["frames"]} frames)'
            except Exception as e:  # noqa: BLE001 - the disk is what failed; drop the episode instead
                try:
                    self.writer.discard_episode()
                    closed = f'; the open episode could not be saved ({type(e).__name__}) and was dropped'
                except Exception as e2:  # noqa: BLE001
                    closed = f'; the open episode could not be saved nor dropped ({type(e2).__name__})'
        self.recording = False
        self.episode_frames = self.episode_missing = 0
        self.failed = (
            f'{text}{closed}; {self.total_episodes} earlier episode(s) are intact at '
            f'{getattr(self.writer, "root", "the dataset root")}'
        )
        self.log.error(f'recording stopped: {self.failed}')
        if self.on_failure is not None:
            self.on_failure(self.failed)

    def _problem(self, text: str) -> None:
        """Kept for the status; logged at most every few seconds (a stream of
        lost ticks is one warning with a count, not one per tick)."""
        now = time.monotonic()
        if now - self._last_log_t >= PROBLEM_LOG_PERIOD_S:
            self._last_log_t = now
            self.log.warning(text)
        self.last_problem = text

    def _on_tick(self, tick: SyncedTick) -> None:
        if not self.recording and self.ring is None:
            self.idle_frames += 1
            return
        if tick.missing:
            self.missing_images += 1
            self.episode_missing += self.recording
            self._problem(
                f'{self.missing_images} tick(s) not recorded: no image from {tick.missing} '
                'with the stamp the observation used'
            )
            return
        try:
            row = self.builder.build(tick.payload, tick.images)
        except (KeyError, ValueError) as e:
            self.bad_frames += 1
            self._problem(f'{self.bad_frames} tick(s) not recorded: {e}')
            return
        task = tick.payload.task or self.default_task
        if not self.recording:
            row['task'] = task
            self.ring.append(row)
            warning = None if self._ring_warned else self.ring.warning()
            if warning:
                self._ring_warned = True
                self.log.warning(warning)
            return
        self._add(row, task)
        if (
            self.rotation is not None
            and not tick.payload.intervention
            and self.rotation.should_rotate(self.episode_frames / self.fps, self.writer.open_episode_video_bytes())
        ):
            # A correction in progress stays in one episode; the save waits for its end.
            self.rotations += 1
            self._save('rotation')
            self.recording = True

    def _add(self, row: dict, task: str) -> None:
        t0 = time.monotonic()
        self.writer.add_frame(row, task)
        self.add_frame_max_s = max(self.add_frame_max_s, time.monotonic() - t0)
        self.episode_frames += 1

    def _open(self) -> None:
        self.recording = True
        self.episode_frames = self.episode_missing = 0

    def _save(self, reason: str) -> dict:
        info = self.writer.save_episode()
        result = {
            'episode_index': info['episode_index'],
            'frames': info['length'],
            'missing_image_frames': self.episode_missing,
            'reason': reason,
            'seconds': round(info['seconds'], 3),
            'save_ms': round(info['save_ms'], 1),
            'video_bytes': info['video_bytes'],
            'encoder_backpressure_s': round(info['backpressure_s'], 3),
        }
        self.last_save = result
        self.log.info('saved episode ' + json.dumps(result))
        self.recording = False
        self.total_episodes = self.writer.num_episodes
        self.total_frames = self.writer.num_frames
        self.episode_index = self.total_episodes
        self.session_episodes += 1
        self.session_frames += info['length']
        result.update(session_episodes=self.session_episodes, session_frames=self.session_frames)
        self.episode_frames = self.episode_missing = 0
        self._saved_since_push += 1
        if self.hub is not None and self._saved_since_push >= self.upload_every:
            self._saved_since_push = 0
            self.hub.request_push(f'{self.upload_every} episodes saved')
        return result

    # Commands (worker thread) ----------------------------------------------------
    def _cmd_start(self) -> dict:
        if self.recording:
            raise RecorderError(
                f'episode {self.episode_index} is already recording '
                f'({self.episode_frames} frames); save or discard it first'
            )
        self._open()
        from_ring = 0
        if self.ring is not None:
            for row in self.ring.drain_iter():
                self._add(row, row.pop('task'))
                from_ring += 1
            self._ring_warned = False
        return {'episode_index': self.episode_index, 'frames_from_ring': from_ring}

    def _cmd_save(self) -> dict:
        if not self.recording:
            raise RecorderError('no episode is recording; call start_episode first')
        if self.episode_frames == 0:
            raise RecorderError(
                f'episode {self.episode_index} has no frames yet (missing images: '
                f'{self.episode_missing}); nothing to save'
            )
        return self._save('requested')

    def _cmd_discard(self) -> dict:
        if not self.recording:
            raise RecorderError('no episode is recording; nothing to discard')
        frames = self.episode_frames
        self.writer.discard_episode()
        self.recording = False
        self.episode_frames = self.episode_missing = 0
        return {'episode_index': self.episode_index, 'discarded_frames': frames}

    def _cmd_push(self) -> dict:
        if self.hub is None:
            raise RecorderError('push_to_hub is false: this recorder does not upload')
        self._saved_since_push = 0
        self.hub.request_push('requested')
        return self.hub.status()

    def _cmd_close(self, save_partial: bool, push_timeout_s: float) -> dict:
        """Teardown: keep what was recorded, make the dataset whole, last push."""
        self._closed = True
        summary = {}
        try:
            if self.recording and self.episode_frames and save_partial:
                summary['saved'] = self._save('stopped')
            elif self.recording and self.episode_frames:
                summary['discarded'] = self._cmd_discard()
        finally:
            # Even after a failed save: release the dataset, push what is saved.
            self.recording = False
            if self.ring is not None and len(self.ring):
                # Frames nobody asked to keep: said, not hidden.
                self.ring_frames_dropped = len(self.ring)
                self.log.info(f'{self.ring_frames_dropped} ring-buffer frames were not saved (no start_episode)')
                self.ring.clear()
            try:
                self.writer.finalize()
            finally:
                if self.hub is not None:
                    summary['upload'] = self._close_hub(push_timeout_s)
        return summary

    def _close_hub(self, timeout_s: float) -> dict:
        """The last push, waited for at most `timeout_s`; pushed is true only
        when everything saved is on the Hub."""
        finished = self.hub.close(final_push=self._saved_since_push > 0, timeout_s=timeout_s)
        status = self.hub.status()
        pushed = finished and status['state'] == 'idle'
        result = {
            'pushed': pushed,
            'state': status['state'] if finished else 'timed_out',
            'pushes_done': status['pushes_done'],
            'failures': status['failures'],
            'last_error': status['last_error'],
        }
        if not pushed:
            why = (
                f'not finished within push_timeout_s ({timeout_s:g} s)'
                if not finished
                else f'failed after {status["failures"]} attempt series: {status["last_error"]}'
            )
            result['error'] = (
                f'upload of {self.hub.repo_id} to the Hub {why}; the dataset is complete at '
                f'{self.hub.root}: push it with `rollout_dataset push {self.hub.root} '
                f'--repo_id {self.hub.repo_id}`'
            )
            self.log.error(result['error'])
        return result

    # Status (any thread) -------------------------------------------------------
    def status(self) -> dict:
        s = {
            'recording': self.recording,
            'failed': self.failed,
            'episode_index': self.episode_index,
            'episode_frames': self.episode_frames,
            'episode_missing_image_frames': self.episode_missing,
            'total_episodes': self.total_episodes,
            'total_frames': self.total_frames,
            'session_episodes': self.session_episodes,
            'session_frames': self.session_frames,
            'missing_image_frames': self.missing_images,
            'bad_frames': self.bad_frames,
            'idle_frames': self.idle_frames,
            'dropped_backlog': self.dropped_backlog,
            'write_errors': self.write_errors,
            'ring_frames_not_saved': self.ring_frames_dropped,
            'executed_action_unknown': self.builder.executed_unknown,
            'backlog': self.backlog,
            'add_frame_max_ms': round(self.add_frame_max_s * 1e3, 1),
            'encoder_backpressure': {
                'waits': self.writer.backpressure_waits,
                's': round(self.writer.backpressure_seconds, 3),
            },
            'rotations': self.rotations,
            'last_save': self.last_save,
            'last_problem': self.last_problem,
        }
        if self.ring is not None:
            s['ring'] = {
                'frames': len(self.ring),
                'seconds': round(self.ring.window_seconds, 2),
                'max_seconds': self.ring.seconds,
                'mb': round(self.ring.memory_bytes / 2**20, 1),
                'capped': self.ring.capped,
            }
        if self.rotation is not None:
            s['rotation'] = {
                'target_mb': self.rotation.target_mb,
                'expected_episode_s': round(self.rotation.expected_episode_s, 1),
            }
        if self.hub is not None:
            s['upload'] = self.hub.status()
        return s
