# SPDX-License-Identifier: Apache-2.0
"""LeRobot's own `lerobot-rollout`, unmodified, with a video file standing in for its camera.

Used by bench_vs_lerobot.py. A robot's camera must name width, height and fps,
but OpenCV cannot set those on a video file (LeRobot's OpenCVCamera then fails
to connect), and it reads a file as fast as it decodes and stops at its end,
where a real camera delivers frames at its own rate, forever. So only the
camera's file handling is replaced: the configured size and rate are checked
against the file's instead of set, frames come at the file's frame rate and
the file loops. Everything else (robot, bus, policy, inference engine, loop) is
the installed package's code. The arguments are lerobot-rollout's.

    python bench/lerobot_paced_rollout.py --robot.type=koch_follower ... --policy.path=...
"""

import sys
import time

import cv2
from lerobot.cameras.opencv.camera_opencv import OpenCVCamera


def _paced_looping_read(self):
    """One frame per 1/fps of the file, from its start again at the end."""
    capture = self.videocapture
    period = 1.0 / (capture.get(cv2.CAP_PROP_FPS) or 30.0)
    now = time.monotonic()
    due = getattr(self, '_bench_due', now)
    if due > now:
        time.sleep(due - now)
    self._bench_due = max(due, now - period) + period
    ok, frame = capture.read()
    if not ok:
        capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        ok, frame = capture.read()
    if not ok:
        raise RuntimeError(f'{self}: cannot read {self.config.index_or_path}')
    return frame


def _check_file_property(name: str, prop: int, attr: str):
    def check(self) -> None:
        want = getattr(self, attr)
        have = self.videocapture.get(prop)
        if want is not None and abs(float(want) - have) > 1e-3:
            raise RuntimeError(f'{self}: {name}={want} configured but the file has {have:g}')

    return check


def _check_file_size(self) -> None:
    _check_file_property('width', cv2.CAP_PROP_FRAME_WIDTH, 'capture_width')(self)
    _check_file_property('height', cv2.CAP_PROP_FRAME_HEIGHT, 'capture_height')(self)


OpenCVCamera._read_from_hardware = _paced_looping_read
OpenCVCamera._validate_width_and_height = _check_file_size
OpenCVCamera._validate_fps = _check_file_property('fps', cv2.CAP_PROP_FPS, 'fps')

if __name__ == '__main__':
    from lerobot.scripts.lerobot_rollout import main

    sys.exit(main())
