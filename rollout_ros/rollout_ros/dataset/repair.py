# SPDX-License-Identifier: Apache-2.0
"""Bring a crashed LeRobot v3 dataset back to a state LeRobotDataset loads.

Handles what our writer leaves after a crash (staging files, an episode whose
files were published but not its metadata, stale info.json/stats.json) and
what LeRobot's own writer leaves (footer-less data and metadata parquet files,
metadata rows lost from its in-memory buffer, info.json counting episodes that
are not on disk, streaming temp folders).

Rules: a finished episode's data is never deleted. Files that cannot be tied
to a complete episode are moved to ORPHANS_DIR (.cache/huggingface/rollout_ros/orphans/), not deleted; only our
own staging files (never complete) are removed. Metadata lost by LeRobot is
rebuilt from the data rows and the videos.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from lerobot.configs import encoder_config_from_video_info
from lerobot.datasets.compute_stats import auto_downsample_height_width, sample_indices
from lerobot.datasets.io_utils import load_info, load_stats, load_tasks, write_table_one_row_group_per_episode
from lerobot.datasets.utils import DatasetInfo, serialize_dict
from lerobot.datasets.video_utils import decode_video_frames, get_video_duration_in_s, get_video_info

from .features import video_keys
from .layout import (
    DEFAULT_EPISODES_PATH,
    DEFAULT_TASKS_PATH,
    INFO_PATH,
    ORPHANS_DIR,
    STATS_PATH,
    DatasetLock,
    clear_staging,
    fsync_dir,
    fsync_file,
    make_dirs,
    next_slot,
    slot_of,
    write_atomic,
    write_info,
    write_json_atomic,
)
from .parquet_salvage import salvage_parquet
from .records import data_schema, episode_files, episode_row, rows_table
from .stats import aggregate_stats, columns_stats, image_stats, stats_from_flat

log = logging.getLogger(__name__)

# tempfile.mkdtemp() names, as LeRobot's streaming encoder makes them in the root.
_MKDTEMP = re.compile(r'tmp[a-z0-9_]{8}')
_KEY_COLUMNS = ['episode_index', 'index']

__all__ = ['DatasetState', 'RepairReport', 'read_state', 'repair']


@dataclass
class DatasetState:
    """What a writer needs to append to a consistent dataset."""

    num_episodes: int = 0
    num_frames: int = 0
    tasks: dict[str, int] = field(default_factory=dict)
    stats: dict | None = None
    # Last (chunk, file) used by 'data', 'meta' and each video key.
    last_slots: dict[str, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> DatasetState:
        return cls()


@dataclass
class RepairReport:
    root: Path
    actions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    episodes: int = 0
    frames: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.actions)

    def text(self) -> str:
        lines = [f'{self.root}: {self.episodes} episodes, {self.frames} frames']
        lines += [f'  fixed: {a}' for a in self.actions] or ['  nothing to fix']
        lines += [f'  PROBLEM: {p}' for p in self.problems]
        return '\n'.join(lines)


def _task_map(root: Path) -> dict[str, int]:
    if not (root / DEFAULT_TASKS_PATH).exists():
        return {}
    tasks = load_tasks(root)
    return {str(t): int(i) for t, i in zip(tasks.index, tasks['task_index'], strict=True)}


def _max_slot(*slots) -> tuple[int, int] | None:
    slots = [s for s in slots if s is not None]
    return max(slots) if slots else None


def _files(root: Path, pattern: str) -> list[Path]:
    return sorted((p for p in root.glob(pattern) if slot_of(p) is not None), key=slot_of)


def read_state(root: Path, info: DatasetInfo) -> DatasetState:
    """The state of a consistent (repaired) dataset."""
    root = Path(root)
    keys = video_keys(info.features)
    state = DatasetState(
        num_episodes=info.total_episodes, num_frames=info.total_frames, tasks=_task_map(root), stats=load_stats(root)
    )
    columns = ['data/chunk_index', 'data/file_index'] + [
        f'videos/{k}/{x}' for k in keys for x in ('chunk_index', 'file_index')
    ]
    rows = [r for p in episode_files(root) for r in pq.read_table(p, columns=columns).to_pylist()]
    # Files on disk count too, so a slot is never reused even if a row was lost.
    state.last_slots['data'] = _max_slot(
        *(slot_of(p) for p in _files(root, 'data/*/*.parquet')),
        *((r['data/chunk_index'], r['data/file_index']) for r in rows),
    )
    state.last_slots['meta'] = _max_slot(*(slot_of(p) for p in episode_files(root)))
    for k in keys:
        state.last_slots[k] = _max_slot(
            *(slot_of(p) for p in _files(root, f'videos/{k}/*/*.mp4')),
            *((r[f'videos/{k}/chunk_index'], r[f'videos/{k}/file_index']) for r in rows),
        )
    state.last_slots = {k: v for k, v in state.last_slots.items() if v is not None}
    return state


def repair(root, *, locked: bool = False) -> RepairReport:
    """Repair the dataset in `root` in place; returns what was done and what could not be."""
    root = Path(root)
    lock = None if locked else DatasetLock(root).acquire()
    try:
        return _Repair(root).run()
    finally:
        if lock is not None:
            lock.release()


class _Repair:
    def __init__(self, root: Path):
        self.root = root
        self.report = RepairReport(root)
        self._orphans = root / ORPHANS_DIR / time.strftime('%Y%m%d-%H%M%S')
        self._durations: dict[Path, float] = {}

    def fixed(self, text: str) -> None:
        self.report.actions.append(text)

    def problem(self, text: str) -> None:
        self.report.problems.append(text)

    def _orphan_path(self, path: Path) -> Path:
        dest = self._orphans / path.relative_to(self.root)
        n = 1
        while dest.exists():
            dest = dest.with_name(f'{path.name}.{n}')
            n += 1
        make_dirs(dest.parent)
        return dest

    def quarantine(self, path: Path, why: str) -> None:
        """Move a file or folder out of the dataset, into ORPHANS_DIR."""
        dest = self._orphan_path(path)
        shutil.move(str(path), str(dest))
        fsync_dir(path.parent)
        fsync_dir(dest.parent)
        self.fixed(f'moved {path.relative_to(self.root)} to {dest.relative_to(self.root)} ({why})')

    def replace_data_file(self, path: Path, table: pa.Table, why: str) -> None:
        """Replace a data file by `table`, atomically, keeping a copy of the original
        in ORPHANS_DIR first: a crash at any point leaves one or the other."""
        dest = self._orphan_path(path)
        shutil.copyfile(path, dest)
        fsync_file(dest)
        fsync_dir(dest.parent)
        write_atomic(
            self.root, path.relative_to(self.root), lambda tmp: write_table_one_row_group_per_episode(table, tmp)
        )
        self.fixed(f'rewrote {path.relative_to(self.root)} ({why}); the original is in {dest.relative_to(self.root)}')

    # ------------------------------------------------------------------ steps

    def run(self) -> RepairReport:
        removed = clear_staging(self.root)
        if removed:
            self.fixed(f'removed {len(removed)} unfinished file(s) of an interrupted episode/save from staging')
        self._lerobot_leftovers()
        try:
            self.info = load_info(self.root)
        except (OSError, ValueError) as exc:
            self.problem(f'{INFO_PATH} is missing or unreadable ({exc}); not a LeRobot v3 dataset?')
            return self.report
        self.keys = video_keys(self.info.features)
        self.features = self.info.features
        self.schema = data_schema(self.features)
        self.tasks = _task_map(self.root)
        meta_rows, meta_files = self._read_meta()
        data = self._read_data()
        rows = self._walk(meta_rows, data)
        self._settle_files(rows, meta_files, data)
        self._settle_totals(rows)
        self.report.episodes = len(rows)
        self.report.frames = sum(r['length'] for r in rows)
        return self.report

    def _lerobot_leftovers(self) -> None:
        """LeRobot's streaming encoder stages each episode in root/tmpXXXXXXXX/ and
        its image writer in root/images/; after a crash those belong to no episode."""
        for p in sorted(self.root.iterdir()):
            if p.is_dir() and _MKDTEMP.fullmatch(p.name):
                self.quarantine(p, 'temporary folder of an unsaved LeRobot episode')
        if (self.root / 'images').is_dir():
            self.quarantine(self.root / 'images', 'LeRobot image staging of unsaved episodes')

    def _read_meta(self) -> tuple[dict[int, dict], list[Path]]:
        """Episode rows by index from every readable metadata file; unreadable
        (footer-less) files are moved aside, their rows get rebuilt."""
        rows: dict[int, dict] = {}
        files = []
        for path in episode_files(self.root):
            try:
                table = pq.read_table(path)
            except (OSError, pa.ArrowException) as exc:
                self.quarantine(
                    path,
                    f'unreadable episode metadata ({exc.__class__.__name__}: {exc}); '
                    'its episodes are rebuilt from data and videos',
                )
                continue
            files.append(path)
            for row in table.to_pylist():
                row['_meta_file'] = path
                rows[int(row['episode_index'])] = row
        return rows, files

    def _read_data(self) -> dict[Path, pa.Table]:
        """The episode_index and index columns of every data file; footer-less
        files are salvaged (their complete row groups, i.e. episodes) and
        rewritten with a footer."""
        tables = {}
        for path in _files(self.root, 'data/*/*.parquet'):
            try:
                tables[path] = pq.read_table(path, columns=_KEY_COLUMNS)
                continue
            except (OSError, pa.ArrowException) as exc:
                error = exc
            table = salvage_parquet(path, self.schema)
            if table is None or table.num_rows == 0:
                self.quarantine(path, f'unreadable data file ({error}) with nothing to salvage')
                continue
            self.replace_data_file(
                path,
                table,
                f'no footer, the writer was killed before closing it; '
                f'{table.num_rows} rows in complete row groups salvaged',
            )
            tables[path] = table.select(_KEY_COLUMNS)
        return tables

    def _walk(self, meta_rows: dict[int, dict], data: dict[Path, pa.Table]) -> list[dict]:
        """Episodes 0, 1, ... as long as each is complete (data rows, videos,
        metadata kept or rebuilt)."""
        # An episode's rows may sit in several files (a copy, a half-finished
        # save): the metadata decides which one is the episode's.
        by_episode: dict[int, list[tuple[Path, pa.Table]]] = {}
        for path, table in data.items():
            eps = table.column('episode_index').to_numpy()
            for e in np.unique(eps):
                rows = table.filter(pc.equal(table.column('episode_index'), int(e)))
                by_episode.setdefault(int(e), []).append((path, rows))
        rows: list[dict] = []
        cursor = {k: None for k in self.keys}  # video key -> ((chunk, file), to_timestamp) of the last episode
        end_index = 0
        e = 0
        while True:
            candidates = by_episode.get(e, [])
            row = meta_rows.get(e)
            if row is not None:
                why = self._check_row(row, candidates)
                if why:
                    self.problem(f'episode {e}: {why}; it and any later episode are left out')
                    break
            elif candidates:
                row = self._rebuild_row(e, candidates[0], cursor, end_index)
                if row is None:
                    break
            else:
                break
            for k in self.keys:
                cursor[k] = (
                    (row[f'videos/{k}/chunk_index'], row[f'videos/{k}/file_index']),
                    row[f'videos/{k}/to_timestamp'],
                )
            end_index = row['dataset_to_index']
            rows.append(row)
            e += 1
        return rows

    def _check_row(self, row: dict, candidates: list[tuple[Path, pa.Table]]) -> str:
        slot = (row['data/chunk_index'], row['data/file_index'])
        mine = [table for path, table in candidates if slot_of(path) == slot]
        if not mine:
            return f'its metadata points to data file chunk {slot[0]} file {slot[1]}, which does not hold its rows'
        table = mine[0]
        if table.num_rows != row['length']:
            return f'{table.num_rows} data rows for length {row["length"]}'
        for k in self.keys:
            video = self._video_path(k, (row[f'videos/{k}/chunk_index'], row[f'videos/{k}/file_index']))
            if not video.is_file():
                return f'video {video.relative_to(self.root)} is missing'
            if self._duration(video) < row[f'videos/{k}/to_timestamp'] - self._tolerance:
                return f'video {video.relative_to(self.root)} is unreadable or shorter than the episode (truncated?)'
        return ''

    @property
    def _tolerance(self) -> float:
        return 0.5 / self.info.fps

    def _duration(self, video: Path) -> float:
        if video not in self._durations:
            try:
                self._durations[video] = get_video_duration_in_s(video)
            except Exception:  # noqa: BLE001 - an unreadable video counts as empty
                self._durations[video] = -1.0
        return self._durations[video]

    def _video_path(self, key: str, slot: tuple[int, int]) -> Path:
        return self.root / self.info.video_path.format(video_key=key, chunk_index=slot[0], file_index=slot[1])

    def _rebuild_row(self, e: int, data: tuple[Path, pa.Table], cursor: dict, end_index: int) -> dict | None:
        """Metadata for an episode whose data rows exist but whose metadata row was
        lost. Its video is the next stretch of the last used video file, or the
        start of the next file (per-episode files, or a file rotation)."""
        path, keys = data
        n = keys.num_rows
        index = keys.column('index').to_numpy()
        if index[0] != end_index or not np.array_equal(index, np.arange(end_index, end_index + n)):
            self.problem(f'episode {e}: data rows have indices {index[0]}..{index[-1]}, expected from {end_index}')
            return None
        duration = n / self.info.fps
        videos = {}
        for k in self.keys:
            last = cursor[k]
            slot, t0 = (last[0], last[1]) if last is not None else ((0, 0), 0.0)
            placed = None
            for candidate, start in ((slot, t0), (next_slot(slot, self.info.chunks_size), 0.0)):
                video = self._video_path(k, candidate)
                if video.is_file() and self._duration(video) >= start + duration - self._tolerance:
                    placed = (candidate, start, start + duration)
                    break
                if last is None:
                    break
            if placed is None:
                log.info('episode %d has data rows but no video for %s: it was not finished', e, k)
                return None
            videos[k] = placed
        table = pq.read_table(path).filter(pc.equal(pc.field('episode_index'), e))
        columns = {name: _column_array(table, name) for name in table.column_names}
        stats = columns_stats(columns, self.features)
        for k, (slot, t0, _t1) in videos.items():
            stats[k] = self._video_stats(self._video_path(k, slot), t0, n)
        ep_tasks = list(dict.fromkeys(self._task_text(i) for i in columns['task_index']))
        row = episode_row(
            episode_index=e,
            tasks=ep_tasks,
            length=n,
            data_slot=slot_of(path),
            from_index=end_index,
            videos=videos,
            stats=stats,
            meta_slot=(0, 0),
        )
        row['_rebuilt'] = True
        self.fixed(f'rebuilt the lost metadata of episode {e} ({n} frames) from its data and videos')
        return row

    def _task_text(self, task_index: int) -> str:
        for text, i in self.tasks.items():
            if i == task_index:
                return text
        raise ValueError(f'task_index {task_index} is not in {DEFAULT_TASKS_PATH}')

    def _video_stats(self, video: Path, t0: float, n: int) -> dict:
        fps = self.info.fps
        ts = [t0 + i / fps for i in sample_indices(n)]
        frames = decode_video_frames(video, ts, tolerance_s=1.0 / fps / 2, backend='pyav', return_uint8=True)
        samples = np.stack([auto_downsample_height_width(f) for f in frames.numpy()])
        return image_stats(samples)

    def _settle_files(self, rows: list[dict], meta_files: list[Path], data: dict[Path, pa.Table]) -> None:
        """Move aside what no kept episode uses; rewrite files that mix kept and dropped episodes."""
        kept = len(rows)
        used_data = {(r['data/chunk_index'], r['data/file_index']) for r in rows}
        for path, table in data.items():
            eps = table.column('episode_index').to_numpy()
            if slot_of(path) not in used_data:
                self.quarantine(path, f'rows of unfinished episode(s) {sorted(set(eps.tolist()))}')
            elif eps.max() >= kept:
                keep = pq.read_table(path).filter(pc.less(pc.field('episode_index'), kept))
                dropped = sorted(set(eps[eps >= kept].tolist()))
                self.replace_data_file(path, keep, f'dropped the rows of unfinished episode(s) {dropped}')
        for k in self.keys:
            used = {(r[f'videos/{k}/chunk_index'], r[f'videos/{k}/file_index']) for r in rows}
            for video in _files(self.root, f'videos/{k}/*/*.mp4'):
                if slot_of(video) not in used:
                    self.quarantine(video, 'video of an unfinished episode')
        # Metadata files: drop rows of episodes not kept; add the rebuilt ones.
        for path in meta_files:
            table = pq.read_table(path)
            eps = table.column('episode_index').to_numpy()
            if eps.min() >= kept:
                self.quarantine(path, 'metadata of episodes that are not complete')
            elif eps.max() >= kept:
                keep = table.filter(pc.less(table.column('episode_index'), kept))
                rel = path.relative_to(self.root)
                write_atomic(self.root, rel, lambda tmp, keep=keep: pq.write_table(keep, tmp))
                self.fixed(f'dropped metadata of incomplete episodes from {rel}')
        rebuilt = [r for r in rows if r.get('_rebuilt')]
        if rebuilt:
            slot = next_slot(_max_slot(*(slot_of(p) for p in episode_files(self.root))), self.info.chunks_size)
            for r in rebuilt:
                r['meta/episodes/chunk_index'], r['meta/episodes/file_index'] = slot
            clean = [{k: v for k, v in r.items() if not k.startswith('_')} for r in rebuilt]
            rel = DEFAULT_EPISODES_PATH.format(chunk_index=slot[0], file_index=slot[1])
            write_atomic(self.root, rel, lambda tmp: pq.write_table(rows_table(clean), tmp))
            self.fixed(f'wrote rebuilt metadata of {len(rebuilt)} episode(s) to {rel}')

    def _settle_totals(self, rows: list[dict]) -> None:
        """stats.json from the episodes' own stats, then info.json, as the writer does."""
        info = self.info
        stats = aggregate_stats([stats_from_flat(r) for r in rows]) if rows else None
        if stats is not None:
            new = serialize_dict(stats)
            if not _same_stats(_load_json(self.root / STATS_PATH), new):
                write_json_atomic(self.root, STATS_PATH, new)
                self.fixed(f'recomputed {STATS_PATH} from the {len(rows)} episodes')
        before = (info.total_episodes, info.total_frames, info.total_tasks, dict(info.splits))
        info.total_episodes = len(rows)
        info.total_frames = sum(r['length'] for r in rows)
        info.total_tasks = len(self.tasks)
        info.splits = {'train': f'0:{len(rows)}'}
        changed = before != (info.total_episodes, info.total_frames, info.total_tasks, info.splits)
        if changed:
            self.fixed(
                f'{INFO_PATH}: {before[0]} -> {info.total_episodes} episodes, '
                f'{before[1]} -> {info.total_frames} frames, {before[2]} -> {info.total_tasks} tasks'
            )
        if rows:
            for k in self.keys:
                if not (info.features[k].get('info') or {}).get('video.codec'):
                    first = rows[0]
                    video = self._video_path(k, (first[f'videos/{k}/chunk_index'], first[f'videos/{k}/file_index']))
                    cfg = encoder_config_from_video_info(get_video_info(video))
                    info.features[k]['info'] = get_video_info(video, video_encoder=cfg)
                    changed = True
                    self.fixed(f'{INFO_PATH}: filled video info of {k}')
        if changed:
            write_info(self.root, info)


def _column_array(table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name).combine_chunks()
    if pa.types.is_fixed_size_list(col.type):
        return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)
    return col.to_numpy(zero_copy_only=False)


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding='utf-8'))
    except (OSError, ValueError):
        return None


def _same_stats(old, new) -> bool:
    """Equal up to float rounding (stats re-aggregated from parquet doubles
    differ from the float32 originals in the last digits)."""
    if not isinstance(old, dict) or old.keys() != new.keys():
        return False
    for key, stats in new.items():
        if not isinstance(old[key], dict) or old[key].keys() != stats.keys():
            return False
        for name, value in stats.items():
            a, b = np.asarray(old[key][name], dtype=float), np.asarray(value, dtype=float)
            if a.shape != b.shape or not np.allclose(a, b, rtol=1e-5, atol=1e-8):
                return False
    return True
