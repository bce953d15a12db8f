# SPDX-License-Identifier: Apache-2.0
"""Crash-safe writer of LeRobot v3.0 datasets.

Each episode gets its own data file, its own video file per camera and its own
episodes-metadata file, each published atomically (layout.write_atomic). The
episodes-metadata file is the commit point: an episode exists once it is on
disk, and info.json, written last, only catches up. A SIGKILL or power cut
therefore costs at most the open episode; `repair` (run by `resume` and by
`rollout_dataset repair`) tidies what such a crash leaves.
"""

from __future__ import annotations

import copy
import errno
import logging
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from lerobot.datasets.dataset_metadata import CODEBASE_VERSION
from lerobot.datasets.feature_utils import create_empty_dataset_info
from lerobot.datasets.io_utils import load_info
from lerobot.datasets.utils import DEFAULT_CHUNK_SIZE, DatasetInfo, serialize_dict
from lerobot.datasets.video_utils import get_video_duration_in_s, get_video_info
from lerobot.utils.constants import DEFAULT_FEATURES
from lerobot.utils.feature_utils import _validate_feature_names

from rollout_ros.core.errors import ConfigError

from .features import (
    IMAGE_PREFIX,
    check_frame_keys,
    check_same_features,
    coerce_value,
    make_features,
    user_features,
    video_keys,
)
from .layout import (
    DEFAULT_EPISODES_PATH,
    DEFAULT_TASKS_PATH,
    INFO_PATH,
    PRIVATE_TOP,
    STAGING_DIR,
    STATS_PATH,
    DatasetLock,
    clear_staging,
    is_disk_full,
    make_dirs,
    next_slot,
    publish,
    write_atomic,
    write_info,
    write_json_atomic,
)
from .records import data_schema, data_table, episode_row, rows_table, tasks_frame
from .repair import DatasetState, read_state, repair
from .stats import aggregate_stats, columns_stats
from .video import CameraEncoder, EncoderError, resolve_encoder

__all__ = ['DatasetWriter', 'DiskFullError', 'make_features']

log = logging.getLogger(__name__)


class DiskFullError(OSError):
    """The disk filled up while saving an episode. Earlier episodes are intact;
    free space and call save_episode() again, or discard_episode()."""


def _cam(key: str) -> str:
    return key.removeprefix(IMAGE_PREFIX)


class _Episode:
    """The open episode: rows kept in memory, video frames in the encoder threads."""

    def __init__(self, index: int, encoders: dict[str, CameraEncoder]):
        self.index = index
        self.encoders = encoders
        self.columns: dict[str, list[np.ndarray]] = {}
        self.tasks: list[str] = []
        self.backpressure_waits = 0
        self.backpressure_s = 0.0
        self.broken: BaseException | None = None
        # Set once save_episode() has told the encoders to finish: no more frames.
        self.closing = False
        # Filled by the first save attempt, so a failed save can be retried.
        self.prepared: dict | None = None
        self.published: list[Path] = []

    @property
    def length(self) -> int:
        return len(self.tasks)


