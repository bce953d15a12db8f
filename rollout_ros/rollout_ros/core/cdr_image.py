# SPDX-License-Identifier: Apache-2.0
"""sensor_msgs/Image read straight from its CDR bytes, pixels not copied.

rclpy's deserialization copies a 640x480 frame into an array.array, about
3.7 ms under the GIL; two 30 Hz cameras then keep the recorder's
subscription thread a quarter busy before any recording work. A raw
subscription hands over the serialized bytes and this parser gives the
pixels as a view into them (what policy_node.image_from_msg reads).
"""

import struct
from dataclasses import dataclass

# Encapsulation ids: plain CDR and XCDR2, big and little endian. An Image has
# no 8-byte field, so both lay it out alike (4-byte alignment, no headers).
_ENCAPSULATIONS = {0x0000: '>', 0x0001: '<', 0x0006: '>', 0x0007: '<'}


@dataclass(frozen=True)
class Header:
    frame_id: str


@dataclass(frozen=True)
class CdrImage:
    stamp_ns: int
    header: Header
    height: int
    width: int
    encoding: str
    step: int
    data: memoryview


class _Reader:
    def __init__(self, buf: bytes):
        if len(buf) < 4 or int.from_bytes(buf[:2], 'big') not in _ENCAPSULATIONS:
            raise ValueError(f'not CDR: encapsulation {bytes(buf[:2]).hex()}')
        self.buf = buf
        self.end = _ENCAPSULATIONS[int.from_bytes(buf[:2], 'big')]
        self.off = 4

    def u32(self, signed: bool = False) -> int:
        self.off += -(self.off - 4) % 4  # alignment counts from after the encapsulation
        value = struct.unpack_from(self.end + ('i' if signed else 'I'), self.buf, self.off)[0]
        self.off += 4
        return value

    def string(self) -> str:
        n = self.u32()  # includes the terminating NUL
        text = bytes(self.buf[self.off : self.off + max(n - 1, 0)]).decode()
        self.off += n
        return text


def parse_image(buf: bytes) -> CdrImage:
    r = _Reader(buf)
    sec, nanosec = r.u32(signed=True), r.u32()
    frame_id = r.string()
    height, width = r.u32(), r.u32()
    encoding = r.string()
    r.off += 1  # is_bigendian: 8-bit encodings only
    step = r.u32()
    n = r.u32()
    if r.off + n > len(buf):
        raise ValueError(f'image data of {n} bytes overruns the {len(buf)}-byte message')
    return CdrImage(
        sec * 1_000_000_000 + nanosec,
        Header(frame_id),
        height,
        width,
        encoding,
        step,
        memoryview(buf)[r.off : r.off + n],
    )
