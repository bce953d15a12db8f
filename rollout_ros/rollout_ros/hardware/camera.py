# SPDX-License-Identifier: Apache-2.0
"""OpenCV camera capture on its own thread.

A device index (or /dev/video path) is read as fast as the device delivers;
a video file is paced to `fps` and loops, so a file stands in for a camera in
tests and the demo through the same code path. Each frame carries its
capture time, so consumers can see how old it is.
"""

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from rollout_ros.core.errors import ConfigError

# Degrees clockwise, as lerobot's camera rotation (-90 = 270).
ROTATIONS = {
    0: None,
    90: cv2.ROTATE_90_CLOCKWISE,
    180: cv2.ROTATE_180,
    -90: cv2.ROTATE_90_COUNTERCLOCKWISE,
    270: cv2.ROTATE_90_COUNTERCLOCKWISE,
}


@dataclass
class Frame:
    image: np.ndarray  # HxWx3 uint8, in the configured color order
    capture_time: float  # time.time() at capture (wall clock, for ROS stamps)
    capture_mono: float  # time.monotonic() at capture (for ages)
    seq: int


def _parse_source(index_or_path: str):
    text = str(index_or_path).strip()
    if text.isdigit():
        return int(text), False
    path = Path(text).expanduser()
    is_file = path.is_file()
    if not is_file and not text.startswith('/dev/'):
        raise ConfigError(
            'index_or_path',
            f'{text!r} is neither a camera index, a /dev path nor an existing video file.',
            'give a device index (0), a device path (/dev/video0) or a video file.',
        )
    return str(path), is_file


class OpenCVCamera:
    def __init__(
        self,
        index_or_path: str,
        width: int,
        height: int,
        fps: float,
        color_mode: str = 'rgb',
        fourcc: str = '',
        rotation: int = 0,
        warmup_s: float = 0.0,
    ):
        if color_mode not in ('rgb', 'bgr'):
            raise ConfigError('color_mode', f'{color_mode!r} is not supported.', "use 'rgb' or 'bgr'.")
        if rotation not in ROTATIONS:
            raise ConfigError('rotation', f'{rotation} is not supported.', f'use one of {sorted(ROTATIONS)}.')
        self.rotation = rotation
        self.warmup_s = warmup_s
        self._stall_until = 0.0
        if width <= 0 or height <= 0 or fps <= 0:
            raise ConfigError('width/height/fps', f'got {width}x{height}@{fps}.', 'all three must be positive.')
        self.source, self.is_file = _parse_source(index_or_path)
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.color_mode = color_mode
        self.fourcc = fourcc
        self._cap = None
        self._thread = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._latest: Frame | None = None
        self._new_frame = threading.Condition(self._lock)
        self._seq = 0
        self.on_frame = None  # optional callback(Frame), called on the capture thread

    def open(self) -> None:
        cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            raise ConfigError(
                'index_or_path',
                f'OpenCV could not open {self.source!r}.',
                'check the device exists and is not used by another program.',
            )
        if not self.is_file:
            if self.fourcc:
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        ok, frame = cap.read()
        if not self.is_file:
            # Auto exposure and white balance settle in the first frames.
            deadline = time.monotonic() + self.warmup_s
            while ok and time.monotonic() < deadline:
                ok, frame = cap.read()
        if not ok:
            cap.release()
            raise ConfigError(
                'index_or_path', f'{self.source!r} opened but returned no frame.', 'check the camera or video file.'
            )
        self._cap = cap
        self._store(frame)

    def start(self) -> None:
        if self._cap is None:
            self.open()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name='camera-capture', daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def close(self) -> None:
        self.stop()
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def latest(self) -> Frame | None:
        with self._lock:
            return self._latest

    def wait_frame(self, after_seq: int, timeout: float) -> Frame | None:
        with self._new_frame:
            self._new_frame.wait_for(lambda: self._latest is not None and self._latest.seq > after_seq, timeout)
            return self._latest

    def stall(self, seconds: float) -> None:
        """Deliver no frames for a while, as a camera that hangs does (tests, demos)."""
        self._stall_until = time.monotonic() + seconds

    def age_s(self) -> float | None:
        latest = self.latest()
        return None if latest is None else time.monotonic() - latest.capture_mono

    def _convert(self, frame: np.ndarray) -> np.ndarray:
        if frame.shape[1] != self.width or frame.shape[0] != self.height:
            frame = cv2.resize(frame, (self.width, self.height), interpolation=cv2.INTER_AREA)
        if ROTATIONS[self.rotation] is not None:
            frame = cv2.rotate(frame, ROTATIONS[self.rotation])
        if self.color_mode == 'rgb':
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        return np.ascontiguousarray(frame)

    def _store(self, raw: np.ndarray) -> Frame:
        wall, mono = time.time(), time.monotonic()
        image = self._convert(raw)
        with self._new_frame:
            self._seq += 1
            frame = Frame(image, wall, mono, self._seq)
            self._latest = frame
            self._new_frame.notify_all()
        return frame

    def _run(self) -> None:
        period = 1.0 / self.fps
        next_due = time.monotonic()
        while not self._stop.is_set():
            if self.is_file:
                # A file decodes far faster than real time: pace it like a camera.
                next_due += period
                delay = next_due - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                elif delay < -period:
                    next_due = time.monotonic()
            if time.monotonic() < self._stall_until:
                self._stop.wait(0.01)
                continue
            ok, raw = self._cap.read()
            if not ok:
                if self.is_file:
                    self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    continue
                self._stop.wait(0.01)
                continue
            frame = self._store(raw)
            if self.on_frame is not None:
                self.on_frame(frame)
