"""Policy node: loads a LeRobot checkpoint at configure, checks it against the
robot's joints and the configured cameras (by name), and serves one policy
step per call on `~/infer` (rollout_ros_interfaces/srv/InferAction).

Composed in one process with the strategy, the strategy calls `engine`
directly instead and skips serialisation; the service is what lets the policy
run in another process or on another host.
"""

import sys
import json
import threading
import time

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rollout_ros_interfaces.srv import InferAction

from rollout_ros.core.errors import ConfigError
from rollout_ros.hardware.robots import get_robot_spec
from rollout_ros.nodes.managed_node import ManagedNode
from rollout_ros.nodes.spin import run_node
from rollout_ros.policy.loading import PolicyConfigError, check_features, load_policy
from rollout_ros.policy.chunked_engine import ChunkedPolicyEngine
from rollout_ros.policy.sync_engine import SyncPolicyEngine


def parse_rename_map(text: str) -> dict[str, str]:
    text = (text or '').strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError('rename_map', f'not valid JSON ({e}).',
                          'give a JSON object, e.g. {"observation.images.front": '
                          '"observation.images.top"}.') from e
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError('rename_map', 'must be a JSON object of strings.',
                          'e.g. {"observation.images.front": "observation.images.top"}.')
    return value


def image_from_msg(msg) -> np.ndarray:
    if msg.encoding not in ('rgb8', 'bgr8'):
        raise ValueError(f'camera {msg.header.frame_id!r}: encoding {msg.encoding!r} unsupported; '
                         'publish rgb8 or bgr8')
    img = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.step // 3, 3)
    img = img[:, :msg.width]
    return img[..., ::-1] if msg.encoding == 'bgr8' else img