class DatasetWriter:
    """Writes episodes of a LeRobot v3.0 dataset that `LeRobotDataset(repo_id, root=root)`
    loads unchanged. `features` (attribute) are the per-frame features the caller
    supplies; LeRobot's default columns are added here."""

    def __init__(
        self,
        root: Path,
        repo_id: str,
        info: DatasetInfo,
        state: DatasetState,
        lock: DatasetLock,
        *,
        vcodec: str,
        encoder_queue_size: int,
        encoder_threads: int | None,
        preset=None,
    ):
        self.root = Path(root)
        self.repo_id = repo_id
        self._info = info
        self._lock = lock
        self.fps = int(info.fps)
        self.features = user_features(copy.deepcopy(info.features))
        for ft in self.features.values():
            ft.pop('info', None)
        self._all_features = {**self.features, **DEFAULT_FEATURES}
        self._schema = data_schema(self._all_features)
        self._video_keys = video_keys(self.features)
        self._encoder = resolve_encoder(vcodec, preset)
        self.codec = self._encoder.vcodec
        self._queue_size = int(encoder_queue_size)
        self._encoder_threads = encoder_threads
        self._tasks = dict(state.tasks)
        self._stats = state.stats
        self._num_episodes = state.num_episodes
        self._num_frames = state.num_frames
        self._slots = dict(state.last_slots)
        self._episode: _Episode | None = None
        self._closed = False
        self._totals_stale = False
        self.backpressure_waits = 0
        self.backpressure_seconds = 0.0

    # ---------------------------------------------------------------- opening

    @classmethod
    def create(
        cls,
        root,
        repo_id: str,
        fps: int,
        robot_type: str,
        features: dict,
        *,
        vcodec: str = 'libsvtav1',
        data_files_size_in_mb: int = 100,
        video_files_size_in_mb: int = 200,
        encoder_queue_size: int = 60,
        encoder_threads: int | None = None,
        preset=None,
    ) -> DatasetWriter:
        """Start a new dataset in `root` (which must not hold one already)."""
        root = Path(root)
        if (root / INFO_PATH).exists():
            raise ConfigError(
                'root',
                f'{root} already holds a dataset.',
                'use DatasetWriter.resume() to add episodes, or pick a new root.',
            )
        if root.exists() and any(p.name != PRIVATE_TOP for p in root.iterdir()):
            raise ConfigError('root', f'{root} exists and is not empty.', 'pick a new or empty folder.')
        if int(fps) != fps or fps <= 0:
            raise ConfigError('fps', f'must be a positive integer (LeRobot stores an int), got {fps}.')
        all_features = {**copy.deepcopy(user_features(features)), **DEFAULT_FEATURES}
        _validate_feature_names(all_features)
        make_dirs(root)
        lock = DatasetLock(root).acquire()
        try:
            info = create_empty_dataset_info(
                CODEBASE_VERSION,
                int(fps),
                all_features,
                True,
                robot_type,
                DEFAULT_CHUNK_SIZE,
                data_files_size_in_mb,
                video_files_size_in_mb,
            )
            write_info(root, info)
            return cls(
                root,
                repo_id,
                info,
                DatasetState.empty(),
                lock,
                vcodec=vcodec,
                encoder_queue_size=encoder_queue_size,
                encoder_threads=encoder_threads,
                preset=preset,
            )
        except BaseException:
            lock.release()
            raise

    @classmethod
    def resume(
        cls,
        root,
        *,
        fps: int,
        robot_type: str,
        features: dict,
        repo_id: str | None = None,
        vcodec: str | None = None,
        data_files_size_in_mb: int | None = None,
        video_files_size_in_mb: int | None = None,
        encoder_queue_size: int = 60,
        encoder_threads: int | None = None,
        preset=None,
    ) -> DatasetWriter:
        """Append to the dataset in `root` after checking it matches this recording and
        repairing what a crash left. File-size caps stay those of the dataset;
        `vcodec` defaults to the dataset's codec."""
        root = Path(root)
        if not (root / INFO_PATH).exists():
            raise ConfigError(
                'root',
                f'{root} holds no LeRobot dataset (no {INFO_PATH}).',
                'use DatasetWriter.create() for a new dataset.',
            )
        info = load_info(root)
        if info.codebase_version != CODEBASE_VERSION:
            raise ConfigError(
                'root',
                f'dataset is {info.codebase_version}, this writer appends to {CODEBASE_VERSION} only.',
                "convert it with lerobot's converter first.",
            )
        if info.robot_type != robot_type:
            raise ConfigError(
                'robot_type',
                f'is {robot_type!r} here but the dataset was recorded with {info.robot_type!r}.',
                'record into a new dataset, or use the same robot type.',
            )
        if int(info.fps) != fps:
            raise ConfigError(
                'fps',
                f'is {fps} here but the dataset was recorded at {info.fps}.',
                f'set fps to {info.fps}, or record into a new dataset.',
            )
        check_same_features(info.features, features)
        for name, value, have in (
            ('data_files_size_in_mb', data_files_size_in_mb, info.data_files_size_in_mb),
            ('video_files_size_in_mb', video_files_size_in_mb, info.video_files_size_in_mb),
        ):
            if value is not None and value != have:
                log.warning('%s=%s ignored: the dataset uses %s', name, value, have)
        lock = DatasetLock(root).acquire()
        try:
            report = repair(root, locked=True)
            if report.changed:
                log.warning('repaired %s before resuming:\n%s', root, report.text())
            info = load_info(root)
            state = read_state(root, info)
            recorded = _dataset_codec(info)
            if vcodec is None:
                vcodec = recorded or 'libsvtav1'
            elif recorded and resolve_encoder(vcodec).vcodec != recorded:
                log.warning(
                    'new episodes are encoded with %s but info.json records %s (from the first episode); '
                    'LeRobot decodes each file on its own, so both load',
                    vcodec,
                    recorded,
                )
            repo_id = repo_id or f'{root.parent.name}/{root.name}'
            return cls(
                root,
                repo_id,
                info,
                state,
                lock,
                vcodec=vcodec,
                encoder_queue_size=encoder_queue_size,
                encoder_threads=encoder_threads,
                preset=preset,
            )
        except BaseException:
            lock.release()
            raise

    # ---------------------------------------------------------------- state

    @property
    def num_episodes(self) -> int:
        return self._num_episodes

    @property
    def num_frames(self) -> int:
        return self._num_frames

    @property
    def episode_frames(self) -> int:
        """Rows in the open episode (0 when none is open)."""
        return self._episode.length if self._episode is not None else 0

    def open_episode_video_bytes(self) -> dict[str, int]:
        """Bytes encoded so far in the open episode, per camera."""
        if self._episode is None:
            return {_cam(k): 0 for k in self._video_keys}
        return {_cam(k): enc.bytes_written for k, enc in self._episode.encoders.items()}

    # ---------------------------------------------------------------- recording

    def add_frame(self, frame: dict, task: str) -> None:
        """Append one row (opening an episode if none is open). Blocks while an
        encoder queue is full rather than dropping a video frame."""
        self._check_open()
        ep = self._episode
        if ep is not None and (ep.broken is not None or ep.closing):
            raise RuntimeError(
                f'episode {ep.index} cannot take frames: '
                + (
                    f'its encoder failed ({ep.broken}); call discard_episode()'
                    if ep.broken is not None
                    else 'its save failed; call save_episode() again or discard_episode()'
                )
            )
        if not isinstance(task, str) or not task:
            raise ValueError('task must be a non-empty string')
        check_frame_keys(frame, self.features)
        values = {k: coerce_value(k, self.features[k], v) for k, v in frame.items()}
        if ep is None:
            ep = self._episode = self._open_episode()
        waited = 0.0
        blocked = False
        try:
            for key in self._video_keys:
                w = ep.encoders[key].put(values[key])
                blocked = blocked or w > 0
                waited += w
        except EncoderError as exc:
            ep.broken = exc
            if is_disk_full(exc):
                raise DiskFullError(
                    errno.ENOSPC,
                    f'disk full while encoding episode {ep.index}; discard_episode(), free space, record again.',
                ) from exc
            raise
        for key, value in values.items():
            if key not in ep.encoders:
                ep.columns.setdefault(key, []).append(value)
        ep.tasks.append(task)
        if blocked:
            ep.backpressure_waits += 1
            ep.backpressure_s += waited
            self.backpressure_waits += 1
            self.backpressure_seconds += waited

    def _open_episode(self) -> _Episode:
        staging = self.root / STAGING_DIR
        make_dirs(staging)
        index = self._num_episodes
        encoders = {}
        for key in self._video_keys:
            enc = CameraEncoder(
                staging / f'{key}.episode-{index:06d}.mp4',
                self.fps,
                self._encoder,
                self._queue_size,
                self._encoder_threads,
                name=_cam(key),
            )
            enc.start()
            encoders[key] = enc
        return _Episode(index, encoders)

    def save_episode(self) -> dict:
        """Make the open episode durable. When this returns, the episode survives
        SIGKILL and power loss. Raises DiskFullError on ENOSPC (the episode stays
        pending: free space and call again, or discard_episode())."""
        self._check_open()
        ep = self._episode
        if ep is None or ep.length == 0:
            raise RuntimeError('no frames to save: add_frame() first')
        if ep.broken is not None:
            raise RuntimeError(f'episode {ep.index} lost video frames ({ep.broken}); discard_episode()')
        t0 = time.monotonic()
        try:
            if ep.prepared is None:
                ep.prepared = self._prepare(ep)
            self._commit(ep, ep.prepared)
        except EncoderError as exc:
            ep.broken = exc
            if is_disk_full(exc):
                raise DiskFullError(
                    errno.ENOSPC,
                    f'disk full while encoding episode {ep.index}: its video is '
                    f'incomplete, discard_episode(); the {self._num_episodes} earlier episodes '
                    'are intact.',
                ) from exc
            raise
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFullError(
                    exc.errno,
                    f'disk full while saving episode {ep.index} under {self.root}: the '
                    f'episode is not saved, the {self._num_episodes} earlier episodes are intact. '
                    'Free space and call save_episode() again, or discard_episode().',
                ) from exc
            raise
        prepared = ep.prepared
        self._episode = None
        try:
            self._publish_totals()
        except OSError as exc:
            self._totals_stale = True
            cls = DiskFullError if is_disk_full(exc) else OSError
            raise cls(
                exc.errno,
                f'episode {ep.index} is saved, but {STATS_PATH}/{INFO_PATH} could not be '
                f'updated ({exc.strerror}); they are rewritten at the next save or finalize, or by '
                '`rollout_dataset repair`.',
            ) from exc
        return {
            'episode_index': ep.index,
            'length': ep.length,
            'seconds': ep.length / self.fps,
            'video_bytes': {_cam(k): p.stat().st_size for k, p in prepared['video_paths'].items()},
            'save_ms': (time.monotonic() - t0) * 1000.0,
            'backpressure_waits': ep.backpressure_waits,
            'backpressure_s': ep.backpressure_s,
        }

    def _prepare(self, ep: _Episode) -> dict:
        """Everything of the episode that does not touch the dataset folders."""
        ep.closing = True
        for enc in ep.encoders.values():
            enc.request_finish()
        # Overlaps with the encoders flushing their queues.
        n = ep.length
        tasks = dict(self._tasks)
        for t in ep.tasks:
            tasks.setdefault(t, len(tasks))
        columns = {k: np.stack(v) for k, v in ep.columns.items()}
        columns.update(
            {
                'timestamp': (np.arange(n) / self.fps).astype(np.float32),
                'frame_index': np.arange(n, dtype=np.int64),
                'episode_index': np.full(n, ep.index, dtype=np.int64),
                'index': np.arange(self._num_frames, self._num_frames + n, dtype=np.int64),
                'task_index': np.array([tasks[t] for t in ep.tasks], dtype=np.int64),
            }
        )
        columns = {k: v.reshape(n) if tuple(self._all_features[k]['shape']) == (1,) else v for k, v in columns.items()}
        stats = columns_stats(columns, self._all_features)
        table = data_table(columns, self._schema)
        for key, enc in ep.encoders.items():
            enc.wait()
            if enc.frames_encoded != n:
                raise EncoderError(f'{key}: {enc.frames_encoded} frames encoded for {n} rows')
            if enc.stats is not None:
                stats[key] = enc.stats
        ep_tasks = list(dict.fromkeys(ep.tasks))
        data_slot = next_slot(self._slots.get('data'), self._info.chunks_size)
        video_slots = {k: next_slot(self._slots.get(k), self._info.chunks_size) for k in self._video_keys}
        return {
            'tasks': tasks,
            'new_tasks': len(tasks) > len(self._tasks),
            'episode_tasks': ep_tasks,
            'stats': stats,
            'table': table,
            'data_slot': data_slot,
            'video_slots': video_slots,
            'meta_slot': next_slot(self._slots.get('meta'), self._info.chunks_size),
            'video_paths': {},
            'done': set(),
        }

    def _commit(self, ep: _Episode, p: dict) -> None:
        """Publish the episode's files in an order that leaves a loadable dataset
        after a crash at any point; each finished step is remembered for a retry."""
        done = p['done']
        if p['new_tasks'] and 'tasks' not in done:
            write_atomic(self.root, DEFAULT_TASKS_PATH, lambda tmp: tasks_frame(p['tasks']).to_parquet(tmp))
            done.add('tasks')
        if 'data' not in done:
            c, f = p['data_slot']
            rel = self._info.data_path.format(chunk_index=c, file_index=f)
            ep.published.append(write_atomic(self.root, rel, lambda tmp: pq.write_table(p['table'], tmp)))
            done.add('data')
        videos = {}
        for key, enc in ep.encoders.items():
            c, f = p['video_slots'][key]
            final = self.root / self._info.video_path.format(video_key=key, chunk_index=c, file_index=f)
            if key not in done:
                publish(enc.path, final)
                ep.published.append(final)
                done.add(key)
            p['video_paths'][key] = final
            videos[key] = ((c, f), 0.0, get_video_duration_in_s(final))
        row = episode_row(
            episode_index=ep.index,
            tasks=p['episode_tasks'],
            length=ep.length,
            data_slot=p['data_slot'],
            from_index=self._num_frames,
            videos=videos,
            stats=p['stats'],
            meta_slot=p['meta_slot'],
        )
        c, f = p['meta_slot']
        write_atomic(
            self.root,
            DEFAULT_EPISODES_PATH.format(chunk_index=c, file_index=f),
            lambda tmp: pq.write_table(rows_table([row]), tmp),
        )
        # Committed: from here on the episode is part of the dataset.
        self._tasks = p['tasks']
        self._stats = aggregate_stats([self._stats, p['stats']]) if self._stats else p['stats']
        self._num_episodes += 1
        self._num_frames += ep.length
        self._slots['data'] = p['data_slot']
        self._slots['meta'] = p['meta_slot']
        self._slots.update(p['video_slots'])
        if ep.index == 0 or any('info' not in self._info.features[k] for k in self._video_keys):
            for key in self._video_keys:
                self._info.features[key]['info'] = get_video_info(p['video_paths'][key], video_encoder=self._encoder)

    def _publish_totals(self) -> None:
        """stats.json, then info.json last. Each is replaced atomically; if this
        fails the episodes on disk are still complete and `repair` recounts them."""
        self._totals_stale = False
        if self._stats is not None:
            write_json_atomic(self.root, STATS_PATH, serialize_dict(self._stats))
        self._info.total_episodes = self._num_episodes
        self._info.total_frames = self._num_frames
        self._info.total_tasks = len(self._tasks)
        self._info.splits = {'train': f'0:{self._num_episodes}'}
        write_info(self.root, self._info)

    def discard_episode(self) -> None:
        """Drop the open episode (its rows, video and any file a failed save published)."""
        ep, self._episode = self._episode, None
        if ep is None:
            return
        for enc in ep.encoders.values():
            enc.abort()
        for path in ep.published:
            path.unlink(missing_ok=True)

    def finalize(self) -> None:
        """Close the writer (idempotent). An episode still open is discarded, as
        LeRobot does: call save_episode() first to keep it."""
        if self._closed:
            return
        try:
            if self._episode is not None and self._episode.length:
                log.warning('finalize: discarding the unsaved open episode (%d frames)', self._episode.length)
            self.discard_episode()
            clear_staging(self.root)
            if self._totals_stale:
                self._publish_totals()
        finally:
            self._closed = True
            self._lock.release()

    def close(self) -> None:
        self.finalize()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.finalize()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError('this DatasetWriter is finalized')


def _dataset_codec(info: DatasetInfo) -> str | None:
    for ft in info.features.values():
        codec = (ft.get('info') or {}).get('video.codec')
        if codec:
            return {'av1': 'libsvtav1'}.get(codec, codec)
    return None
