# SPDX-License-Identifier: Apache-2.0
"""FrameRingBuffer (compressed images, honest memory count, the cap reported)
and episode rotation (LeRobot's estimate, corrected by measured bytes)."""

import math
import re
import threading

import numpy as np
import pytest

from rollout_ros.dataset.ring_buffer import FRAME_OVERHEAD_BYTES, MIB, FrameRingBuffer
from rollout_ros.dataset.rotation import EpisodeRotation, estimate_max_episode_seconds

H, W = 48, 64
CAMS = ('front', 'wrist')


def camera_image(t: int, cam: int) -> np.ndarray:
    """Smooth gradients that move with t, like a camera and unlike noise."""
    y, x = np.mgrid[0:H, 0:W]
    phase = t / 5 + cam
    img = np.stack([np.sin(x / 9 + phase), np.cos(y / 7 - phase), np.sin((x + y) / 13 + 2 * phase)], -1)
    return (127.5 + 110 * img).astype(np.uint8)


def make_frame(t: int) -> dict:
    frame = {f'observation.images.{cam}': camera_image(t, i) for i, cam in enumerate(CAMS)}
    frame['observation.state'] = np.full(6, t, dtype=np.float32)
    frame['action'] = np.arange(6, dtype=np.float32) + t
    frame['task'] = f'task {t % 3}'
    return frame


def raw_frame_bytes(frame) -> int:
    return FRAME_OVERHEAD_BYTES + sum(
        v.nbytes if isinstance(v, np.ndarray) else len(v.encode()) for v in frame.values()
    )


@pytest.mark.parametrize('codec, max_err', [('jpeg', 2.5), ('png', 0.0), ('raw', 0.0)])
def test_round_trip_oldest_first(codec, max_err):
    ring = FrameRingBuffer(seconds=1.0, fps=30, max_memory_mb=64, image_codec=codec)
    sent = [make_frame(t) for t in range(12)]
    for frame in sent:
        ring.append(frame)
    assert len(ring) == 12 and ring.window_seconds == pytest.approx(12 / 30)
    got = ring.drain()
    assert len(ring) == 0 and ring.memory_bytes == 0 and ring.drain() == []
    assert [f['task'] for f in got] == [f['task'] for f in sent]
    for a, b in zip(sent, got):
        assert set(a) == set(b)
        for cam in CAMS:
            key = f'observation.images.{cam}'
            assert b[key].shape == (H, W, 3) and b[key].dtype == np.uint8
            # Mean error bounds lossy JPEG; a swapped channel order would be far off.
            assert np.abs(b[key].astype(int) - a[key]).mean() <= max_err
        np.testing.assert_array_equal(a['observation.state'], b['observation.state'])
        np.testing.assert_array_equal(a['action'], b['action'])


def test_jpeg_holds_far_less_than_raw():
    jpeg = FrameRingBuffer(1.0, 30, 64)
    raw = FrameRingBuffer(1.0, 30, 64, image_codec='raw')
    for t in range(30):
        jpeg.append(make_frame(t))
        raw.append(make_frame(t))
    assert raw.memory_bytes == sum(raw_frame_bytes(make_frame(t)) for t in range(30))
    assert jpeg.memory_bytes < raw.memory_bytes / 2


def test_seconds_window_evicts_oldest_and_is_not_capped():
    ring = FrameRingBuffer(seconds=0.5, fps=20, max_memory_mb=64, image_codec='raw')
    for t in range(25):
        ring.append(make_frame(t))
    assert len(ring) == 10 and ring.window_seconds == pytest.approx(0.5)
    assert ring.memory_bytes == 10 * raw_frame_bytes(make_frame(0))
    assert not ring.capped and ring.warning() is None
    assert [f['task'] for f in ring.drain()] == [f'task {t % 3}' for t in range(15, 25)]


def test_memory_cap_shortens_the_window_and_says_so():
    frame_bytes = raw_frame_bytes(make_frame(0))
    cap_mb = 7.5 * frame_bytes / MIB  # room for 7 raw frames, not 8
    ring = FrameRingBuffer(seconds=1.0, fps=30, max_memory_mb=cap_mb, image_codec='raw')
    for t in range(40):
        ring.append(make_frame(t))
    # The count always matches what is held (LeRobot's drifts up to the cap).
    assert len(ring) == 7 and ring.memory_bytes == 7 * frame_bytes <= cap_mb * MIB
    assert ring.capped and ring.window_seconds == pytest.approx(7 / 30)
    text = ring.warning()
    assert '0.2 s of the 1 s' in text
    needed_mb = int(re.search(r'ring_buffer_max_memory_mb=(\d+) would hold', text).group(1))
    assert needed_mb * MIB >= 30 * frame_bytes
    ring.drain()
    assert not ring.capped and ring.warning() is None


