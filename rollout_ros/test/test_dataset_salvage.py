# SPDX-License-Identifier: Apache-2.0
"""Footer-less parquet salvage: the row groups a killed writer completed come
back exactly; a partial one, or bytes that do not fit the schema, do not."""

import struct

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rollout_ros.dataset.parquet_salvage import salvage_parquet

SCHEMA = pa.schema(
    [
        ('action', pa.list_(pa.float32(), 3)),
        ('flag', pa.bool_()),
        ('stamp', pa.float64()),
        ('episode_index', pa.int64()),
    ]
)
GROUPS = [500, 700, 300]


def group(e: int, n: int, rng) -> pa.Table:
    action = rng.normal(size=(n, 3)).astype(np.float32)
    return pa.Table.from_arrays(
        [
            pa.FixedSizeListArray.from_arrays(pa.array(action.ravel()), 3),
            pa.array(rng.random(n) < 0.3),
            pa.array(1.7e9 + rng.random(n)),
            pa.array(np.full(n, e, np.int64)),
        ],
        schema=SCHEMA,
    )


@pytest.fixture
def written(tmp_path):
    """A file written as LeRobot does (one row group per episode), with small
    pages and a tiny dictionary limit so chunks hold several pages and fall
    back from dictionary to plain encoding."""
    rng = np.random.default_rng(0)
    tables = [group(e, n, rng) for e, n in enumerate(GROUPS)]
    path = tmp_path / 'full.parquet'
    with pq.ParquetWriter(
        path, SCHEMA, compression='snappy', use_dictionary=True, data_page_size=2048, dictionary_pagesize_limit=1024
    ) as w:
        for t in tables:
            w.write_table(t)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == 3
    assert meta.row_group(1).column(0).total_compressed_size > 4096  # several pages per chunk
    raw = path.read_bytes()
    (footer_len,) = struct.unpack('<I', raw[-8:-4])
    starts = [
        meta.row_group(i).column(0).dictionary_page_offset or meta.row_group(i).column(0).data_page_offset
        for i in range(3)
    ]
    return tables, raw[: -8 - footer_len], starts


def cut(tmp_path, data: bytes):
    path = tmp_path / 'cut.parquet'
    path.write_bytes(data)
    with pytest.raises(Exception):  # noqa: B017 - whatever pyarrow raises for a cut file
        pq.read_metadata(path)
    return salvage_parquet(path, SCHEMA)


def test_footerless_file_gives_back_every_row_group(tmp_path, written):
    tables, body, _ = written
    table = cut(tmp_path, body)
    assert table is not None and table.equals(pa.concat_tables(tables))


def test_partial_last_row_group_is_left_out(tmp_path, written):
    tables, body, starts = written
    table = cut(tmp_path, body[: starts[2] + (len(body) - starts[2]) // 2])
    assert table is not None and table.equals(pa.concat_tables(tables[:2]))


def test_nothing_complete_or_wrong_schema_gives_none(tmp_path, written):
    tables, body, starts = written
    assert cut(tmp_path, body[: starts[0] + 100]) is None
    other = pa.schema(
        [
            ('action', pa.list_(pa.float32(), 4)),
            ('flag', pa.bool_()),
            ('stamp', pa.float64()),
            ('episode_index', pa.int64()),
        ]
    )
    path = tmp_path / 'cut.parquet'
    path.write_bytes(body)
    assert salvage_parquet(path, other) is None
