# SPDX-License-Identifier: Apache-2.0
"""When a long-running (sentry) recording starts its next episode.

LeRobot rotates on wall-clock time alone, from a deliberately low bitrate
guess (spec §2.2): the smallest camera at 0.1 bits per pixel. Real footage
runs 0.1-0.3 bpp, so the guess can be off by 3x either way for a given
scene. EpisodeRotation starts from the same guess and, once the video
encoders report how many bytes they have written, rotates on those instead:
when the largest camera's file reaches the target, so no video file grows
much past target_video_file_size_mb whatever the scene.
"""

DEFAULT_TARGET_MB = 200  # LeRobot's DEFAULT_VIDEO_FILE_SIZE_IN_MB
CONSERVATIVE_BPP = 0.1
NO_VIDEO_EPISODE_S = 300.0
MIB = 1024 * 1024


def estimate_max_episode_seconds(
    camera_shapes: dict[str, tuple[int, int]], fps: float, target_video_file_size_mb: float = DEFAULT_TARGET_MB
) -> float:
    """LeRobot's estimate: seconds until the slowest-filling (smallest)
    camera's file reaches the target at 0.1 bpp. Shapes are (H, W) or
    (H, W, C); channels do not count, bpp is per spatial pixel."""
    pixels = [shape[0] * shape[1] for shape in camera_shapes.values()]
    if not pixels:
        return NO_VIDEO_EPISODE_S
    bytes_per_s = min(pixels) * CONSERVATIVE_BPP * fps / 8
    if bytes_per_s <= 0:
        return NO_VIDEO_EPISODE_S
    return target_video_file_size_mb * MIB / bytes_per_s


class EpisodeRotation:
    def __init__(self, target_video_file_size_mb: float | None, fps: float, camera_shapes: dict[str, tuple[int, int]]):
        self.target_mb = float(target_video_file_size_mb or DEFAULT_TARGET_MB)
        self.target_bytes = self.target_mb * MIB
        self.estimate_s = estimate_max_episode_seconds(camera_shapes, fps, self.target_mb)
        # For reporting only ("next episode in ~X s"): should_rotate compares
        # bytes, which the projection at a constant rate would give as well.
        self.expected_episode_s = self.estimate_s

    def should_rotate(self, elapsed_s: float, encoded_bytes: dict[str, int] | None = None) -> bool:
        """encoded_bytes: bytes written so far in this episode, by camera.
        Without any (no cameras, encoders not started) the estimate decides."""
        largest = max((encoded_bytes or {}).values(), default=0)
        if largest <= 0 or elapsed_s <= 0:
            return elapsed_s >= self.estimate_s
        self.expected_episode_s = self.target_bytes * elapsed_s / largest
        return largest >= self.target_bytes
