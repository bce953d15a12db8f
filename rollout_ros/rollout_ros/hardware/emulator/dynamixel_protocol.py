# SPDX-License-Identifier: Apache-2.0
"""Dynamixel Protocol 2.0 packet codec (framing, CRC, byte stuffing, parsing)."""

from dataclasses import dataclass

HEADER = b'\xff\xff\xfd\x00'
BROADCAST_ID = 0xFE

PING = 0x01
READ = 0x02
WRITE = 0x03
REG_WRITE = 0x04
ACTION = 0x05
REBOOT = 0x08
STATUS = 0x55
SYNC_READ = 0x82
SYNC_WRITE = 0x83
BULK_READ = 0x92
BULK_WRITE = 0x93

ERR_OK = 0x00
ERR_INSTRUCTION = 0x02
ERR_CRC = 0x03
ERR_DATA_RANGE = 0x04
ERR_DATA_LENGTH = 0x05
ERR_ACCESS = 0x07

# Above this a length field is treated as line noise rather than a packet to
# wait for, so one corrupted length cannot stall the parser for long.
MAX_LENGTH = 1024


def _crc_table() -> list[int]:
    # CRC-16 with polynomial 0x8005, MSB first, init 0: the variant Robotis
    # specifies for Protocol 2.0 (derived here rather than pasted as a table).
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes, crc: int = 0) -> int:
    for byte in data:
        crc = ((crc << 8) ^ _CRC_TABLE[((crc >> 8) ^ byte) & 0xFF]) & 0xFFFF
    return crc


def stuff(body: bytes) -> bytes:
    """Insert an extra FD after every FF FF FD so the body never contains a header."""
    out = bytearray()
    for byte in body:
        out.append(byte)
        if byte == 0xFD and out[-3:-1] == b'\xff\xff' and len(out) >= 3:
            out.append(0xFD)
    return bytes(out)


def unstuff(body: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(body):
        byte = body[i]
        out.append(byte)
        if byte == 0xFD and len(out) >= 3 and out[-3:-1] == b'\xff\xff' and i + 1 < len(body) and body[i + 1] == 0xFD:
            i += 1
        i += 1
    return bytes(out)


@dataclass(frozen=True)
class Packet:
    id: int
    instruction: int
    params: bytes

    @property
    def error(self) -> int:
        """Error byte of a status packet."""
        return self.params[0]

    @property
    def data(self) -> bytes:
        """Payload of a status packet (after the error byte)."""
        return self.params[1:]


def encode_packet(dxl_id: int, instruction: int, params: bytes = b'') -> bytes:
    body = stuff(bytes([instruction]) + bytes(params))
    # The length field counts the stuffed body plus the CRC, and the CRC covers
    # the stuffed bytes: that is what the receiver sees on the wire.
    frame = HEADER + bytes([dxl_id]) + (len(body) + 2).to_bytes(2, 'little') + body
    return frame + crc16(frame).to_bytes(2, 'little')


def encode_status(dxl_id: int, error: int = ERR_OK, params: bytes = b'') -> bytes:
    return encode_packet(dxl_id, STATUS, bytes([error]) + bytes(params))


class PacketParser:
    """Incremental decoder: feed() raw bytes, get back every complete, valid packet."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.crc_errors = 0

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
                # Keep a possible partial header at the tail for the next feed.
                del self._buf[: max(0, len(self._buf) - 3)]
                return packets
            del self._buf[:start]
            if len(self._buf) < 7:
                return packets
            length = int.from_bytes(self._buf[5:7], 'little')
            if length < 3 or length > MAX_LENGTH:
                del self._buf[:1]
                continue
            total = 7 + length
            if len(self._buf) < total:
                return packets
            frame = bytes(self._buf[:total])
            if crc16(frame[:-2]) != int.from_bytes(frame[-2:], 'little'):
                # Drop only the header byte: if the length itself was corrupted,
                # a real packet may start inside what we would otherwise discard.
                self.crc_errors += 1
                del self._buf[:1]
                continue
            del self._buf[:total]
            body = unstuff(frame[7:-2])
            packets.append(Packet(frame[4], body[0], body[1:]))
