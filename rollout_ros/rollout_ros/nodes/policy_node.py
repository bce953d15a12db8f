# SPDX-License-Identifier: Apache-2.0
"""Policy node: loads a LeRobot checkpoint at configure, checks it against the
robot's joints and the configured cameras (by name), and runs it.

* `inference_type: sync`: one policy step per call on `~/infer`
  (rollout_ros_interfaces/srv/InferAction).
* `inference_type: rtc`: a background thread computes action chunks from the
  observations on `~/observation` and publishes each on `~/action_chunk`
  (trajectory_msgs/JointTrajectory); the strategy queues them (protocol:
  `rollout_ros.nodes.chunk_consumer`).

Images. A request or an observation may carry a camera frame in full, or
name it by its capture stamp only (an Image with the header and no data,
frame_id = camera name): the node then takes the frame from its own
subscription to that camera's topic, so a 640x480 frame does not cross
the process boundary twice per tick. The exact stamp is used when that
frame has arrived (or arrives within `frame_stamp_tolerance_s`), else the
nearest one within `frame_stamp_tolerance_s`, else the request fails and
says so.

Composed in one process with the strategy, the strategy calls `infer` /
`submit_observation` directly and skips serialisation.
"""

import json
import sys
import threading
import time

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.time import Time
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from rollout_ros.core.errors import ConfigError
from rollout_ros.core.image_sync import ImageSync
from rollout_ros.core.limits import LIMITS
from rollout_ros.hardware.robots import get_robot_spec
from rollout_ros.nodes.chunk_consumer import CHUNK_TOPIC, OBSERVATION_TOPIC, QOS, RemoteIndex, chunk_message
from rollout_ros.nodes.managed_node import ManagedNode
from rollout_ros.nodes.spin import LinkNode, run_node
from rollout_ros.policy.acceleration import COMPILE_BACKEND, default_torch_threads, is_compile_error
from rollout_ros.policy.chunked_engine import ChunkedPolicyEngine
from rollout_ros.policy.loading import PolicyConfigError, check_features, load_policy
from rollout_ros.policy.sync_engine import ObservationError, SyncPolicyEngine
from rollout_ros_interfaces.msg import RolloutFrame
from rollout_ros_interfaces.srv import InferAction

# Warm-up inferences at configure. With torch.compile the first one compiles
# and the other two are lerobot-rollout's compile_warmup_inferences.
WARMUP_CALLS = 3
# Camera frames kept for stamp lookups [s]; a request naming an older frame fails.
FRAME_HISTORY_S = 1.0


def parse_rename_map(text: str) -> dict[str, str]:
    text = (text or '').strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(
            'rename_map',
            f'not valid JSON ({e}).',
            'give a JSON object, e.g. {"observation.images.front": "observation.images.top"}.',
        ) from e
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(
            'rename_map',
            'must be a JSON object of strings.',
            'e.g. {"observation.images.front": "observation.images.top"}.',
        )
    return value


def image_from_msg(msg) -> np.ndarray:
    if msg.encoding not in ('rgb8', 'bgr8'):
        raise ValueError(f'camera {msg.header.frame_id!r}: encoding {msg.encoding!r} unsupported; publish rgb8 or bgr8')
    img = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.step // 3, 3)
    img = img[:, : msg.width]
    return img[..., ::-1] if msg.encoding == 'bgr8' else img


def image_ref(msg: Image, camera: str) -> Image:
    """The frame named by capture stamp only (no pixels), for a policy node that subscribes to the camera."""
    return Image(header=Header(stamp=msg.header.stamp, frame_id=camera))


def _ns(stamp) -> int:
    return Time.from_msg(stamp).nanoseconds


