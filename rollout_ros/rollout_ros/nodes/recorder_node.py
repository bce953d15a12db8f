# SPDX-License-Identifier: Apache-2.0
"""Recorder node: writes the strategy's recorded ticks (`RolloutFrame`) and
the camera frames they used into a LeRobot v3 dataset, one row per tick.

Three threads, so nothing waits on something it blocks:
- a link node on its own executor takes the camera images, the ticks
  and the bagged topics, and pairs ticks with images (core.image_sync);
- a worker thread (dataset/recorder_worker) does every write, save and ring-buffer
  drain, in the order ticks and commands arrived;
- this node's executor serves the lifecycle, the Trigger services (async: a
  save in progress does not stop the status or a lifecycle query) and the
  once-per-second status.

Services (std_srvs/Trigger; the reply message is JSON on success):
  ~/start_episode   open an episode (a ring buffer's frames first)
  ~/save_episode    replies once the episode is durable: {episode_index, frames, ...}
  ~/discard_episode drop the open episode
  ~/push            queue an upload (push_to_hub)
Topics: `frames_topic` and the camera topics in; `~/status`
(rollout_ros_interfaces/RecorderStatus) and `/diagnostics` out, once per second.
"""

import importlib
import json
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from huggingface_hub import constants as hub_constants
from huggingface_hub import get_token
from lerobot.utils.constants import HF_LEROBOT_HOME
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.task import Future as RosFuture
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from rollout_ros.core.cdr_image import parse_image
from rollout_ros.core.errors import ConfigError
from rollout_ros.core.image_sync import ImageSync
from rollout_ros.core.limits import LIMITS
from rollout_ros.dataset.bags import BagWriter
from rollout_ros.dataset.features import make_features
from rollout_ros.dataset.hub import HubUploader, check_repo_id, stamp_repo_id
from rollout_ros.dataset.recorder_worker import Command, RecorderError, RecorderWorker, RowBuilder
from rollout_ros.dataset.ring_buffer import FrameRingBuffer
from rollout_ros.dataset.rotation import EpisodeRotation
from rollout_ros.dataset.writer import DatasetWriter
from rollout_ros.hardware.robots import get_robot_spec
from rollout_ros.nodes.managed_node import ManagedNode
from rollout_ros.nodes.policy_node import image_from_msg
from rollout_ros.nodes.spin import LinkNode, run_node
from rollout_ros_interfaces.msg import RecorderStatus, RolloutFrame

SERVICES = ('start_episode', 'save_episode', 'discard_episode', 'push')
# How long images are kept, beyond image_timeout_s, for ticks that have not
# arrived yet: a tick names frames up to the strategy's max_frame_age_s
# (0.5 s) before it, and is published a tick or two after that.
IMAGE_HISTORY_S = 1.5


def stamp_ns(t) -> int:
    return t.sec * 1_000_000_000 + t.nanosec


def parse_camera_shapes(names: list[str], shapes: list[str]) -> dict[str, tuple[int, int]]:
    if len(shapes) != len(names):
        raise ConfigError(
            'camera_shapes',
            f'{len(shapes)} shapes for {len(names)} cameras {names}.',
            "give one 'HxW' per camera_names entry, e.g. ['480x640'].",
        )
    out = {}
    for name, text in zip(names, shapes):
        try:
            h, w = (int(v) for v in text.lower().split('x'))
        except ValueError:
            h = w = 0
        if h <= 0 or w <= 0:
            raise ConfigError(
                'camera_shapes',
                f'{text!r} (camera {name!r}) is not HEIGHTxWIDTH.',
                "e.g. '480x640' for a 640x480 image.",
            )
        out[name] = (h, w)
    return out


