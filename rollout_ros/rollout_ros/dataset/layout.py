# SPDX-License-Identifier: Apache-2.0
"""Where things live in a LeRobot v3 dataset, and how we put them there durably.

Every file a reader may see is written under a temporary name in the staging
folder, fsynced, renamed into place and its folder fsynced: after a crash a
file is either absent or complete, never half written.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from lerobot.datasets.utils import (
    DEFAULT_EPISODES_PATH,
    DEFAULT_TASKS_PATH,
    EPISODES_DIR,
    INFO_PATH,
    STATS_PATH,
    DatasetInfo,
    update_chunk_file_indices,
)

# Our private folder inside the dataset root: staging for files being
# written, the writer lock, and files repair could not attach to an episode.
# LeRobot never looks inside it. Under .cache/huggingface/, the Hub client's
# own bookkeeping folder, which every upload_folder skips (its default ignore
# patterns): LeRobot's push_to_hub never uploads it either.
PRIVATE_TOP = '.cache'
PRIVATE_DIR = f'{PRIVATE_TOP}/huggingface/rollout_ros'
STAGING_DIR = f'{PRIVATE_DIR}/staging'
ORPHANS_DIR = f'{PRIVATE_DIR}/orphans'
LOCK_FILE = f'{PRIVATE_DIR}/lock'

__all__ = [
    'DEFAULT_EPISODES_PATH',
    'DEFAULT_TASKS_PATH',
    'EPISODES_DIR',
    'INFO_PATH',
    'STATS_PATH',
    'PRIVATE_TOP',
    'PRIVATE_DIR',
    'STAGING_DIR',
    'ORPHANS_DIR',
    'LOCK_FILE',
    'DatasetLock',
    'DatasetBusyError',
    'fsync_dir',
    'fsync_file',
    'make_dirs',
    'publish',
    'write_atomic',
    'write_json_atomic',
    'write_info',
    'next_slot',
    'slot_of',
    'is_disk_full',
]


class DatasetBusyError(RuntimeError):
    """Another live process holds the dataset's writer lock."""


class DatasetLock:
    """Exclusive advisory lock on a dataset root, released by the kernel when
    the holder dies, so a SIGKILLed writer never leaves a stale lock."""

    def __init__(self, root: Path):
        self.path = Path(root) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> DatasetLock:
        make_dirs(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DatasetBusyError(
                f'{self.path.parent.parent} is open for writing by another process '
                '(a recorder still running?); stop it first'
            ) from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DatasetLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """mkdir -p that also makes each new folder's entry durable."""
    path = Path(path)
    if path.is_dir():
        return
    make_dirs(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        return
    fsync_dir(path.parent)


def publish(tmp: Path, final: Path) -> None:
    """Make a complete, fsynced file visible under its final name, durably."""
    make_dirs(final.parent)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def write_atomic(root: Path, rel: str | Path, write: Callable[[Path], None]) -> Path:
    """Write `root/rel` by calling `write(tmp_path)`, then fsync and publish.
    On any error the temporary file is removed and the old file (if any) stays."""
    final = Path(root) / rel
    staging = Path(root) / STAGING_DIR
    make_dirs(staging)
    tmp = staging / f'{Path(rel).name}.{os.getpid()}.tmp'
    try:
        write(tmp)
        fsync_file(tmp)
        publish(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def write_json_atomic(root: Path, rel: str, data) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(data, f, indent=4, ensure_ascii=False)

    return write_atomic(root, rel, write)


def write_info(root: Path, info: DatasetInfo) -> Path:
    return write_json_atomic(root, INFO_PATH, info.to_dict())


def next_slot(last: tuple[int, int] | None, chunks_size: int) -> tuple[int, int]:
    """The (chunk, file) after `last`, or the first one."""
    if last is None:
        return 0, 0
    return update_chunk_file_indices(int(last[0]), int(last[1]), chunks_size)


def slot_of(path: Path) -> tuple[int, int] | None:
    """(chunk, file) of a path ending in chunk-CCC/file-FFF.<ext>, else None."""
    try:
        chunk = int(path.parent.name.removeprefix('chunk-'))
        file = int(path.name.split('.', 1)[0].removeprefix('file-'))
    except ValueError:
        return None
    if not (path.parent.name.startswith('chunk-') and path.name.startswith('file-')):
        return None
    return chunk, file


def is_disk_full(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def clear_staging(root: Path) -> list[Path]:
    """Remove what an interrupted save or episode left in staging; returns what it removed."""
    staging = Path(root) / STAGING_DIR
    if not staging.is_dir():
        return []
    removed = sorted(staging.iterdir())
    for p in removed:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    if removed:
        fsync_dir(staging)
    return removed
