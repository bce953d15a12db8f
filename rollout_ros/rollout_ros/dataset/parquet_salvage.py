# SPDX-License-Identifier: Apache-2.0
"""Recover the complete row groups of a parquet file whose footer was never written.

LeRobot keeps its data parquet open (no footer) for a whole session, so a
SIGKILL or power cut leaves a file no reader accepts, although every saved
episode's row group is on disk. The footer only indexes what is there: we
read the page headers, cut them into column chunks and row groups using the
schema we know (from info.json), and write a new footer modelled on a
one-row file pyarrow writes with the same schema. The result is checked by
reading it back; anything that does not fit is rejected (None), never guessed.

Only flat schemas (primitive and fixed-size-list columns, as LeRobot's data
files have) are handled.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

MAGIC = b'PAR1'

# Thrift compact protocol type ids.
_BOOL_TRUE, _BOOL_FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)

# parquet.thrift enums and field ids used here.
_DATA_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2 = 0, 2, 3
_CODECS = {'UNCOMPRESSED': 0, 'SNAPPY': 1, 'GZIP': 2, 'BROTLI': 4, 'ZSTD': 6, 'LZ4_RAW': 7}


class _ThriftError(ValueError):
    pass


class _Reader:
    """Thrift compact protocol, decoded generically: a struct is a list of
    [field_id, type, value], so a footer can be edited and re-encoded."""

    def __init__(self, buf: bytes, pos: int = 0):
        self.buf = buf
        self.pos = pos

    def byte(self) -> int:
        if self.pos >= len(self.buf):
            raise _ThriftError('truncated')
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 70:
                raise _ThriftError('varint too long')

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, ttype: int):
        if ttype in (_BOOL_TRUE, _BOOL_FALSE):
            return self.byte()  # inside containers; raw byte kept
        if ttype == _BYTE:
            return self.byte()
        if ttype in (_I16, _I32, _I64):
            return self.zigzag()
        if ttype == _DOUBLE:
            if self.pos + 8 > len(self.buf):
                raise _ThriftError('truncated')
            self.pos += 8
            return self.buf[self.pos - 8 : self.pos]
        if ttype == _BINARY:
            n = self.varint()
            if self.pos + n > len(self.buf):
                raise _ThriftError('truncated')
            self.pos += n
            return bytes(self.buf[self.pos - n : self.pos])
        if ttype in (_LIST, _SET):
            head = self.byte()
            size, etype = head >> 4, head & 0x0F
            if size == 15:
                size = self.varint()
            return [etype, [self.value(etype) for _ in range(size)]]
        if ttype == _MAP:
            size = self.varint()
            kinds = self.byte() if size else 0
            k, v = kinds >> 4, kinds & 0x0F
            return [k, v, [(self.value(k), self.value(v)) for _ in range(size)]]
        if ttype == _STRUCT:
            return self.struct()
        raise _ThriftError(f'bad type {ttype}')

    def struct(self) -> list:
        fields = []
        last = 0
        while True:
            head = self.byte()
            if head == 0:
                return fields
            ttype, delta = head & 0x0F, head >> 4
            fid = last + delta if delta else self.zigzag()
            if ttype in (_BOOL_TRUE, _BOOL_FALSE):
                fields.append([fid, ttype, ttype == _BOOL_TRUE])
            else:
                fields.append([fid, ttype, self.value(ttype)])
            last = fid


class _Writer:
    def __init__(self):
        self.out = bytearray()

    def varint(self, n: int) -> None:
        while True:
            b = n & 0x7F
            n >>= 7
            if n:
                self.out.append(b | 0x80)
            else:
                self.out.append(b)
                return

    def zigzag(self, n: int) -> None:
        self.varint((n << 1) ^ (n >> 63))

    def value(self, ttype: int, v) -> None:
        if ttype in (_BOOL_TRUE, _BOOL_FALSE, _BYTE):
            self.out.append(v)
        elif ttype in (_I16, _I32, _I64):
            self.zigzag(v)
        elif ttype == _DOUBLE:
            self.out += v
        elif ttype == _BINARY:
            self.varint(len(v))
            self.out += v
        elif ttype in (_LIST, _SET):
            etype, items = v
            if len(items) < 15:
                self.out.append(len(items) << 4 | etype)
            else:
                self.out.append(0xF0 | etype)
                self.varint(len(items))
            for item in items:
                self.value(etype, item)
        elif ttype == _MAP:
            k, t, items = v
            self.varint(len(items))
            if items:
                self.out.append(k << 4 | t)
            for a, b in items:
                self.value(k, a)
                self.value(t, b)
        elif ttype == _STRUCT:
            self.struct(v)
        else:
            raise _ThriftError(f'bad type {ttype}')

    def struct(self, fields: list) -> None:
        last = 0
        for fid, ttype, v in sorted(fields, key=lambda f: f[0]):
            wire_type = (_BOOL_TRUE if v else _BOOL_FALSE) if ttype in (_BOOL_TRUE, _BOOL_FALSE) else ttype
            if 0 < fid - last <= 15:
                self.out.append((fid - last) << 4 | wire_type)
            else:
                self.out.append(wire_type)
                self.zigzag(fid)
            if ttype not in (_BOOL_TRUE, _BOOL_FALSE):
                self.value(ttype, v)
            last = fid
        self.out.append(0)


def _get(fields: list, fid: int, default=None):
    for f in fields:
        if f[0] == fid:
            return f[2]
    return default


def _put(fields: list, fid: int, ttype: int, value) -> None:
    for f in fields:
        if f[0] == fid:
            f[1], f[2] = ttype, value
            return
    fields.append([fid, ttype, value])


def _drop(fields: list, *fids: int) -> list:
    """A copy of `fields` without `fids` (entries copied: _put edits them in place)."""
    return [list(f) for f in fields if f[0] not in fids]


class _Page:
    __slots__ = ('offset', 'size', 'uncompressed', 'kind', 'num_values')

    def __init__(self, offset, size, uncompressed, kind, num_values):
        self.offset, self.size, self.uncompressed = offset, size, uncompressed
        self.kind, self.num_values = kind, num_values


def _scan_pages(buf: bytes) -> list[_Page]:
    """Page headers from the start of the file up to the first one that is
    truncated or not a page header (the tail a crash cut short)."""
    pages = []
    pos = len(MAGIC)
    while pos < len(buf):
        r = _Reader(buf, pos)
        try:
            header = r.struct()
        except _ThriftError:
            break
        kind = _get(header, 1)
        comp, uncomp = _get(header, 3), _get(header, 2)
        if kind not in (_DATA_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2) or comp is None or comp < 0:
            break
        sub = _get(header, {_DATA_PAGE: 5, _DICTIONARY_PAGE: 7, _DATA_PAGE_V2: 8}[kind])
        num_values = _get(sub, 1) if sub is not None else None
        end = r.pos + comp
        if num_values is None or end > len(buf):
            break
        pages.append(_Page(pos, end - pos, r.pos - pos + uncomp, kind, num_values))
        pos = end
    return pages


def _cut_chunks(pages: list[_Page], i: int, per_row: list[int], rows: int) -> tuple[int, list] | None:
    """Column chunks of one row group of `rows` rows starting at page i, or None."""
    chunks = []
    for k in per_row:
        start = i
        if i < len(pages) and pages[i].kind == _DICTIONARY_PAGE:
            i += 1
        have = 0
        while have < rows * k:
            if i >= len(pages) or pages[i].kind == _DICTIONARY_PAGE:
                return None
            have += pages[i].num_values
            i += 1
        if have != rows * k:
            return None
        chunks.append(pages[start:i])
    return i, chunks


def _row_groups(pages: list[_Page], per_row: list[int]) -> list[tuple[int, list]]:
    """Split pages into complete row groups. The first column's chunk may end
    after any of its data pages; the first end that lets every other column
    close exactly on a multiple of that row count wins."""
    groups = []
    i = 0
    while i < len(pages):
        found = None
        j = i + (pages[i].kind == _DICTIONARY_PAGE)
        have = 0
        while found is None and j < len(pages) and pages[j].kind != _DICTIONARY_PAGE:
            have += pages[j].num_values
            j += 1
            if have % per_row[0] == 0:
                cut = _cut_chunks(pages, i, per_row, have // per_row[0])
                if cut is not None:
                    found = have // per_row[0], cut
        if found is None:
            break
        rows, (i, chunks) = found
        groups.append((rows, chunks))
    return groups


def _template_footer(schema: pa.Schema, compression: str) -> list:
    """The footer pyarrow writes for a one-row file of `schema`, decoded."""
    row = {}
    for field in schema:
        t = field.type
        if pa.types.is_fixed_size_list(t):
            row[field.name] = pa.array([[0] * t.list_size], type=t)
        else:
            row[field.name] = pa.array([False if pa.types.is_boolean(t) else 0], type=t)
    table = pa.Table.from_pydict(row, schema=schema)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression=compression, use_dictionary=True)
    raw = sink.getvalue()
    (length,) = struct.unpack('<I', raw[-8:-4])
    return _Reader(raw[-8 - length : -8]).struct()


def _values_per_row(schema: pa.Schema) -> list[int] | None:
    per_row = []
    for field in schema:
        t = field.type
        if pa.types.is_fixed_size_list(t) and not pa.types.is_nested(t.value_type):
            per_row.append(t.list_size)
        elif not pa.types.is_nested(t):
            per_row.append(1)
        else:
            return None
    return per_row


def _footer(template: list, groups: list[tuple[int, list]]) -> bytes:
    tpl_columns = [_get(c, 3) for c in _get(_get(template, 4)[1][0], 1)[1]]
    row_groups = []
    total_rows = 0
    for ordinal, (rows, chunks) in enumerate(groups):
        columns = []
        total_uncomp = total_comp = 0
        for tpl, pages in zip(tpl_columns, chunks, strict=True):
            meta = _drop(tpl, 8, 10, 11, 12, 13, 14, 15, 16, 17)
            uncomp = sum(p.uncompressed for p in pages)
            comp = sum(p.size for p in pages)
            data_pages = [p for p in pages if p.kind != _DICTIONARY_PAGE]
            _put(meta, 5, _I64, sum(p.num_values for p in data_pages))
            _put(meta, 6, _I64, uncomp)
            _put(meta, 7, _I64, comp)
            _put(meta, 9, _I64, data_pages[0].offset)
            if pages[0].kind == _DICTIONARY_PAGE:
                _put(meta, 11, _I64, pages[0].offset)
            columns.append([[2, _I64, pages[0].offset], [3, _STRUCT, meta]])
            total_uncomp += uncomp
            total_comp += comp
        row_groups.append(
            [
                [1, _LIST, [_STRUCT, columns]],
                [2, _I64, total_uncomp],
                [3, _I64, rows],
                [5, _I64, chunks[0][0].offset],
                [6, _I64, total_comp],
                [7, _I16, ordinal],
            ]
        )
        total_rows += rows
    meta = _drop(template, 3, 4)
    meta += [[3, _I64, total_rows], [4, _LIST, [_STRUCT, row_groups]]]
    w = _Writer()
    w.struct(meta)
    return bytes(w.out)


def salvage_parquet(path: Path, schema: pa.Schema) -> pa.Table | None:
    """The complete row groups of a footer-less parquet file written with
    `schema`, or None when they cannot be recovered with certainty."""
    buf = Path(path).read_bytes()
    if not buf.startswith(MAGIC):
        return None
    per_row = _values_per_row(schema)
    if per_row is None:
        return None
    groups = _row_groups(_scan_pages(buf), per_row)
    if not groups:
        return None
    end = groups[-1][1][-1][-1]
    end = end.offset + end.size
    for compression in ('snappy', 'zstd', 'none', 'gzip', 'lz4', 'brotli'):
        try:
            footer = _footer(_template_footer(schema, compression), groups)
            rebuilt = buf[:end] + footer + struct.pack('<I', len(footer)) + MAGIC
            table = pq.read_table(io.BytesIO(rebuilt))
            table.validate(full=True)
        except (pa.ArrowException, OSError, _ThriftError, ValueError):
            continue
        if table.schema.names == schema.names:
            return table
    return None