def message_class(type_name: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class."""
    package, _, name = type_name.split('/')
    return getattr(importlib.import_module(f'{package}.msg'), name)


class RecorderNode(ManagedNode):
    def __init__(self, node_name: str = 'recorder', **kwargs):
        super().__init__(node_name, **kwargs)
        d = self.declare
        strings = Parameter.Type.STRING_ARRAY  # list params whose default is empty
        d('repo_id', '', 'Dataset id <user>/rollout_<name> (required; LeRobot wants the rollout_ prefix).')
        d('stamp_repo_id', True, 'Append _YYYYmmdd_HHMMSS to repo_id (LeRobot does); never when resuming.')
        d('root', '', "Dataset folder; '' = $HF_LEROBOT_HOME/<repo_id> (after the stamp).")
        d('resume', False, 'Append to the dataset at root (checked: robot type, fps, features).')
        d(
            'fps',
            30,
            "Dataset rate [Hz], an integer as LeRobot stores it: one row per tick, so the strategy's fps.",
            **LIMITS['recorder_fps'].kwargs(),
        )
        d('robot_type', 'koch_follower', 'Robot type stored in the dataset; gives the default joint names.')
        d(
            'state_names',
            strings,
            "observation.state names in dataset order; empty = the robot's "
            'joints + .pos (bimanual: left_/right_ prefixes).',
        )
        d('action_names', strings, 'action names in dataset order; empty = as state_names.')
        d('camera_names', ['front'], 'Cameras recorded as observation.images.<name>.')
        d(
            'camera_shapes',
            ['480x640'],
            "Image size per camera, 'HEIGHTxWIDTH', in camera_names order "
            '(the dataset is created before the first frame).',
        )
        d(
            'camera_topic_template',
            'camera_{name}/image_raw',
            'Image topic per camera; {name} is replaced by the camera name.',
        )
        d('frames_topic', 'frames', "RolloutFrame topic (the strategy's ~/frames).")
        d('intervention', False, 'Add the intervention feature (bool per frame, dagger corrections).')
        d(
            'record_stamps',
            True,
            'Add executed.action and the unix stamps (observation, action sent, '
            'each camera capture) as extra features; false = LeRobot features only.',
        )
        d(
            'default_task',
            'rollout',
            'Task of ticks that carry none (policies without language input); LeRobot needs a non-empty task.',
        )
        d(
            'image_timeout_s',
            1.0,
            'How late data may be: a tick waits this long for its camera frames '
            '(else it is not recorded and is counted as missing), and a start/save request this long '
            'for ticks stamped before it [s].',
            min_value=0.01,
        )
        d('vcodec', 'libsvtav1', "Video codec (libsvtav1, h264, hevc, ...; 'auto' probes hardware encoders).")
        d('data_files_size_in_mb', 100, 'Data parquet file size cap [MB].', min_value=1)
        d('video_files_size_in_mb', 200, 'Video file size cap [MB].', min_value=1)
        d(
            'encoder_queue_size',
            60,
            'Frames queued per camera encoder before add_frame waits (backpressure, never a dropped video frame).',
            min_value=1,
        )
        d(
            'max_backlog_s',
            10.0,
            'Ticks queued for the writer, in seconds of recording; beyond, ticks '
            'are dropped and counted (the disk or encoder cannot keep up) [s].',
            min_value=0.1,
        )
        d(
            'ring_buffer_seconds',
            0.0,
            'Keep this many seconds before start_episode in memory and put them '
            'into the episode (highlight); 0 = off [s].',
            **LIMITS['ring_buffer_seconds'].kwargs(),
        )
        d(
            'ring_buffer_max_memory_mb',
            1024.0,
            'Memory cap of the ring buffer (JPEG frames) [MB]; a cap that shortens the window is reported.',
            **LIMITS['ring_buffer_max_memory_mb'].kwargs(),
        )
        d(
            'auto_rotate',
            False,
            'Save the open episode and start the next when its video reaches '
            'target_video_file_size_mb (sentry); deferred during interventions.',
        )
        d(
            'target_video_file_size_mb',
            0.0,
            'Rotation target [MB]; 0 = LeRobot default (200).',
            **LIMITS['target_video_file_size_mb'].kwargs(),
        )
        d('save_partial_on_stop', True, 'At cleanup/shutdown save the open episode; false = discard it.')
        d('push_to_hub', False, 'Upload to the Hugging Face Hub in the background (needs a login).')
        d('private', False, 'Create the Hub repo private.')
        d('tags', strings, 'Hub dataset tags.')
        d(
            'upload_every_n_episodes',
            5,
            'Push after this many saved episodes (push_to_hub).',
            **LIMITS['upload_every_n_episodes'].kwargs(),
        )
        d(
            'push_timeout_s',
            60.0,
            'How long cleanup waits for the final push, retries included [s]; the '
            'data stays local either way, and what was not uploaded is pushed by the next run that resumes the '
            'dataset, or by `rollout_dataset push <root> --repo_id <id>`. A failed or unfinished push is this '
            "node's error (exit code, the rollout's summary). Keep it below the strategy's transition_timeout_s.",
            **LIMITS['push_timeout_s'].kwargs(),
        )
        d('bag_path', '', "Also write a rosbag2 (MCAP) of bag_topics under this folder; '' = off.")
        d('bag_topics', strings, 'Topics written to the bag (types found in the graph).')

        self.writer = None
        self.upload_result: dict = {}  # the last close's upload outcome (push_to_hub)
        self.worker: RecorderWorker | None = None
        self.sync: ImageSync | None = None
        self.bag = None
        self.repo_id = ''
        self.frames_received = 0
        self.images_received: dict[str, int] = {}
        self.bag_messages = 0
        self._sync_lock = threading.Lock()
        self._frame_sub = None
        self._input_subs = []
        self._poll_timer = None
        self._bag_pending: list[str] = []
        self._bag_subs = {}
        self._bag_added: set[str] = set()
        self._last_counts: dict[str, int] = {}
        self._status_pub = self.create_publisher(RecorderStatus, '~/status', 10)
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._status_timer = self.create_timer(1.0, self._publish_status)
        for name in SERVICES:
            self.create_service(Trigger, f'~/{name}', self._trigger_handler(name))
        # Subscriptions live on a link node with its own executor: a
        # transition or a save waiting here never holds back the images and
        # ticks that the worker is waiting for (same pattern as the strategy).
        self._link_owner = LinkNode(self, 'recorder-link')
        self._link = self._link_owner.node

    # Parameters -------------------------------------------------------------
    def _strings(self, name: str) -> list[str]:
        value = self.get_parameter_or(name, None)
        return [v for v in (value.value if value is not None and value.value is not None else []) if v]

    def _repo_and_root(self) -> tuple[str, Path]:
        repo_id = self.param('repo_id').strip()
        if not repo_id:
            raise ConfigError('repo_id', 'is required.', 'e.g. -p repo_id:=<user>/rollout_<name>.')
        try:
            check_repo_id(repo_id)
        except ConfigError as e:
            raise ConfigError('repo_id', e.problem, e.fix) from None
        if self.param('stamp_repo_id') and not self.param('resume'):
            repo_id = stamp_repo_id(repo_id)
        if self.param('root'):
            return repo_id, Path(self.param('root')).expanduser()
        return repo_id, HF_LEROBOT_HOME / repo_id

    def _names(self) -> tuple[list[str], list[str]]:
        state = self._strings('state_names')
        if not state:
            state = get_robot_spec(self.param('robot_type')).feature_names
        return state, self._strings('action_names') or list(state)

    def _cameras(self) -> dict[str, tuple[int, int]]:
        names = [n for n in self.param('camera_names') if n]
        if len(set(names)) != len(names):
            raise ConfigError('camera_names', f'{names} has duplicates.', 'name each camera once.')
        template = self.param('camera_topic_template')
        if len(names) > 1 and '{name}' not in template:
            raise ConfigError(
                'camera_topic_template',
                f'{template!r} lacks {{name}}, so all {len(names)} cameras would read one topic.',
                'e.g. /camera_{name}/image_raw.',
            )
        return parse_camera_shapes(names, [s for s in self.param('camera_shapes') if s])

    # Transitions --------------------------------------------------------------
    def configure(self) -> None:
        fps = self.param('fps')
        repo_id, root = self._repo_and_root()
        state_names, action_names = self._names()
        cameras = self._cameras()
        features = make_features(
            state_names,
            action_names,
            cameras,
            intervention=self.param('intervention'),
            timing=self.param('record_stamps'),
        )
        if not self.param('default_task').strip():
            raise ConfigError(
                'default_task', 'is empty; LeRobot stores a task with every frame.', "e.g. default_task:='rollout'."
            )
        hub = self._make_hub(repo_id, root)
        ring = None
        if self.param('ring_buffer_seconds') > 0:
            ring = FrameRingBuffer(self.param('ring_buffer_seconds'), fps, self.param('ring_buffer_max_memory_mb'))
        rotation = None
        if self.param('auto_rotate'):
            rotation = EpisodeRotation(self.param('target_video_file_size_mb'), fps, cameras)
        self.writer = self._open_dataset(root, repo_id, fps, features)
        self.repo_id = repo_id
        self.worker = RecorderWorker(
            self.writer,
            RowBuilder(features, image_from_msg),
            fps,
            default_task=self.param('default_task'),
            ring=ring,
            rotation=rotation,
            hub=hub,
            upload_every=self.param('upload_every_n_episodes'),
            max_backlog=int(self.param('max_backlog_s') * fps),
            log=self.get_logger(),
            on_failure=self._on_writer_failure,
        )
        self.sync = ImageSync(
            cameras,
            tolerance_ns=int(0.5e9 / fps),
            timeout_s=self.param('image_timeout_s'),
            history_ns=int((IMAGE_HISTORY_S + self.param('image_timeout_s')) * 1e9),
        )
        self.images_received = dict.fromkeys(cameras, 0)
        self._open_bag(repo_id)
        self.get_logger().info(
            f'{"resumed" if self.param("resume") else "created"} {repo_id} at {root} '
            f'({self.writer.num_episodes} episodes, codec {self.writer.codec})'
        )

    def _open_dataset(self, root: Path, repo_id: str, fps: int, features: dict) -> DatasetWriter:
        resume = self.param('resume')
        try:
            if resume:
                return DatasetWriter.resume(
                    root,
                    fps=fps,
                    robot_type=self.param('robot_type'),
                    features=features,
                    repo_id=repo_id,
                    encoder_queue_size=self.param('encoder_queue_size'),
                )
            return DatasetWriter.create(
                root,
                repo_id,
                fps,
                self.param('robot_type'),
                features,
                vcodec=self.param('vcodec'),
                data_files_size_in_mb=self.param('data_files_size_in_mb'),
                video_files_size_in_mb=self.param('video_files_size_in_mb'),
                encoder_queue_size=self.param('encoder_queue_size'),
            )
        except OSError as e:
            # A root that is a file, read-only, on a full disk: the OS's reason, named.
            raise ConfigError(
                'root',
                f'{root}: {e.strerror or e} ({type(e).__name__}).',
                'give root a folder path you can write to (a new one, or the dataset to continue with resume:=true).',
            ) from None
        except ConfigError as e:
            if e.param != 'root':
                raise
            # The writer's fix names its Python API; here the fix is a parameter.
            raise ConfigError(
                'root',
                e.problem,
                'point root at the dataset to continue, or set resume:=false.'
                if resume
                else 'pick a new root, or set resume:=true to add episodes.',
            ) from None

    def _make_hub(self, repo_id: str, root: Path):
        if not self.param('push_to_hub'):
            return None
        if hub_constants.HF_HUB_OFFLINE:  # read now: the environment may change after import
            raise ConfigError(
                'push_to_hub',
                'HF_HUB_OFFLINE is set, so no upload can succeed.',
                'unset HF_HUB_OFFLINE, or set push_to_hub:=false.',
            )
        if not get_token():
            raise ConfigError(
                'push_to_hub',
                'no Hugging Face token (not logged in, no HF_TOKEN).',
                'run `hf auth login` or set HF_TOKEN, or set push_to_hub:=false.',
            )
        return HubUploader(root, repo_id, private=self.param('private'), tags=self._strings('tags'))

    def _on_writer_failure(self, text: str) -> None:
        """Worker thread: the dataset cannot be written (disk full, I/O error).
        Leaving `active` tells a supervising strategy to stop the run (it
        holds the arm and exits non-zero) rather than run on recording nothing."""
        self.last_error = f'recording stopped: {text}'
        if self.state_label == 'active':
            threading.Thread(target=self.trigger_deactivate, name='recorder-failed', daemon=True).start()

    def _open_bag(self, repo_id: str) -> None:
        if not self.param('bag_path'):
            return
        topics = self._strings('bag_topics')
        if not topics:
            raise ConfigError(
                'bag_topics', 'is empty but bag_path is set.', "name the topics to bag, or set bag_path:=''."
            )
        name = repo_id.rpartition('/')[2]
        path = Path(self.param('bag_path')).expanduser() / f'{name}_{datetime.now():%Y%m%d_%H%M%S}'
        if path.exists():
            raise ConfigError('bag_path', f'{path} exists.', 'wait a second or pick another bag_path.')
        path.parent.mkdir(parents=True, exist_ok=True)
        self.bag = BagWriter(path)
        self._bag_pending = [self.resolve_topic_name(t) for t in topics]

    def activate(self) -> None:
        link = self._link
        # Ticks must not be lost in the middle of an episode: reliable, and
        # deep enough for a burst while the link thread decodes images.
        self._frame_sub = link.create_subscription(
            RolloutFrame,
            self.resolve_topic_name(self.param('frames_topic')),
            self._on_frame,
            QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE),
        )
        template = self.param('camera_topic_template')
        # Best effort like the cameras, but a second of history instead of
        # sensor-data's 5: while a save or an encoder holds the GIL the link
        # thread falls behind, and a frame dropped here is a tick lost.
        image_qos = QoSProfile(depth=max(10, 2 * self.param('fps')), reliability=ReliabilityPolicy.BEST_EFFORT)
        for cam in self.sync.cameras:
            self._input_subs.append(
                link.create_subscription(
                    Image,
                    self.resolve_topic_name(template.format(name=cam)),
                    lambda raw, c=cam: self._on_image(c, raw),
                    image_qos,
                    raw=True,
                )
            )
        self._poll_timer = link.create_timer(0.05, self._poll_sync)
        self._subscribe_bag_topics()

    def deactivate(self) -> None:
        self._stop_inputs()

    def cleanup(self) -> None:
        self._stop_inputs()
        worker, self.worker = self.worker, None
        try:
            if worker is not None:
                summary = worker.put_command(
                    Command(
                        'close',
                        {
                            'save_partial': self.param('save_partial_on_stop'),
                            'push_timeout_s': self.param('push_timeout_s'),
                        },
                    )
                ).result()
                self.get_logger().info('recorder closed: ' + json.dumps(summary))
                self.upload_result = summary.get('upload', {})
                if self.upload_result.get('error'):
                    # Reported as this node's error: a launched recorder exits
                    # non-zero, a composed run puts it in its summary and exit code.
                    self.last_error = self.upload_result['error']
            elif self.writer is not None:
                self.writer.finalize()
        finally:
            self.writer = None
            self.sync = None
            if self.bag is not None:
                self.bag.close()
                self.bag = None
            self._bag_pending = []
            self._bag_added = set()

    def _stop_inputs(self) -> None:
        """Ticks already received still get their images (for image_timeout_s)
        and are written; then the inputs close."""
        link = self._link
        if self._frame_sub is not None:
            link.destroy_subscription(self._frame_sub)
            self._frame_sub = None
            deadline = time.monotonic() + self.param('image_timeout_s')
            while self.sync is not None and len(self.sync) and time.monotonic() < deadline:
                time.sleep(0.01)
        for sub in self._input_subs + list(self._bag_subs.values()):
            link.destroy_subscription(sub)
        self._input_subs = []
        if self._bag_subs:
            self._bag_pending = list(self._bag_subs)
            self._bag_subs = {}
        if self._poll_timer is not None:
            link.destroy_timer(self._poll_timer)
            self._poll_timer = None
        if self.sync is not None:
            with self._sync_lock:
                self._forward(self.sync.flush())

    # Data path (link thread) ---------------------------------------------------
    def _forward(self, released) -> None:
        """Called with _sync_lock held, so the worker gets ticks and commands in order."""
        worker = self.worker
        if worker is None:
            return
        for tick in released:
            if isinstance(tick.payload, Command):
                worker.put_command(tick.payload)
            else:
                worker.put_tick(tick)

    def _on_frame(self, msg: RolloutFrame) -> None:
        self.frames_received += 1
        stamps = {name: stamp_ns(t) for name, t in zip(msg.camera_names, msg.camera_stamps)}
        with self._sync_lock:
            if self.sync is not None:
                self._forward(self.sync.add_tick(msg, stamps, stamp_ns(msg.header.stamp), time.monotonic()))

    def _on_image(self, cam: str, raw: bytes) -> None:
        self.images_received[cam] += 1
        img = parse_image(raw)
        with self._sync_lock:
            if self.sync is not None:
                self._forward(self.sync.add_image(cam, img.stamp_ns, img, time.monotonic()))

    def _poll_sync(self) -> None:
        with self._sync_lock:
            if self.sync is not None and len(self.sync):
                self._forward(self.sync.poll(time.monotonic()))

    # Bag ----------------------------------------------------------------------
    def _subscribe_bag_topics(self) -> None:
        """Topics are bagged once a publisher shows their type; until then
        they are retried every status tick and listed as waiting."""
        if self.bag is None or not self._bag_pending or self._poll_timer is None:
            return
        types = dict(self.get_topic_names_and_types())
        for topic in list(self._bag_pending):
            if not types.get(topic):
                continue
            type_name = types[topic][0]
            pubs = self.get_publishers_info_by_topic(topic)
            reliable = bool(pubs) and all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in pubs)
            qos = QoSProfile(
                depth=100, reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
            )
            if topic not in self._bag_added:  # re-activation: the bag has it already
                self.bag.add_topic(topic, type_name, qos='reliable' if reliable else 'sensor_data')
                self._bag_added.add(topic)
            self._bag_subs[topic] = self._link.create_subscription(
                message_class(type_name), topic, lambda data, t=topic: self._on_bag(t, data), qos, raw=True
            )
            self._bag_pending.remove(topic)

    def _on_bag(self, topic: str, data: bytes) -> None:
        bag = self.bag
        if bag is not None:
            bag.write(topic, self.get_clock().now().nanoseconds, data)
            self.bag_messages += 1

    # Services -----------------------------------------------------------------
    def _command(self, name: str):
        if self.worker is None or self.sync is None:
            raise RecorderError(f'the recorder is {self.state_label}; configure it first')
        if self.worker.failed:
            raise RecorderError(f'the recording stopped: {self.worker.failed}')
        if self._poll_timer is None:
            # Inputs are closed: a marker would never be released to the worker.
            raise RecorderError(f'the recorder is {self.state_label}; activate it first')
        cmd = Command(name.removesuffix('_episode'))
        # Through the image sync, in stamp order with the ticks: an episode
        # holds the ticks stamped between its start and save requests.
        with self._sync_lock:
            self._forward(
                self.sync.add_marker(
                    cmd, self.get_clock().now().nanoseconds, time.monotonic(), self.param('image_timeout_s')
                )
            )
        return cmd.future

    def _trigger_handler(self, name: str):
        async def handle(request, response):
            try:
                done = self._command(name)
                waiter = RosFuture(executor=self.executor)
                # A no-op done callback: completing the future then wakes this
                # executor, which resumes the handler.
                waiter.add_done_callback(lambda _f: None)
                done.add_done_callback(waiter.set_result)
                result = (await waiter).result()
                response.success, response.message = True, json.dumps(result)
            except RecorderError as e:
                response.success, response.message = False, str(e)
            except Exception as e:  # noqa: BLE001 - a failed save is an answer, not a crash
                response.success, response.message = False, f'{type(e).__name__}: {e}'
                self.get_logger().error(f'{name} failed: {response.message}')
            return response

        return handle

    # Status -------------------------------------------------------------------
    def status(self) -> dict:
        s = {
            'state': self.state_label,
            'repo_id': self.repo_id,
            'root': str(self.writer.root) if self.writer is not None else '',
            'frames_received': self.frames_received,
            'images_received': dict(self.images_received),
            'last_error': self.last_error,
        }
        sync = self.sync
        if sync is not None:
            s.update(
                ticks_waiting_for_images=len(sync),
                nearest_image_matches=sync.nearest_matches,
                unstamped_ticks=sync.unstamped,
            )
        worker = self.worker
        if worker is not None:
            s.update(worker.status())
        if self.bag is not None:
            s['bag'] = {
                'path': str(self.bag.path),
                'topics': sorted(self._bag_subs),
                'waiting_for': list(self._bag_pending),
                'messages': self.bag_messages,
            }
        return s

    def _publish_status(self) -> None:
        self._subscribe_bag_topics()
        s = self.status()
        msg = status_message(s)
        msg.header.stamp = self.get_clock().now().to_msg()
        self._status_pub.publish(msg)
        level, message = self._health(s)
        values = [KeyValue(key=k, value=v if isinstance(v, str) else json.dumps(v)) for k, v in _flat(s)]
        msg = DiagnosticArray(
            status=[
                DiagnosticStatus(
                    level=level,
                    name=f'{self.get_fully_qualified_name()}: recorder',
                    hardware_id=s['root'],
                    message=message,
                    values=values,
                )
            ]
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)

    def _health(self, s: dict) -> tuple[bytes, str]:
        """WARN while ticks are being lost (in the last second), ERROR while
        writes or uploads fail; the counters in the values say how many."""
        if 'recording' not in s:
            return DiagnosticStatus.OK, s['state'] + (f': {s["last_error"]}' if s['last_error'] else '')
        what = (
            f'recording episode {s["episode_index"]} ({s["episode_frames"]} frames)'
            if s['recording']
            else f'ring buffer {s["ring"]["seconds"]:.1f} s'
            if 'ring' in s
            else 'idle'
        )
        what += f'; {s["total_episodes"]} episodes saved'
        counts = {k: s[k] for k in ('missing_image_frames', 'bad_frames', 'dropped_backlog', 'write_errors')}
        grew = [k for k, v in counts.items() if v > self._last_counts.get(k, 0)]
        self._last_counts = counts
        if 'write_errors' in grew or s.get('upload', {}).get('state') == 'failed':
            return DiagnosticStatus.ERROR, f'{what}; {s["last_problem"] or s["upload"]["last_error"]}'
        if grew:
            return DiagnosticStatus.WARN, f'{what}; {s["last_problem"]}'
        if s.get('ring', {}).get('capped'):
            return DiagnosticStatus.WARN, f'{what}; ring buffer window shortened by its memory cap'
        return DiagnosticStatus.OK, what

    def destroy_node(self) -> None:
        if hasattr(self, '_link_owner'):  # absent when a parameter was refused in __init__
            self._link_owner.destroy()
        super().destroy_node()


def _flat(d: dict, prefix: str = ''):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _flat(v, f'{prefix}{k}.')
        else:
            yield f'{prefix}{k}', v


# RecorderStatus fields filled one to one from the status dict's keys.
_STATUS_FIELDS = (
    'state',
    'repo_id',
    'root',
    'last_error',
    'last_problem',
    'frames_received',
    'ticks_waiting_for_images',
    'nearest_image_matches',
    'unstamped_ticks',
    'recording',
    'episode_index',
    'episode_frames',
    'episode_missing_image_frames',
    'total_episodes',
    'total_frames',
    'session_episodes',
    'missing_image_frames',
    'bad_frames',
    'idle_frames',
    'dropped_backlog',
    'write_errors',
    'ring_frames_not_saved',
    'executed_action_unknown',
    'backlog',
    'add_frame_max_ms',
    'rotations',
)


def status_message(s: dict) -> RecorderStatus:
    """The status dict (recorder and worker figures) as a RecorderStatus."""
    msg = RecorderStatus()
    for name in _STATUS_FIELDS:
        if name in s:
            current = getattr(msg, name)
            setattr(msg, name, type(current)(s[name]))
    images = s.get('images_received') or {}
    msg.camera_names = list(images)
    msg.images_received = [int(v) for v in images.values()]
    backpressure = s.get('encoder_backpressure') or {}
    msg.encoder_backpressure_waits = int(backpressure.get('waits', 0))
    msg.encoder_backpressure_s = float(backpressure.get('s', 0.0))
    rotation = s.get('rotation') or {}
    msg.rotation_target_mb = float(rotation.get('target_mb', 0.0))
    msg.rotation_expected_episode_s = float(rotation.get('expected_episode_s', 0.0))
    last = s.get('last_save') or {}
    msg.last_save_index = int(last.get('episode_index', -1))
    msg.last_save_frames = int(last.get('frames', 0))
    msg.last_save_reason = str(last.get('reason', ''))
    msg.last_save_seconds = float(last.get('seconds', 0.0))
    msg.last_save_ms = float(last.get('save_ms', 0.0))
    ring = s.get('ring')
    msg.ring_enabled = ring is not None
    if ring is not None:
        msg.ring_frames, msg.ring_seconds = int(ring['frames']), float(ring['seconds'])
        msg.ring_max_seconds, msg.ring_mb, msg.ring_capped = (
            float(ring['max_seconds']),
            float(ring['mb']),
            bool(ring['capped']),
        )
    upload = s.get('upload') or {}
    msg.upload_state = str(upload.get('state', ''))
    msg.upload_pushes_done = int(upload.get('pushes_done', 0))
    msg.upload_failures = int(upload.get('failures', 0))
    msg.upload_last_error = str(upload.get('last_error') or '')
    bag = s.get('bag') or {}
    msg.bag_path = str(bag.get('path', ''))
    msg.bag_topics = list(bag.get('topics', []))
    msg.bag_waiting_for = list(bag.get('waiting_for', []))
    msg.bag_messages = int(bag.get('messages', 0))
    return msg


def main(args=None):
    return run_node(RecorderNode, args)


if __name__ == '__main__':
    sys.exit(main())