def test_a_frame_larger_than_the_cap_is_kept_alone():
    ring = FrameRingBuffer(seconds=1.0, fps=30, max_memory_mb=0.001, image_codec='raw')
    for t in range(3):
        ring.append(make_frame(t))
    assert len(ring) == 1 and ring.drain()[0]['task'] == 'task 2'


def test_the_caller_may_reuse_its_arrays():
    ring = FrameRingBuffer(1.0, 30, 64, image_codec='raw')
    frame = make_frame(1)
    ring.append(frame)
    frame['observation.state'][:] = -1
    frame['observation.images.front'][:] = 0
    got = ring.drain()[0]
    assert (got['observation.state'] == 1).all() and got['observation.images.front'].any()


def test_drain_iter_empties_now_and_decodes_lazily():
    ring = FrameRingBuffer(1.0, 30, 64)
    for t in range(5):
        ring.append(make_frame(t))
    frames = ring.drain_iter()
    assert len(ring) == 0 and ring.memory_bytes == 0
    ring.append(make_frame(99))
    assert [f['task'] for f in frames] == [f'task {t % 3}' for t in range(5)]
    assert len(ring) == 1


def test_append_and_drain_from_two_threads():
    ring = FrameRingBuffer(seconds=100, fps=30, max_memory_mb=64)
    n = 600
    drained = []
    done = threading.Event()

    def producer():
        for t in range(n):
            frame = make_frame(t)
            frame['t'] = np.array([t])
            ring.append(frame)
        done.set()

    thread = threading.Thread(target=producer)
    thread.start()
    while not done.is_set():
        drained += ring.drain()
    thread.join()
    drained += ring.drain()
    assert [int(f['t'][0]) for f in drained] == list(range(n))
    assert len(ring) == 0 and ring.memory_bytes == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match='image_codec'):
        FrameRingBuffer(1, 30, 64, image_codec='webp')
    with pytest.raises(ValueError, match='> 0'):
        FrameRingBuffer(0, 30, 64)


@pytest.mark.parametrize(
    'shape, target, seconds', [((480, 640), 200, 1820.4), ((720, 1280), 200, 606.8), ((480, 640), 50, 455.1)]
)
def test_estimate_matches_the_spec_table(shape, target, seconds):
    assert estimate_max_episode_seconds({'front': shape}, 30, target) == pytest.approx(seconds, abs=0.1)


def test_estimate_uses_the_smallest_camera_and_300_s_without_cameras():
    both = {'wrist': (480, 640, 3), 'front': (720, 1280, 3)}
    assert estimate_max_episode_seconds(both, 30, 200) == estimate_max_episode_seconds({'w': (480, 640)}, 30, 200)
    assert estimate_max_episode_seconds({}, 30, 200) == 300.0


def test_estimate_equals_lerobots():
    try:
        from lerobot.rollout.strategies import estimate_max_episode_seconds as lerobot_estimate
    except ImportError:
        pytest.skip('lerobot rollout is not importable')
    for shapes, fps, target in [
        ({'a': (480, 640)}, 30, 200),
        ({'a': (480, 640), 'b': (240, 320)}, 15, 75),
        ({}, 30, 200),
    ]:
        features = {f'observation.images.{k}': {'dtype': 'video', 'shape': (*s, 3)} for k, s in shapes.items()}
        features['action'] = {'dtype': 'float32', 'shape': (6,)}
        assert estimate_max_episode_seconds(shapes, fps, target) == pytest.approx(
            lerobot_estimate(features, fps, target)
        )


def test_rotation_falls_back_on_the_estimate_without_measurements():
    rot = EpisodeRotation(None, 30, {'front': (480, 640)})
    assert rot.target_mb == 200 and rot.estimate_s == pytest.approx(1820.44, abs=0.01)
    assert not rot.should_rotate(1800.0, {})
    assert not rot.should_rotate(1800.0, {'front': 0})
    assert rot.should_rotate(1821.0, None)


def test_rotation_follows_the_largest_measured_file():
    rot = EpisodeRotation(10, 30, {'front': (480, 640), 'wrist': (240, 320)})
    assert rot.estimate_s == pytest.approx(364.1, abs=0.1)  # from the smaller camera
    # A busy scene fills the file long before the estimate...
    assert not rot.should_rotate(10.0, {'front': 9 * MIB, 'wrist': 2 * MIB})
    assert rot.expected_episode_s == pytest.approx(10 * 10 / 9)
    assert rot.should_rotate(11.2, {'front': 10 * MIB, 'wrist': 2.5 * MIB})
    # ...and a quiet one rotates later than it, when the file is full, not before.
    quiet = EpisodeRotation(10, 30, {'front': (480, 640)})
    assert not quiet.should_rotate(2 * quiet.estimate_s, {'front': 5 * MIB})
    assert quiet.should_rotate(4 * quiet.estimate_s, {'front': math.ceil(10 * MIB)})
