# SPDX-License-Identifier: Apache-2.0
"""Recorder node: RolloutFrames and camera images in, a LeRobot v3 dataset out
(checked by loading it with LeRobot), through the node's services, a SIGKILL,
the ring buffer and auto-rotation; image pairing by capture stamp."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml
from builtin_interfaces.msg import Time
from helpers import spin_in_background, wait_for
from rcl_interfaces.msg import ParameterType
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from rollout_ros.core.image_sync import ImageSync
from rollout_ros.nodes.lifecycle_client import LifecycleClient, call_blocking
from rollout_ros_interfaces.msg import RecorderStatus, RolloutFrame

PKG = Path(__file__).resolve().parents[1]
H, W = 96, 128
NAMES = [f'j{i}.pos' for i in range(6)]
FPS = 30
PERIOD_NS = 1_000_000_000 // FPS
VCODEC = 'h264'  # the fastest encoder here; the writer's own tests cover AV1


# ImageSync (no ROS) -------------------------------------------------------------
def make_sync(timeout_s=0.5):
    return ImageSync(['a', 'b'], tolerance_ns=PERIOD_NS // 2, timeout_s=timeout_s, history_ns=2 * 10**9)


def test_sync_exact_stamp_and_order():
    sync = make_sync()
    assert sync.add_image('a', 1000, 'a1', 0.0) == []
    # The tick names the frames it used; b's has not arrived: it waits, and a
    # later tick stays behind it.
    assert sync.add_tick('t1', {'a': 1000, 'b': 1000}, 1500, 0.0) == []
    assert sync.add_image('a', 2000, 'a2', 0.0) == []
    assert sync.add_tick('t2', {'a': 2000, 'b': 2000}, 2500, 0.0) == []
    out = sync.add_image('b', 1000, 'b1', 0.0)
    assert [t.payload for t in out] == ['t1']
    assert out[0].images == {'a': (1000, 'a1'), 'b': (1000, 'b1')} and out[0].missing == []
    out = sync.add_image('b', 2000, 'b2', 0.0)
    assert [t.payload for t in out] == ['t2']
    assert out[0].images == {'a': (2000, 'a2'), 'b': (2000, 'b2')}
    assert sync.nearest_matches == 0


def test_sync_request_covers_the_ticks_stamped_before_it():
    sync = ImageSync([], tolerance_ns=1, timeout_s=0.5, history_ns=10**9)
    assert sync.add_marker('save', 3000, 0.0, 0.5) == []
    # Stamped before the request but delivered after it: still before it.
    assert [t.payload for t in sync.add_tick('late', {}, 2900, 0.0)] == ['late']
    # A later-stamped tick shows the earlier ones are all in.
    assert [t.payload for t in sync.add_tick('next', {}, 3100, 0.0)] == ['save', 'next']
    # No tick follows (the strategy stopped): the request goes after grace_s.
    sync.add_marker('save2', 4000, 1.0, 0.5)
    assert sync.poll(1.4) == []
    assert [t.payload for t in sync.poll(1.5)] == ['save2']


def test_sync_lost_frame_nearest_or_missing():
    sync = make_sync()
    sync.add_image('a', 0, 'a0', 0.0)
    sync.add_image('b', 0, 'b0', 0.0)
    # b's wanted frame (stamp 10 ms) was lost; a later one (18 ms) shows it
    # will not come: the nearest within half a period is used at once.
    sync.add_image('a', 10_000_000, 'a10', 0.0)
    assert sync.add_tick('t', {'a': 10_000_000, 'b': 10_000_000}, 0, 0.0) == []
    out = sync.add_image('b', 18_000_000, 'b18', 0.0)
    assert out[0].images['b'] == (18_000_000, 'b18') and sync.nearest_matches == 1
    # Nothing within tolerance: missing, not a hole in the video.
    sync.add_image('a', 100_000_000, 'a100', 0.0)
    sync.add_tick('u', {'a': 100_000_000, 'b': 100_000_000}, 0, 0.0)
    out = sync.add_image('b', 200_000_000, 'b200', 0.0)
    assert out[0].payload == 'u' and out[0].missing == ['b'] and 'a' in out[0].images
    # A frame that never comes and no later one: decided at the timeout.
    sync.add_image('a', 300_000_000, 'a300', 1.0)
    sync.add_tick('v', {'a': 300_000_000, 'b': 300_000_000}, 0, 1.0)
    assert sync.poll(1.4) == []
    out = sync.poll(1.5)
    assert out[0].payload == 'v' and out[0].missing == ['b']
    assert len(sync) == 0


# Test-side publishers -----------------------------------------------------------
def pixel(k: int, cam: int) -> int:
    """A flat grey per frame, far from its neighbours, so a decoded frame tells
    which image the recorder picked."""
    return 30 + (k * 37 + cam * 90) % 190


class Feeder:
    """Plays cameras and a strategy: per tick, two images per camera (the one
    the tick names, and a decoy 4 ms later), then the RolloutFrame."""

    def __init__(self, ns: str, cameras=('front', 'wrist'), recorder='recorder'):
        import rclpy

        self.ns = ns
        self.cameras = list(cameras)
        self.node = rclpy.create_node(f'feeder_{uuid.uuid4().hex[:8]}', namespace=ns)
        self.image_pubs = {
            c: self.node.create_publisher(Image, f'camera_{c}/image_raw', qos_profile_sensor_data) for c in self.cameras
        }
        self.frame_pub = self.node.create_publisher(RolloutFrame, 'frames', 200)
        self.clients = {
            s: self.node.create_client(Trigger, f'{recorder}/{s}')
            for s in ('start_episode', 'save_episode', 'discard_episode', 'push')
        }
        self.status = RecorderStatus()  # the recorder's latest ~/status (typed)
        self.node.create_subscription(RecorderStatus, f'{recorder}/status', lambda m: setattr(self, 'status', m), 10)
        self.lifecycle = LifecycleClient(self.node, f'{ns}/{recorder}')
        self.executor = spin_in_background(self.node)
        self.stamps: list[int] = []  # tick k's stamp (unix ns)
        self.k = 0

    def close(self):
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()

    def wait_connected(self, timeout=10.0):
        pubs = [self.frame_pub, *self.image_pubs.values()]
        assert wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs), timeout)

    def image(self, k: int, cam: int, stamp_ns: int, decoy=False) -> Image:
        msg = Image()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
        msg.header.frame_id = self.cameras[cam]
        msg.height, msg.width, msg.encoding, msg.step = H, W, 'rgb8', W * 3
        value = 255 - pixel(k, cam) if decoy else pixel(k, cam)
        msg.data = np.full((H, W, 3), value, np.uint8).tobytes()
        return msg

    def tick(self, skip_camera: str | None = None, intervention=False) -> int:
        """Publish tick k; returns k."""
        k = self.k
        self.k += 1
        tick_ns = time.time_ns()
        self.stamps.append(tick_ns)
        cam_ns = tick_ns - 10_000_000
        for i, cam in enumerate(self.cameras):
            if cam == skip_camera:
                continue
            self.image_pubs[cam].publish(self.image(k, i, cam_ns))
            self.image_pubs[cam].publish(self.image(k, i, cam_ns + 4_000_000, decoy=True))
        frame = RolloutFrame()
        frame.header.stamp.sec, frame.header.stamp.nanosec = divmod(tick_ns, 10**9)
        frame.state_names = NAMES
        frame.state = [float(k + j / 4) for j in range(6)]
        frame.action_names = list(reversed(NAMES))  # by name, not by position
        frame.action = [float(-k - j) for j in range(6)]
        frame.action_sent.sec, frame.action_sent.nanosec = divmod(tick_ns + 5_000_000, 10**9)
        frame.intervention = intervention
        frame.task = 'pick' if k % 2 else ''
        frame.camera_names = self.cameras
        frame.camera_stamps = [Time(sec=cam_ns // 10**9, nanosec=cam_ns % 10**9) for _ in self.cameras]
        self.frame_pub.publish(frame)
        return k

    def run(self, n: int, **kw) -> list[int]:
        """n ticks at FPS (absolute deadlines)."""
        start = time.monotonic()
        ks = []
        for i in range(n):
            ks.append(self.tick(**kw))
            delay = start + (i + 1) / FPS - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        return ks

    def call(self, service: str, timeout=60.0) -> tuple[bool, dict | str]:
        client = self.clients[service]
        assert client.wait_for_service(timeout_sec=10.0), service
        resp = call_blocking(client, Trigger.Request(), timeout)
        assert resp is not None, f'{service}: no reply'
        try:
            return resp.success, json.loads(resp.message)
        except ValueError:
            return resp.success, resp.message

    def ok(self, service: str) -> dict:
        success, message = self.call(service)
        assert success, f'{service}: {message}'
        return message


def expected_row(k: int):
    state = [k + j / 4 for j in range(6)]
    action = list(reversed([-k - j for j in range(6)]))  # dataset order NAMES
    return np.array(state, np.float32), np.array(action, np.float32)


def recorder_params(root: Path, **extra) -> dict:
    params = dict(
        repo_id='tester/rollout_node',
        root=str(root),
        stamp_repo_id=False,
        fps=FPS,
        robot_type='test_arm',
        state_names=NAMES,
        action_names=NAMES,
        camera_names=['front', 'wrist'],
        camera_shapes=[f'{H}x{W}'] * 2,
        camera_topic_template='camera_{name}/image_raw',
        vcodec=VCODEC,
        image_timeout_s=0.3,
    )  # a start/save waits this long when no tick follows
    params.update(extra)
    return params


@pytest.fixture
def recorder(ros):
    """In-process recorder on its own executor; each test in its own namespace."""
    from rollout_ros.nodes.recorder_node import RecorderNode

    made = []

    def make(root: Path, **extra):
        ns = f'/rec_{uuid.uuid4().hex[:8]}'
        node = RecorderNode(
            'recorder',
            namespace=ns,
            parameter_overrides=[Parameter(k, value=v) for k, v in recorder_params(root, **extra).items()],
        )
        ex = spin_in_background(node)
        feeder = Feeder(ns)
        made.append((node, ex, feeder))
        return node, feeder

    yield make
    for node, ex, feeder in made:
        feeder.close()
        if node.state_label != 'finalized':
            node.trigger_shutdown()
        ex.shutdown(timeout_sec=2.0)
        node.destroy_node()


def bring_up(node, feeder):
    node.trigger_configure()
    assert node.state_label == 'inactive', node.last_error
    node.trigger_activate()
    assert node.state_label == 'active', node.last_error
    feeder.wait_connected()


def load(root: Path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset('tester/rollout_node', root=root)


def video_frame_count(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


# Through the node -------------------------------------------------------------
def test_round_trip_two_episodes(recorder, tmp_path):
    root = tmp_path / 'ds'
    node, feeder = recorder(root, bag_path=str(tmp_path / 'bags'), bag_topics=['frames', 'camera_front/image_raw'])
    bring_up(node, feeder)
    # Bag subscriptions start once the graph shows the topics' types.
    assert wait_for(lambda: not node.status()['bag']['waiting_for'], 5.0), node.status()
    assert wait_for(lambda: feeder.frame_pub.get_subscription_count() == 2, 5.0)

    feeder.run(3)  # idle: not recording, no ring
    ok, msg = feeder.call('save_episode')
    assert not ok and 'start_episode' in msg
    ok, msg = feeder.call('push')
    assert not ok and 'push_to_hub' in msg

    feeder.ok('start_episode')
    ep0 = feeder.run(20)
    t0 = time.monotonic()
    saved0 = feeder.ok('save_episode')  # no wait: the save covers every tick sent before it
    save0_s = time.monotonic() - t0
    assert saved0['episode_index'] == 0 and saved0['frames'] == 20, saved0

    feeder.ok('start_episode')
    feeder.run(5)
    assert feeder.ok('discard_episode') == {'episode_index': 1, 'discarded_frames': 5}

    feeder.ok('start_episode')
    ep1 = feeder.run(10)
    [lost] = feeder.run(1, skip_camera='wrist')  # its wrist image never comes
    ep1 += feeder.run(14)
    saved1 = feeder.ok('save_episode')
    assert saved1['frames'] == 24 and saved1['missing_image_frames'] == 1, saved1
    assert wait_for(lambda: feeder.status.total_episodes == 2, 3.0), feeder.status
    status = feeder.status
    assert status.missing_image_frames == 1 and status.idle_frames == 3
    assert status.bad_frames == status.dropped_backlog == status.write_errors == 0
    assert status.last_save_index == 1 and status.last_save_frames == 24 and status.state == 'active'

    node.trigger_deactivate()
    node.trigger_cleanup()
    assert node.state_label == 'unconfigured', node.last_error

    # Every tick is in the bag, written ones or not.
    from rosbags.rosbag2 import Reader

    [bag] = (tmp_path / 'bags').iterdir()
    with Reader(bag) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts[f'{feeder.ns}/frames'] == feeder.k == 3 + 20 + 5 + 25
    assert counts[f'{feeder.ns}/camera_front/image_raw'] > 0

    ds = load(root)
    assert ds.meta.total_episodes == 2 and ds.meta.total_frames == 44
    assert ds.meta.robot_type == 'test_arm' and ds.fps == FPS
    sent = ep0 + ep1
    assert lost not in sent
    rows = ds.hf_dataset.with_format(None)
    state = np.array(rows['observation.state'], np.float32)
    action = np.array(rows['action'], np.float32)
    for i, k in enumerate(sent):
        want_state, want_action = expected_row(k)
        np.testing.assert_array_equal(state[i], want_state)
        np.testing.assert_array_equal(action[i], want_action)
        assert rows['stamp.observation'][i] == pytest.approx(feeder.stamps[k] * 1e-9, abs=1e-6)
        assert rows['stamp.camera.front'][i] == pytest.approx((feeder.stamps[k] - 10**7) * 1e-9, abs=1e-6)
    assert list(rows['episode_index']) == [0] * 20 + [1] * 24
    assert set(ds.meta.tasks.index) == {'pick', 'rollout'}  # '' became default_task

    # Every row has its video frame, and it is the image the tick named (not the decoy).
    for cam in ('front', 'wrist'):
        videos = sorted((root / 'videos' / f'observation.images.{cam}').rglob('*.mp4'))
        assert sum(video_frame_count(v) for v in videos) == 44
    for i in (0, 19, 20, 30, 43):
        item = ds[i]
        for c, cam in enumerate(('front', 'wrist')):
            got = float(item[f'observation.images.{cam}'].mean()) * 255
            assert abs(got - pixel(sent[i], c)) < 6, (i, cam, got, pixel(sent[i], c))
    print(f'\nsave latency through the service (20 frames, 2 cameras {H}x{W}, {VCODEC}): {save0_s * 1e3:.0f} ms')


def test_ring_buffer_pre_press_frames_and_memory_cap(recorder, tmp_path):
    root = tmp_path / 'ds'
    node, feeder = recorder(
        root,
        ring_buffer_seconds=2.0,
        ring_buffer_max_memory_mb=1.0,
        camera_shapes=['480x640', f'{H}x{W}'],
        camera_names=['big', 'wrist'],
    )
    node2_shape = (480, 640)
    # The big camera gets noise images: JPEG cannot shrink them, so 1 MB holds
    # a few frames, not the 60 the window asks for.
    noise = np.random.default_rng(0).integers(0, 256, (*node2_shape, 3), np.uint8)
    feeder.cameras = ['big', 'wrist']
    feeder.image_pubs = {
        'big': feeder.node.create_publisher(Image, 'camera_big/image_raw', qos_profile_sensor_data),
        'wrist': feeder.image_pubs['wrist'],
    }
    plain = feeder.image

    def image(k, cam, stamp_ns, decoy=False):
        msg = plain(k, cam, stamp_ns, decoy)
        if cam == 0:
            msg.height, msg.width, msg.step = 480, 640, 640 * 3
            msg.data = noise.tobytes()
        return msg

    feeder.image = image
    bring_up(node, feeder)

    pre = feeder.run(30)
    assert wait_for(lambda: node.worker.backlog == 0 and len(node.worker.ring) > 0, 10.0)
    ring = node.worker.ring
    held = len(ring)
    assert ring.capped and 0 < held < 30
    assert ring.memory_bytes <= 1.0 * 2**20
    assert wait_for(lambda: feeder.status.ring_enabled and feeder.status.ring_capped, 3.0), feeder.status

    started = feeder.ok('start_episode')
    assert started['frames_from_ring'] == held
    live = feeder.run(5)
    saved = feeder.ok('save_episode')
    assert saved['frames'] == held + 5
    node.trigger_deactivate()
    node.trigger_cleanup()

    rows = load(root).hf_dataset.with_format(None)
    state = np.array(rows['observation.state'], np.float32)
    # The newest pre-press frames, in order, then the live ones.
    for i, k in enumerate(pre[-held:] + live):
        np.testing.assert_array_equal(state[i], expected_row(k)[0])


def test_auto_rotate_loses_no_rows(recorder, tmp_path):
    root = tmp_path / 'ds'
    # A target of a few frames' video: the rotation saves and reopens on the worker.
    node, feeder = recorder(root, auto_rotate=True, target_video_file_size_mb=0.0004)
    bring_up(node, feeder)
    feeder.ok('start_episode')
    sent = feeder.run(45)
    sent += feeder.run(15, intervention=True)  # no rotation inside a correction
    status = node.status()
    node.trigger_shutdown()  # from active: saves the open tail (save_partial_on_stop)
    assert node.state_label == 'finalized', node.last_error

    ds = load(root)
    lengths = list(ds.meta.episodes['length'])
    assert len(lengths) >= 3, lengths
    assert sum(lengths) == len(sent) == ds.meta.total_frames, (lengths, status)
    state = np.array(ds.hf_dataset.with_format(None)['observation.state'], np.float32)
    np.testing.assert_array_equal(state[:, 0], np.array(sent, np.float32))
    # The 15 intervention frames all landed in one episode.
    episode = np.array(ds.hf_dataset.with_format(None)['episode_index'])
    assert len(set(episode[-15:])) == 1


@pytest.mark.parametrize(
    'extra, param',
    [
        (dict(repo_id=''), 'repo_id'),
        (dict(repo_id='tester/no_prefix'), 'repo_id'),
        (dict(camera_shapes=['96by128', '96x128']), 'camera_shapes'),
        (dict(camera_shapes=['96x128']), 'camera_shapes'),
        (dict(camera_topic_template='/camera/image_raw'), 'camera_topic_template'),
        (dict(resume=True), 'root'),
    ],
)
def test_configure_error_names_the_parameter(recorder, tmp_path, extra, param):
    node, _ = recorder(tmp_path / 'ds', **extra)
    node.trigger_configure()
    assert node.state_label == 'unconfigured'
    assert node.last_error.startswith(f'{param}:'), node.last_error
    assert not (tmp_path / 'ds' / 'meta').exists()


def test_sigkill_keeps_saved_episodes(recorder, tmp_path):
    root = tmp_path / 'ds'
    ns = f'/kill_{uuid.uuid4().hex[:8]}'
    args = []
    for k, v in recorder_params(root).items():
        # Parameter values on the command line are YAML: quote strings ({name}).
        value = json.dumps(v) if isinstance(v, (list, str)) else str(v).lower() if isinstance(v, bool) else str(v)
        args += ['-p', f'{k}:={value}']
    proc = subprocess.Popen(
        [sys.executable, '-m', 'rollout_ros.nodes.recorder_node', '--ros-args', '-r', f'__ns:={ns}', *args],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    feeder = Feeder(ns)

    def stderr():
        if proc.poll() is None:
            proc.kill()
        return proc.communicate(timeout=10)[1][-3000:]

    try:
        assert feeder.lifecycle.wait_ready(60.0), 'recorder process offers no lifecycle services'
        assert feeder.lifecycle.change('configure', 60.0), stderr()
        assert feeder.lifecycle.change('activate', 30.0), stderr()
        feeder.wait_connected()
        for n in (12, 15):
            feeder.ok('start_episode')
            feeder.run(n)
            feeder.ok('save_episode')
        feeder.ok('start_episode')
        feeder.run(10)
        assert wait_for(lambda: feeder.status.episode_frames >= 5, 5.0), feeder.status
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        feeder.close()
        err = stderr()
    ds = load(root)
    assert ds.meta.total_episodes == 2 and ds.meta.total_frames == 27, err
    assert list(ds.meta.episodes['length']) == [12, 15]
    assert len(ds) == 27

    # A resume that does not match the dataset is refused before anything is written.
    for extra, param in (
        (dict(fps=15), 'fps'),
        (dict(robot_type='other_arm'), 'robot_type'),
        (dict(camera_shapes=['48x64', f'{H}x{W}']), 'features.observation.images.front'),
    ):
        node, _ = recorder(root, resume=True, **extra)
        node.trigger_configure()
        assert node.state_label == 'unconfigured' and node.last_error.startswith(f'{param}:'), node.last_error
    # What the killed process left is resumed (the writer repairs it) and grows.
    node, feeder = recorder(root, resume=True)
    bring_up(node, feeder)
    assert node.worker.episode_index == 2
    feeder.ok('start_episode')
    feeder.run(5)
    assert feeder.ok('save_episode')['episode_index'] == 2
    node.trigger_deactivate()
    node.trigger_cleanup()
    assert list(load(root).meta.episodes['length']) == [12, 15, 5]


def test_recorder_yaml_matches_declared_parameters(ros):
    from rollout_ros.nodes.recorder_node import RecorderNode

    types = {
        ParameterType.PARAMETER_BOOL: bool,
        ParameterType.PARAMETER_INTEGER: int,
        ParameterType.PARAMETER_DOUBLE: float,
        ParameterType.PARAMETER_STRING: str,
        ParameterType.PARAMETER_STRING_ARRAY: list,
    }
    raw = yaml.safe_load((PKG / 'config' / 'recorder.yaml').read_text())
    values = raw['/**/recorder']['ros__parameters']
    node = RecorderNode()
    try:
        declared = {
            n: node.describe_parameter(n)
            for n in node._parameters
            if n not in ('use_sim_time', 'start_type_description_service')
        }
        assert set(values) == set(declared), set(values) ^ set(declared)
        for name, value in values.items():
            assert declared[name].description, name
            assert isinstance(value, types[declared[name].type]), (name, value)
    finally:
        node.destroy_node()


@pytest.mark.parametrize(
    'frame_id, width, encoding, pad', [('front', 4, 'rgb8', 0), ('', 5, 'bgr8', 3), ('a_longer_name', 3, 'rgb8', 6)]
)
def test_image_from_cdr_bytes_matches_rclpy(frame_id, width, encoding, pad):
    from rclpy.serialization import serialize_message

    from rollout_ros.core.cdr_image import parse_image
    from rollout_ros.nodes.policy_node import image_from_msg

    msg = Image(height=3, width=width, encoding=encoding, step=width * 3 + pad)
    msg.header.frame_id = frame_id
    msg.header.stamp = Time(sec=1_700_000_123, nanosec=456_789)
    msg.data = np.random.default_rng(width).integers(0, 256, 3 * msg.step, np.uint8).tobytes()
    img = parse_image(serialize_message(msg))
    assert img.stamp_ns == 1_700_000_123_000_456_789 and img.header.frame_id == frame_id
    assert (img.height, img.width, img.encoding, img.step) == (3, width, encoding, width * 3 + pad)
    np.testing.assert_array_equal(image_from_msg(img), image_from_msg(msg))
