# SPDX-License-Identifier: Apache-2.0
"""The parquet tables of a LeRobot v3 dataset: data rows, episode-metadata rows, tasks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from lerobot.datasets.feature_utils import get_hf_features_from_features

from .layout import EPISODES_DIR, slot_of
from .stats import flat_episode_stats


def data_schema(features: dict) -> pa.Schema:
    """The arrow schema LeRobot writes data files with (carries the HF features metadata)."""
    return get_hf_features_from_features(features).arrow_schema


def data_table(columns: dict[str, np.ndarray], schema: pa.Schema) -> pa.Table:
    """One episode's rows; `columns` holds (n, ...) arrays, shape-(1,) features as (n,)."""
    arrays = []
    for field in schema:
        values = np.asarray(columns[field.name])
        if pa.types.is_fixed_size_list(field.type):
            flat = pa.array(values.reshape(-1), type=field.type.value_type)
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, field.type.list_size))
        else:
            arrays.append(pa.array(values.reshape(-1), type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def episode_row(
    *,
    episode_index: int,
    tasks: list[str],
    length: int,
    data_slot: tuple[int, int],
    from_index: int,
    videos: dict[str, tuple[tuple[int, int], float, float]],
    stats: dict,
    meta_slot: tuple[int, int],
) -> dict:
    """One row of meta/episodes, columns in LeRobot's order.
    `videos` maps video key -> ((chunk, file), from_timestamp, to_timestamp)."""
    row = {
        'episode_index': int(episode_index),
        'tasks': list(tasks),
        'length': int(length),
        'data/chunk_index': int(data_slot[0]),
        'data/file_index': int(data_slot[1]),
        'dataset_from_index': int(from_index),
        'dataset_to_index': int(from_index + length),
    }
    for key, ((chunk, file), t0, t1) in videos.items():
        row[f'videos/{key}/chunk_index'] = int(chunk)
        row[f'videos/{key}/file_index'] = int(file)
        row[f'videos/{key}/from_timestamp'] = float(t0)
        row[f'videos/{key}/to_timestamp'] = float(t1)
    row.update(flat_episode_stats(stats))
    row['meta/episodes/chunk_index'] = int(meta_slot[0])
    row['meta/episodes/file_index'] = int(meta_slot[1])
    return row


def rows_table(rows: list[dict]) -> pa.Table:
    """Episode rows as the table LeRobot writes (numpy values as nested lists)."""
    cols = {k: [r[k].tolist() if isinstance(r[k], np.ndarray) else r[k] for r in rows] for k in rows[0]}
    return pa.Table.from_pydict(cols)


def tasks_frame(tasks: dict[str, int]) -> pd.DataFrame:
    """meta/tasks.parquet content: task_index indexed by the task text."""
    ordered = sorted(tasks.items(), key=lambda kv: kv[1])
    return pd.DataFrame({'task_index': [i for _, i in ordered]}, index=pd.Index([t for t, _ in ordered], name='task'))


def episode_files(root: Path) -> list[Path]:
    """meta/episodes parquet files in (chunk, file) order."""
    files = [p for p in (Path(root) / EPISODES_DIR).glob('chunk-*/file-*.parquet') if slot_of(p) is not None]
    return sorted(files, key=slot_of)
