# SPDX-License-Identifier: Apache-2.0
"""One encoder thread per camera, fed through a bounded queue that blocks when full.

LeRobot's streaming encoder drops a frame when its queue is full while the
parquet row is kept, so video and data drift apart. Here the producer waits
instead (backpressure): a slow encoder slows the recorder, visibly, but the
video always has exactly one frame per row.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from lerobot.configs import RGBEncoderConfig

from .layout import fsync_file
from .stats import ImageStats

log = logging.getLogger(__name__)

# SVT-AV1 prints a banner per encoder instance (per camera per episode) on
# stderr unless told otherwise; keep errors only.
os.environ.setdefault('SVT_LOG', '1')

FALLBACK_CODEC = 'h264'  # libx264 through PyAV
_ALIASES = {'libx264': 'h264'}
FFMPEG_ONE_LOG_LEVEL = 8  # FFmpeg's levels: error 16, warning 24, info 32, verbose 40


def resolve_encoder(vcodec: str = 'libsvtav1', preset=None) -> RGBEncoderConfig:
    """LeRobot's encoder settings for `vcodec` (g=2, crf=30, yuv420p, preset 12 for SVT-AV1),
    falling back to h264 when this FFmpeg build lacks the encoder."""
    name = _ALIASES.get(vcodec, vcodec)
    kwargs = {} if preset is None else {'preset': preset}
    try:
        return RGBEncoderConfig(vcodec=name, **kwargs)
    except ValueError as exc:
        if name == FALLBACK_CODEC:
            raise
        log.warning('video encoder %s unavailable (%s); falling back to %s', vcodec, exc, FALLBACK_CODEC)
        return RGBEncoderConfig(vcodec=FALLBACK_CODEC)


class EncoderError(RuntimeError):
    pass


# Encoding is the bulk of the recorder's CPU. Running it a few nice levels
# down lets the thread that feeds frames (and anything else in the process
# that is on the robot's clock) have the cores first; the queue absorbs
# bursts and backpressure shows if the encoder cannot keep up on average.
ENCODER_NICE = 5


def _lower_priority() -> None:
    """Renice this thread; threads the codec starts afterwards inherit it."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + ENCODER_NICE)
    except (AttributeError, OSError):
        pass


_END = object()
_ABORT = object()


class CameraEncoder(threading.Thread):
    """Encodes one camera's frames of one episode into `path`."""

    def __init__(
        self,
        path: Path,
        fps: int,
        config: RGBEncoderConfig,
        queue_size: int,
        encoder_threads: int | None = None,
        name: str = '',
    ):
        super().__init__(daemon=True, name=f'encoder-{name}')
        self.path = Path(path)
        self.fps = fps
        self.config = config
        self.encoder_threads = encoder_threads
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._aborted = threading.Event()
        self.bytes_written = 0
        self.frames_encoded = 0
        self.error: BaseException | None = None
        self.stats: dict | None = None
        # About 6 frames a second feed the image stats.
        self._image_stats = ImageStats(stride=round(fps / 6))

    def put(self, image: np.ndarray) -> float:
        """Queue a frame (copied: camera drivers reuse buffers). Blocks while the
        queue is full; returns the seconds it waited (0.0 when it did not)."""
        self._raise_if_failed()
        frame = np.array(image, copy=True)
        try:
            self._queue.put_nowait(frame)
            return 0.0
        except queue.Full:
            pass
        t0 = time.monotonic()
        while True:
            self._raise_if_failed()
            try:
                self._queue.put(frame, timeout=0.1)
                return time.monotonic() - t0
            except queue.Full:
                continue

    def request_finish(self) -> None:
        """Ask the thread to encode what is queued, close and fsync the file and
        compute image stats; `wait` collects the outcome."""
        self._raise_if_failed()
        self._put_control(_END)

    def wait(self, timeout: float | None = None) -> None:
        self.join(timeout)
        if self.is_alive():
            raise EncoderError(f'{self.name}: still encoding after {timeout} s')
        if self.error is not None:
            raise EncoderError(f'{self.name}: {self.error}') from self.error

    def abort(self) -> None:
        self._aborted.set()
        self._put_control(_ABORT)
        self.join()
        self.path.unlink(missing_ok=True)

    def _put_control(self, item) -> None:
        while self.is_alive():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise EncoderError(f'{self.name} failed: {self.error}') from self.error

    def run(self) -> None:
        container = stream = None
        _lower_priority()
        try:
            while True:
                item = self._queue.get()
                if item is _ABORT or self._aborted.is_set():
                    break
                if item is _END:
                    if stream is not None:
                        self._mux(container, stream.encode())
                        container.close()
                        container = None
                        fsync_file(self.path)
                    self.stats = self._image_stats.result()
                    break
                if container is None:
                    container, stream = self._open(item.shape[0], item.shape[1])
                frame = av.VideoFrame.from_ndarray(item, format='rgb24')
                frame.pts = self.frames_encoded
                frame.time_base = Fraction(1, self.fps)
                self._mux(container, stream.encode(frame))
                self._image_stats.offer(self.frames_encoded, item)
                self.frames_encoded += 1
        except BaseException as exc:  # noqa: BLE001 - reported to the producer
            self.error = exc
            self._drain()
        finally:
            if container is not None:
                try:
                    container.close()
                except Exception:  # noqa: BLE001 - the first error is the one reported
                    pass

    def _drain(self) -> None:
        """Unblock a producer waiting on a full queue after we died."""
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def _open(self, height: int, width: int):
        container = av.open(str(self.path), 'w', format='mp4')
        options = self.config.get_codec_options(self.encoder_threads, as_strings=True)
        if self.config.vcodec in ('h264', 'libx264'):
            # libx264 logs its settings and ~12 lines of statistics per file at info level, which reach
            # the terminal whenever FFmpeg's own log callback is in place (LeRobot restores it after each
            # of its encodes and decodes). One level down, info is hidden; warnings still show as info.
            options['log_level_offset'] = str(FFMPEG_ONE_LOG_LEVEL)
        stream = container.add_stream(self.config.vcodec, self.fps, options=options)
        stream.pix_fmt = self.config.pix_fmt
        stream.width = width
        stream.height = height
        stream.time_base = Fraction(1, self.fps)
        return container, stream

    def _mux(self, container, packets) -> None:
        for packet in packets:
            self.bytes_written += packet.size
            container.mux(packet)
