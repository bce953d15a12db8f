# SPDX-License-Identifier: Apache-2.0
"""The last N seconds of dataset frames, kept in memory with compressed images.

LeRobot's highlight ring (spec §2.3, §8.19) stores raw HxWx3 arrays, so its
1 GiB default holds 6.5 s of two 720p cameras instead of the 10 s asked for,
says nothing about it, and over-counts its memory once the deque's maxlen
starts dropping frames. Here camera images are encoded on append (JPEG by
default: 30 s of two 640x480 cameras fit well under 1 GiB), every frame's
cost is computed once and subtracted when that frame leaves, and a memory cap
that shortens the window is reported with the cap that would hold it all.
"""

import math
import threading
from collections import deque

import cv2
import numpy as np

IMAGE_PREFIX = 'observation.images.'
IMAGE_CODECS = ('jpeg', 'png', 'raw')
MIB = 1024 * 1024
# Python object headers of one stored frame (the dict, its entries, the array
# and bytes headers), which neither the encoded bytes nor nbytes include.
FRAME_OVERHEAD_BYTES = 2048
_SCALAR_BYTES = 8


class _EncodedImage:
    __slots__ = ('data',)

    def __init__(self, data: np.ndarray):
        self.data = data


def _is_rgb_image(key: str, value) -> bool:
    return (
        key.startswith(IMAGE_PREFIX)
        and isinstance(value, np.ndarray)
        and value.dtype == np.uint8
        and value.ndim == 3
        and value.shape[2] == 3
    )


def _value_bytes(value) -> int:
    if isinstance(value, _EncodedImage):
        return value.data.nbytes
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, bytes):
        return len(value)
    return _SCALAR_BYTES


def _decode(frame: dict) -> dict:
    out = {}
    for key, value in frame.items():
        if isinstance(value, _EncodedImage):
            bgr = cv2.imdecode(value.data, cv2.IMREAD_COLOR)
            value = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        out[key] = value
    return out


class FrameRingBuffer:
    """Appended from one thread (a subscriber), drained from another.

    Encoding and decoding run outside the lock, so a drain never stalls the
    subscriber for longer than a deque swap.
    """

    def __init__(
        self, seconds: float, fps: float, max_memory_mb: float, image_codec: str = 'jpeg', jpeg_quality: int = 95
    ):
        if seconds <= 0 or fps <= 0 or max_memory_mb <= 0:
            raise ValueError(f'seconds, fps and max_memory_mb must be > 0, got {seconds}, {fps}, {max_memory_mb}')
        if image_codec not in IMAGE_CODECS:
            raise ValueError(f'image_codec must be one of {IMAGE_CODECS}, got {image_codec!r}')
        self.seconds = float(seconds)
        self.fps = float(fps)
        self.max_memory_mb = float(max_memory_mb)
        self.image_codec = image_codec
        self.max_frames = max(1, round(self.seconds * self.fps))
        self._max_bytes = int(self.max_memory_mb * MIB)
        if image_codec == 'jpeg':
            self._ext, self._params = '.jpg', [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
        elif image_codec == 'png':
            # Level 1: PNG's higher levels cost several times the CPU for a
            # few percent, and append runs on a subscriber thread at camera rate.
            self._ext, self._params = '.png', [cv2.IMWRITE_PNG_COMPRESSION, 1]
        self._frames: deque[tuple[dict, int]] = deque()
        self._bytes = 0
        self._capped = False
        self._lock = threading.Lock()

    def _store(self, frame: dict) -> tuple[dict, int]:
        stored = {}
        for key, value in frame.items():
            if _is_rgb_image(key, value) and self.image_codec != 'raw':
                ok, data = cv2.imencode(self._ext, cv2.cvtColor(value, cv2.COLOR_RGB2BGR), self._params)
                if not ok:
                    raise ValueError(f'{key}: cv2 could not encode a {value.shape} image as {self.image_codec}')
                value = _EncodedImage(data)
            elif isinstance(value, np.ndarray):
                # The caller may reuse its buffers for the next frame.
                value = value.copy()
            stored[key] = value
        size = FRAME_OVERHEAD_BYTES + sum(_value_bytes(v) for v in stored.values())
        return stored, size

    def append(self, frame: dict) -> None:
        """Evicts the oldest frames while over the frame count or the memory
        cap. A single frame larger than the whole cap is still kept (alone),
        so the newest moment is never lost."""
        stored, size = self._store(frame)
        with self._lock:
            while self._frames and len(self._frames) >= self.max_frames:
                self._bytes -= self._frames.popleft()[1]
            while self._frames and self._bytes + size > self._max_bytes:
                self._bytes -= self._frames.popleft()[1]
                self._capped = True
            self._frames.append((stored, size))
            self._bytes += size

    def _take(self) -> deque:
        with self._lock:
            frames, self._frames = self._frames, deque()
            self._bytes = 0
            self._capped = False
        return frames

    def drain(self) -> list[dict]:
        """All frames, oldest first, with RGB images; empties the buffer."""
        return list(self.drain_iter())

    def drain_iter(self):
        """Like drain() (the buffer is emptied now), but decodes one frame at
        a time as the caller iterates: a full ring of raw images is GBs,
        which a consumer writing frame by frame never needs at once."""
        frames = self._take()
        return (_decode(stored) for stored, _ in frames)

    def clear(self) -> None:
        self._take()

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def memory_bytes(self) -> int:
        return self._bytes

    @property
    def window_seconds(self) -> float:
        return len(self._frames) / self.fps

    @property
    def capped(self) -> bool:
        """True once the memory cap has evicted a frame the seconds window
        would have kept (since construction or the last drain)."""
        return self._capped

    def warning(self) -> str | None:
        with self._lock:
            if not self._capped or not self._frames:
                return None
            held, used = len(self._frames), self._bytes
        # 10 % headroom: encoded sizes vary with what the cameras see.
        needed_mb = math.ceil(used / held * self.max_frames * 1.1 / MIB)
        return (
            f'ring buffer: ring_buffer_max_memory_mb={self.max_memory_mb:g} shortens the window to '
            f'{held / self.fps:.1f} s of the {self.seconds:g} s asked for; '
            f'ring_buffer_max_memory_mb={needed_mb} would hold the full window.'
        )
