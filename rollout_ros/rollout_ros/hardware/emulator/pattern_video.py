# SPDX-License-Identifier: Apache-2.0
"""A synthetic video file that stands in for a camera (no hardware, no download)."""

from pathlib import Path

import cv2
import numpy as np


def write_pattern_video(path: Path, width: int = 320, height: int = 240, fps: int = 30, seconds: float = 4.0) -> Path:
    """Moving coloured blocks and a frame counter, MJPG in AVI (always encodable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f'OpenCV cannot write {path}')
    n = int(seconds * fps)
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(n):
        phase = 2 * np.pi * i / n
        frame = np.zeros((height, width, 3), np.uint8)
        frame[..., 0] = (127 + 127 * np.sin(xx / 17 + phase)).astype(np.uint8)
        frame[..., 1] = (127 + 127 * np.cos(yy / 13 - phase)).astype(np.uint8)
        cx = int((0.5 + 0.4 * np.cos(phase)) * width)
        cy = int((0.5 + 0.4 * np.sin(phase)) * height)
        cv2.circle(frame, (cx, cy), max(4, height // 8), (0, 0, 255), -1)
        cv2.putText(frame, str(i), (4, height - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        writer.write(frame)
    writer.release()
    return path