class CameraFrames:
    """Recent frames of each camera by capture stamp, from the camera topics.

    The subscriptions live on a link node with its own executor thread:
    on the policy node's executor, frames that arrived during an inference
    would be taken one per wake-up, after the next request, which would then
    not find the frame the strategy saw a moment earlier.
    """

    def __init__(self, parent: Node, cameras: list[str], template: str, tolerance_s: float):
        self.topics = {cam: template.format(name=cam) for cam in cameras}
        self.tolerance_s = tolerance_s
        self._sync = ImageSync(
            cameras, tolerance_ns=int(tolerance_s * 1e9), timeout_s=tolerance_s, history_ns=int(FRAME_HISTORY_S * 1e9)
        )
        self._cond = threading.Condition()
        self._released = {}
        # A link node: the policy node's remaps apply to these topics too.
        self._link = LinkNode(parent, 'camera-frames')
        for cam, topic in self.topics.items():
            self._link.node.create_subscription(
                Image, topic, lambda m, c=cam: self._on_image(c, m), qos_profile_sensor_data
            )

    def destroy(self) -> None:
        self._link.destroy()

    def _on_image(self, cam: str, msg: Image) -> None:
        with self._cond:
            self._keep(self._sync.add_image(cam, _ns(msg.header.stamp), msg, time.monotonic()))

    def _keep(self, ticks) -> None:
        for tick in ticks:
            self._released[tick.payload] = tick
        if ticks:
            self._cond.notify_all()

    def at(self, stamps: dict) -> dict[str, np.ndarray]:
        """The frames named by {camera: stamp}; waits (at most the tolerance) for one still on its way."""
        unknown = [cam for cam in stamps if cam not in self.topics]
        if unknown:
            raise ObservationError(
                f'cameras {unknown} named by stamp are not subscribed (subscribed: {sorted(self.topics)})'
            )
        wanted = {cam: _ns(stamp) for cam, stamp in stamps.items()}
        token = object()
        with self._cond:
            self._keep(self._sync.add_tick(token, wanted, max(wanted.values()), time.monotonic()))
            deadline = time.monotonic() + self.tolerance_s
            while token not in self._released:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._keep(self._sync.poll(float('inf')))
                else:
                    self._cond.wait(left)
                    self._keep(self._sync.poll(time.monotonic()))
            tick = self._released.pop(token)
        if tick.missing:
            cam = tick.missing[0]
            raise ObservationError(
                f'camera {cam!r}: no frame stamped {wanted[cam] * 1e-9:.3f} s (or within '
                f'frame_stamp_tolerance_s={self.tolerance_s}) received on {self.topics[cam]}: check that '
                'the policy node subscribes to the topic the strategy reads'
            )
        return {cam: image_from_msg(msg) for cam, (_, msg) in tick.images.items() if cam in stamps}


