# SPDX-License-Identifier: Apache-2.0
"""Feetech SCS/STS serial protocol codec (framing, checksum, parsing).

Instruction packet: FF FF id length instruction params... checksum.
Status packet:      FF FF id length error params... checksum.
length counts the instruction/error byte, the params and the checksum;
checksum = ~(id + length + instruction/error + params) & 0xFF.
"""

from dataclasses import dataclass

HEADER = b'\xff\xff'
BROADCAST_ID = 0xFE
MAX_ID = 0xFD

PING = 0x01
READ = 0x02
WRITE = 0x03
REG_WRITE = 0x04
ACTION = 0x05
SYNC_READ = 0x82
SYNC_WRITE = 0x83

# Status error bits: hardware alarms the servo reports with every reply while
# they last. None of them means the instruction was refused.
ERR_VOLTAGE = 0x01
ERR_ANGLE = 0x02
ERR_OVERHEAT = 0x04
ERR_OVERCURRENT = 0x08
ERR_OVERLOAD = 0x20
_ERROR_NAMES = {
    ERR_VOLTAGE: 'input voltage',
    ERR_ANGLE: 'angle sensor',
    ERR_OVERHEAT: 'overheat',
    ERR_OVERCURRENT: 'overcurrent',
    ERR_OVERLOAD: 'overload',
}
_KNOWN_ERRORS = ERR_VOLTAGE | ERR_ANGLE | ERR_OVERHEAT | ERR_OVERCURRENT | ERR_OVERLOAD

# id, length, code and checksum: the bytes after the header of an empty packet.
OVERHEAD = 6


def checksum(body: bytes | bytearray | memoryview) -> int:
    """Checksum over id, length, code and params (everything after the header)."""
    return ~sum(body) & 0xFF


def encode_packet(servo_id: int, code: int, params: bytes = b'') -> bytes:
    """One packet; `code` is the instruction, or the error byte of a status."""
    if len(params) > 253:
        raise ValueError(f'{len(params)} parameter bytes do not fit in one packet')
    body = bytes([servo_id, len(params) + 2, code]) + bytes(params)
    return HEADER + body + bytes([checksum(body)])


def encode_status(servo_id: int, error: int = 0, data: bytes = b'') -> bytes:
    return encode_packet(servo_id, error, data)


def describe_error(error: int) -> str:
    names = [name for bit, name in _ERROR_NAMES.items() if error & bit]
    unknown = error & ~_KNOWN_ERRORS
    if unknown:
        names.append(f'unknown bits 0x{unknown:02x}')
    return ', '.join(names) or 'no error'


@dataclass(frozen=True)
class Packet:
    id: int
    # The instruction of a request, the error byte of a status: the wire
    # format is the same, only the direction tells them apart.
    code: int
    params: bytes

    @property
    def instruction(self) -> int:
        return self.code

    @property
    def error(self) -> int:
        return self.code

    @property
    def data(self) -> bytes:
        return self.params


class PacketParser:
    """Incremental decoder: feed() raw bytes, get back every complete, valid packet."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.checksum_errors = 0

    @property
    def pending(self) -> int:
        return len(self._buf)

    def reset(self) -> None:
        self._buf.clear()

    def feed(self, data: bytes) -> list[Packet]:
        self._buf += data
        packets = []
        while True:
            start = self._buf.find(HEADER)
            if start < 0:
                # Keep a lone trailing FF: it may be the first half of a header.
                del self._buf[: max(0, len(self._buf) - 1)]
                return packets
            del self._buf[:start]
            if len(self._buf) < 4:
                return packets
            servo_id, length = self._buf[2], self._buf[3]
            if servo_id > BROADCAST_ID or length < 2:
                # FF FF FF ...: the header may start one byte later.
                del self._buf[:1]
                continue
            total = 4 + length
            if len(self._buf) < total:
                return packets
            frame = bytes(self._buf[:total])
            if checksum(frame[2:-1]) != frame[-1]:
                # Drop only the first header byte: if the length was corrupted,
                # a real packet may start inside what we would otherwise skip.
                self.checksum_errors += 1
                del self._buf[:1]
                continue
            del self._buf[:total]
            packets.append(Packet(servo_id, frame[4], frame[5:-1]))