class PolicyNode(ManagedNode):

    def __init__(self, node_name: str = 'policy', **kwargs):
        super().__init__(node_name, **kwargs)
        self.declare('policy_path', '', 'Checkpoint directory, or a Hugging Face Hub id (from the cache).')
        self.declare('policy_revision', '', "Hub revision of policy_path; '' = default branch.")
        self.declare('device', 'cpu', 'Torch device: cpu, cuda, mps or auto.')
        self.declare('robot_type', 'koch_follower', 'Robot type: gives the joint names to check.')
        self.declare('camera_names', ['front'], 'Cameras the strategy provides (observation.images.<name>).')
        self.declare('rename_map', '',
                     'JSON object mapping our image keys to the policy\'s, e.g. '
                     '{"observation.images.front": "observation.images.top"}.')
        self.declare('task', '', 'Default language instruction for policies that take one.',
                     read_only=False)
        self.declare('torch_threads', 0,
                     'Intra-op CPU threads for torch (process-wide); 0 = torch default. On a small '
                     'CPU shared with the loop, 1 avoids waking idle workers every chunk.', min_value=0)
        self.declare('inference_type', 'sync',
                     "sync: one policy call per tick; rtc: a background thread produces action chunks "
                     "(real-time chunking for pi0/pi05/smolvla, blended chunks for ACT/Diffusion).")
        self.declare('queue_threshold', 0,
                     'rtc: start the next inference when this many actions are left; 0 = half a chunk.',
                     min_value=0)
        self.declare('execution_horizon', 0, 'rtc: guided overlap length for RTC policies; 0 = auto.',
                     min_value=0)
        self.declare('max_guidance_weight', 10.0, 'rtc: RTC guidance weight cap.', min_value=0.0)
        self.declare('prefix_attention_schedule', 'LINEAR', 'rtc: LINEAR, EXP, ONES or ZEROS.')
        self.declare('fps', 30.0, 'rtc: control rate the chunks are consumed at [Hz].', min_value=0.1)
        self.engine: SyncPolicyEngine | None = None
        self.chunker: ChunkedPolicyEngine | None = None
        self.loaded = None
        self._srv = None
        self._lock = threading.Lock()

    def configure(self) -> None:
        path = self.param('policy_path')
        if not path:
            raise ConfigError('policy_path', 'is empty.',
                              'set it to a checkpoint directory or a Hub id, e.g. lerobot/act_koch_real.')
        spec = get_robot_spec(self.param('robot_type'))
        if self.param('torch_threads') > 0:
            import torch
            torch.set_num_threads(self.param('torch_threads'))
        try:
            self.loaded = load_policy(path, self.param('device'), self.param('policy_revision') or None)
            binding = check_features(self.loaded, spec.feature_names, list(self.param('camera_names')),
                                     parse_rename_map(self.param('rename_map')))
        except PolicyConfigError as e:
            raise ConfigError('policy_path', str(e)) from e
        self.engine = SyncPolicyEngine(self.loaded, binding, self.param('task'))
        self.warmup_ms = self._warm_up(binding)
        kind = self.param('inference_type')
        if kind not in ('sync', 'rtc'):
            raise ConfigError('inference_type', f'{kind!r} is not a backend.', "use 'sync' or 'rtc'.")
        if kind == 'rtc':
            schedule = self.param('prefix_attention_schedule').upper()
            if schedule not in ('LINEAR', 'EXP', 'ONES', 'ZEROS'):
                raise ConfigError('prefix_attention_schedule', f'{schedule!r} is not a schedule.',
                                  'use LINEAR, EXP, ONES or ZEROS.')
            self.chunker = ChunkedPolicyEngine(
                self.loaded, binding, queue_threshold=self.param('queue_threshold') or None,
                execution_horizon=self.param('execution_horizon') or None,
                max_guidance_weight=self.param('max_guidance_weight'),
                prefix_attention_schedule=schedule, task=self.param('task'), fps=self.param('fps'))
        self.get_logger().info(
            f'loaded {self.loaded.policy_type} from {self.loaded.checkpoint_dir} on {self.loaded.device} '
            f'(first inference {self.warmup_ms[0]:.0f} ms, then {self.warmup_ms[-1]:.0f} ms)')
        self._srv = self.create_service(InferAction, '~/infer', self._on_infer,
                                        callback_group=MutuallyExclusiveCallbackGroup())

    def _warm_up(self, binding, calls: int = 3) -> list[float]:
        """Run full chunk inferences on a blank observation before any real tick.

        The first call of a fresh torch model pays one-off costs (allocator,
        kernel selection) that would otherwise land on the first control tick.
        """
        state = {name: 0.0 for name in binding.state_order}
        images = {cam: np.zeros((h, w, c), np.uint8)
                  for key, cam in binding.image_sources.items()
                  for c, h, w in [binding.image_shapes[key]]}
        times = []
        for _ in range(calls):
            self.engine.reset()
            t0 = time.perf_counter()
            self.engine.infer(state, images, self.param('task'))
            times.append((time.perf_counter() - t0) * 1e3)
        self.engine.reset()
        return times

    def activate(self) -> None:
        self.engine.reset()
        if self.chunker is not None:
            self.chunker.reset()
            self.chunker.start()

    def deactivate(self) -> None:
        if self.chunker is not None:
            self.chunker.stop()

    def cleanup(self) -> None:
        if self.chunker is not None:
            self.chunker.stop()
            self.chunker = None
        if self._srv is not None:
            self.destroy_service(self._srv)
            self._srv = None
        self.engine = None
        self.loaded = None

    def shutdown(self) -> None:
        self.cleanup()

    def infer(self, state: dict[str, float], images: dict[str, np.ndarray], task: str = ''):
        """In-process policy step (what the service does, minus transport).

        With the rtc backend it never waits for the network: the observation
        goes to the background thread and the next queued action comes back,
        or None when the queue ran dry (the loop holds and counts it).
        """
        if self.chunker is not None:
            self.chunker.submit_observation(state, images, task or self.param('task'))
            return self.chunker.next_action()
        with self._lock:
            return self.engine.infer(state, images, task or self.param('task'))

    def chunk_ready(self) -> bool:
        return self.chunker is None or self.chunker.queue.size > 0

    def _on_infer(self, req, resp):
        if self.chunker is not None:
            resp.success = False
            resp.message = ('inference_type rtc serves chunks in-process only (compose the policy with '
                            'the strategy); use inference_type sync for ~/infer')
            return resp
        if self.state_label != 'active' or self.engine is None:
            resp.success = False
            resp.message = f'policy node is {self.state_label}, not active'
            return resp
        t0 = time.perf_counter()
        try:
            state = dict(zip(req.state_names, (float(v) for v in req.state)))
            images = {img.header.frame_id: image_from_msg(img) for img in req.images}
            action = self.infer(state, images, req.task)
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