class PolicyNode(ManagedNode):
    def __init__(self, node_name: str = 'policy', **kwargs):
        super().__init__(node_name, **kwargs)
        self.declare('policy_path', '', 'Checkpoint directory, or a Hugging Face Hub id (from the cache).')
        self.declare('policy_revision', '', "Hub revision of policy_path; '' = default branch.")
        self.declare('device', 'cpu', 'Torch device: cpu, cuda, mps or auto.')
        self.declare('robot_type', 'koch_follower', 'Robot type: gives the joint names to check.')
        self.declare('camera_names', ['front'], 'Cameras the strategy provides (observation.images.<name>).')
        self.declare(
            'camera_topic_template',
            'camera_{name}/image_raw',
            'Image topic per camera ({name} = camera name), subscribed to so that requests and '
            "observations can name frames by stamp only; '' = no subscription (full images only).",
        )
        self.declare(
            'frame_stamp_tolerance_s',
            0.05,
            'A frame named by stamp that has not arrived is awaited this long, then replaced by '
            'the nearest one within this [s]; none = the request fails.',
            min_value=0.0,
        )
        self.declare(
            'rename_map',
            '',
            "JSON object mapping our image keys to the policy's, e.g. "
            '{"observation.images.front": "observation.images.top"}.',
        )
        self.declare('task', '', 'Default language instruction for policies that take one.', read_only=False)
        self.declare(
            'torch_threads',
            0,
            'Intra-op CPU threads for torch (process-wide); 0 = every core for sync inference '
            '(the loop waits for it anyway), every core but one for rtc (the loop keeps a core).',
            **LIMITS['torch_threads'].kwargs(),
        )
        self.declare(
            'use_torch_compile',
            False,
            f'torch.compile the policy ({COMPILE_BACKEND}, mode default; lerobot '
            '--use_torch_compile) and run warm-up inferences at configure, so the loop never '
            'waits on compilation. Configure fails if torch cannot compile here.',
        )
        self.declare(
            'use_amp',
            False,
            'Mixed-precision inference (torch.autocast): float16 on cuda, bfloat16 on cpu; '
            "refused on mps. Off: autocast only on cuda when the checkpoint's use_amp says so "
            '(lerobot --policy.use_amp).',
        )
        self.declare(
            'inference_type',
            'sync',
            'sync: one policy call per tick; rtc: a background thread produces action chunks '
            '(real-time chunking for pi0/pi05/smolvla, blended chunks for ACT/Diffusion).',
        )
        self.declare(
            'queue_threshold',
            0,
            'rtc: start the next inference when this many actions are left; 0 = half a chunk.',
            **LIMITS['queue_threshold'].kwargs(),
        )
        self.declare(
            'execution_horizon',
            0,
            'rtc: guided overlap length for RTC policies; 0 = auto.',
            **LIMITS['execution_horizon'].kwargs(),
        )
        self.declare(
            'max_guidance_weight', 10.0, 'rtc: RTC guidance weight cap.', **LIMITS['max_guidance_weight'].kwargs()
        )
        self.declare('prefix_attention_schedule', 'LINEAR', 'rtc: LINEAR, EXP, ONES or ZEROS.')
        self.declare('fps', 30.0, 'rtc: control rate the chunks are consumed at [Hz].', **LIMITS['fps'].kwargs())
        self.engine: SyncPolicyEngine | None = None
        self.chunker: ChunkedPolicyEngine | None = None
        self.loaded = None
        self.warmup_ms: list[float] = []
        self._frames: CameraFrames | None = None
        self._remote = RemoteIndex()
        self._subs: list = []
        self._srvs: list = []
        self._chunk_pub = None
        self._lock = threading.Lock()

    # Transitions ------------------------------------------------------------
    def configure(self) -> None:
        path = self.param('policy_path')
        if not path:
            raise ConfigError(
                'policy_path', 'is empty.', 'set it to a checkpoint directory or a Hub id, e.g. lerobot/act_koch_real.'
            )
        kind = self.param('inference_type')
        if kind not in ('sync', 'rtc'):
            raise ConfigError('inference_type', f'{kind!r} is not a backend.', "use 'sync' or 'rtc'.")
        schedule = self.param('prefix_attention_schedule').upper()
        if kind == 'rtc' and schedule not in ('LINEAR', 'EXP', 'ONES', 'ZEROS'):
            raise ConfigError(
                'prefix_attention_schedule', f'{schedule!r} is not a schedule.', 'use LINEAR, EXP, ONES or ZEROS.'
            )
        spec = get_robot_spec(self.param('robot_type'))
        import torch

        torch.set_num_threads(self.param('torch_threads') or default_torch_threads(background=kind == 'rtc'))

        try:
            self.loaded = load_policy(
                path,
                self.param('device'),
                self.param('policy_revision') or None,
                use_torch_compile=self.param('use_torch_compile'),
                use_amp=self.param('use_amp'),
            )
            binding = check_features(
                self.loaded,
                spec.feature_names,
                list(self.param('camera_names')),
                parse_rename_map(self.param('rename_map')),
            )
        except PolicyConfigError as e:
            raise ConfigError(e.param, str(e)) from e
        self.engine = SyncPolicyEngine(self.loaded, binding, self.param('task'))
        # camera -> (height, width) the policy takes; a composed strategy checks its cameras against it.
        self.expected_images = {cam: tuple(binding.image_shapes[key][1:]) for key, cam in binding.image_sources.items()}
        if kind == 'rtc':
            self.chunker = ChunkedPolicyEngine(
                self.loaded,
                binding,
                queue_threshold=self.param('queue_threshold') or None,
                execution_horizon=self.param('execution_horizon') or None,
                max_guidance_weight=self.param('max_guidance_weight'),
                prefix_attention_schedule=schedule,
                task=self.param('task'),
                fps=self.param('fps'),
                on_chunk=self._publish_chunk,
            )
        self.warmup_ms = self._warm_up(binding)
        self.get_logger().info(
            f'loaded {self.loaded.policy_type} from {self.loaded.checkpoint_dir} on {self.loaded.device}'
            f'{" (compiled)" if self.loaded.compiled else ""}{" (amp)" if self.loaded.use_amp else ""}: '
            f'first inference {self.warmup_ms[0]:.0f} ms, then {self.warmup_ms[-1]:.0f} ms'
        )
        self._advise_background_chunking(kind)
        if self.param('camera_topic_template'):
            self._frames = CameraFrames(
                self,
                list(binding.image_sources.values()),
                self.param('camera_topic_template'),
                self.param('frame_stamp_tolerance_s'),
            )
        if kind == 'rtc':
            self._chunk_pub = self.create_lifecycle_publisher(JointTrajectory, f'~/{CHUNK_TOPIC}', QOS)
            self._subs.append(
                self.create_subscription(RolloutFrame, f'~/{OBSERVATION_TOPIC}', self._on_observation, QOS)
            )
        self._srvs.append(
            self.create_service(InferAction, '~/infer', self._on_infer, callback_group=MutuallyExclusiveCallbackGroup())
        )
        self._srvs.append(self.create_service(Trigger, '~/reset', self._on_reset))

    def _advise_background_chunking(self, kind: str) -> None:
        """A chunk that takes longer than a tick stalls a sync loop once per
        chunk: the arm stands still that long. Say so, and what avoids it."""
        period_ms = 1e3 / self.param('fps')
        steps = self.loaded.n_action_steps or self.loaded.chunk_size or 1
        if kind == 'sync' and steps > 1 and self.warmup_ms[-1] > period_ms:
            self.get_logger().warning(
                f'a chunk inference takes {self.warmup_ms[-1]:.0f} ms, longer than one tick ({period_ms:.0f} ms '
                f'at {self.param("fps"):g} Hz): with sync inference the arm waits that long every {steps} '
                'ticks. --inference.type=rtc (parameter inference_type: rtc) computes the next chunk in the '
                'background while the current one plays, so the loop never waits.'
            )

    def _warm_up(self, binding) -> list[float]:
        """Full chunk inferences on a blank observation, through the engine the node will use.

        The first call of a fresh torch model pays one-off costs (allocator,
        kernel selection; with torch.compile the compilation) that would
        otherwise land on the first control tick.
        """
        state = {name: 0.0 for name in binding.state_order}
        images = {
            cam: np.zeros((h, w, c), np.uint8)
            for key, cam in binding.image_sources.items()
            for c, h, w in [binding.image_shapes[key]]
        }
        try:
            if self.chunker is not None:
                return self.chunker.warm_up(state, images, WARMUP_CALLS)
            times = []
            for _ in range(WARMUP_CALLS):
                self.engine.reset()
                t0 = time.perf_counter()
                self.engine.infer(state, images, self.param('task'))
                times.append((time.perf_counter() - t0) * 1e3)
            self.engine.reset()
            return times
        except Exception as e:  # noqa: BLE001 - compile failures only show up on the first call
            if self.loaded.compiled and is_compile_error(e):
                # Dynamo wraps what the backend raised (no compiler, a failed build).
                cause = getattr(e, 'inner_exception', None) or e
                lines = str(cause).strip().splitlines()
                raise ConfigError(
                    'use_torch_compile',
                    f'torch.compile ({COMPILE_BACKEND}) cannot compile '
                    f'this policy here: {type(cause).__name__}{": " + lines[0] if lines else ""}.',
                    'set use_torch_compile false (inductor needs a working C++ compiler on cpu).',
                ) from e
            raise

    def activate(self) -> None:
        self.reset()
        self._remote.forget()
        if self.chunker is not None:
            self.chunker.start()

    def deactivate(self) -> None:
        if self.chunker is not None:
            self.chunker.stop()
            self.get_logger().info('chunks: ' + json.dumps(self.chunker.stats()))

    def abort(self) -> None:
        if self.chunker is not None:  # its thread publishes chunks
            self.chunker.stop()

    def cleanup(self) -> None:
        if self.chunker is not None:
            self.chunker.stop()
            self.chunker = None
        for sub in self._subs:
            self.destroy_subscription(sub)
        for srv in self._srvs:
            self.destroy_service(srv)
        self._subs.clear()
        self._srvs.clear()
        if self._chunk_pub is not None:
            self.destroy_lifecycle_publisher(self._chunk_pub)
            self._chunk_pub = None
        if self._frames is not None:
            self._frames.destroy()
            self._frames = None
        self.engine = None
        self.loaded = None

    # In-process calls (composed with the strategy) --------------------------
    def infer(self, state: dict[str, float], images: dict, task: str = ''):
        """One policy step; images by camera name, as arrays or the camera's Image messages.

        With the rtc backend it never waits for the network: the observation
        goes to the background thread and the next queued action comes back,
        or None when the queue ran dry (the loop holds and counts it).
        """
        images = {cam: image_from_msg(v) if isinstance(v, Image) else v for cam, v in images.items()}
        if self.chunker is not None:
            self.chunker.submit_observation(state, images, task or self.param('task'))
            return self.chunker.next_action()
        with self._lock:
            return self.engine.infer(state, images, task or self.param('task'))

    def submit_observation(self, state: dict[str, float], images: dict, task: str = '') -> None:
        """rtc: hand an observation to the background thread without taking an action."""
        images = {cam: image_from_msg(v) if isinstance(v, Image) else v for cam, v in images.items()}
        self.chunker.submit_observation(state, images, task or self.param('task'))

    def chunk_ready(self) -> bool:
        return self.chunker is None or self.chunker.queue.size > 0

    def reset(self) -> None:
        """Drop queued actions and policy state: the next action is planned afresh."""
        if self.engine is not None:
            with self._lock:
                self.engine.reset()
        if self.chunker is not None:
            self.chunker.reset()

    # Images -----------------------------------------------------------------
    def _request_images(self, msgs) -> dict[str, np.ndarray]:
        """Full frames decoded; stamp-only ones looked up in the camera subscriptions."""
        images = {m.header.frame_id: image_from_msg(m) for m in msgs if len(m.data)}
        named = {m.header.frame_id: m.header.stamp for m in msgs if not len(m.data)}
        images.update(self._frames_at(named))
        return images

    def _frames_at(self, stamps: dict) -> dict[str, np.ndarray]:
        if not stamps:
            return {}
        if self._frames is None:
            raise ObservationError(
                f'cameras {sorted(stamps)} are named by stamp only, but camera_topic_template is empty '
                '(no camera subscriptions): send full images, or set camera_topic_template'
            )
        return self._frames.at(stamps)

    # Topic backend (rtc) ----------------------------------------------------
    def _on_observation(self, msg: RolloutFrame) -> None:
        chunker = self.chunker
        if chunker is None or self.state_label != 'active':
            return
        try:
            index = int(msg.header.frame_id)
        except ValueError:
            self.get_logger().error(
                f'observation frame_id {msg.header.frame_id!r} is not an action index', throttle_duration_sec=2.0
            )
            return
        local, new_session = self._remote.local(index, chunker.queue.consumed)
        if new_session:
            chunker.reset()
        # Counted before the frames are looked up: the remote loop executed
        # its actions whether or not this observation is usable.
        chunker.advance_to(local)
        try:
            images = self._frames_at(dict(zip(msg.camera_names, msg.camera_stamps)))
            chunker.submit_observation(
                dict(zip(msg.state_names, msg.state)),
                images,
                msg.task or self.param('task'),
                tag=(msg.header.stamp, index, local),
            )
        except ObservationError as e:
            self.get_logger().error(f'observation skipped: {e}', throttle_duration_sec=2.0)

    def _publish_chunk(self, chunk: np.ndarray, first: int, tag) -> None:
        if tag is None or self._chunk_pub is None:
            return  # an in-process observation: the queue here is the one executed
        stamp, index, local = tag
        fps = self.param('fps')
        # points[0] is normally the observation's own action; if the engine
        # started from a later one, its stamp moves on by whole steps.
        stamp_ns = _ns(stamp) + int(round((first - local) * 1e9 / fps))
        self._chunk_pub.publish(
            chunk_message(
                self.chunker.binding.action_order,
                chunk,
                index + first - local,
                Time(nanoseconds=stamp_ns).to_msg(),
                fps,
                self.chunker.mode,
                self.chunker.queue.blend_steps,
            )
        )

    # Services ---------------------------------------------------------------
    def _on_reset(self, req, resp):
        self.reset()
        resp.success = True
        return resp

    def _on_infer(self, req, resp):
        if self.chunker is not None:
            resp.success = False
            resp.message = (
                f'inference_type rtc publishes chunks on {self.get_fully_qualified_name()}/'
                f'{CHUNK_TOPIC} from observations on {OBSERVATION_TOPIC} (strategy '
                'policy_transport topic); use inference_type sync for ~/infer'
            )
            return resp
        if self.state_label != 'active' or self.engine is None:
            resp.success = False
            resp.message = f'policy node is {self.state_label}, not active'
            return resp
        t0 = time.perf_counter()
        try:
            state = dict(zip(req.state_names, (float(v) for v in req.state)))
            action = self.infer(state, self._request_images(req.images), req.task)
        except Exception as e:  # noqa: BLE001 - a bad request must not kill the service
            resp.success = False
            resp.message = f'{type(e).__name__}: {e}'
            return resp
        resp.success = True
        resp.action_names = list(action)
        resp.action = [float(v) for v in action.values()]
        resp.compute_ms = (time.perf_counter() - t0) * 1e3
        resp.ran_model = bool(self.engine.last_timing.ran_model)
        return resp


def main(args=None):
    return run_node(PolicyNode, args)


if __name__ == '__main__':
    sys.exit(main())
