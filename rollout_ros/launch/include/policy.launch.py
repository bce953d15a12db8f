"""Policy: one lifecycle node (`policy`) that loads a LeRobot checkpoint and
serves `policy/infer` (rollout_ros_interfaces/srv/InferAction) in the
namespace; it also reads the camera topics, so requests can name frames by
their stamps instead of carrying them.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # launch files are not a package
from rollout_launch import (CAMERA_NAME, CAMERA_TOPIC, FPS, ROBOT, TASK, Arg, camera_names,  # noqa: E402
                            camera_topic, component, lifecycle_node)

ARGS = [
    Arg('policy_path', '', 'Checkpoint directory or Hub id, from the local cache (lerobot --policy.path).'),
    Arg('device', 'cpu', 'Torch device: cpu, cuda, mps or auto (lerobot --policy.device).'),
    Arg('inference_type', 'sync', 'sync: one policy call per tick over policy/infer; rtc: the policy node '
        'computes action chunks on a background thread and streams them to the strategy (lerobot '
        '--inference.type).', ('sync', 'rtc')),
    Arg('torch_threads', '1', 'Torch CPU threads of the policy process; 0 = torch default.'),
    Arg('use_torch_compile', 'false', 'torch.compile the policy, with warm-up inferences at configure '
        '(lerobot --use_torch_compile).'),
    Arg('use_amp', 'false', "Mixed-precision inference; false = only where the checkpoint's use_amp asks for "
        'it on cuda (lerobot --policy.use_amp).'),
    ROBOT[0], CAMERA_NAME, CAMERA_TOPIC, TASK, FPS,
]


def nodes(a):
    return [lifecycle_node(a, 'policy', 'policy', policy_path=a['policy_path'], device=a['device'],
                           robot_type=a['robot_type'], camera_names=camera_names(a),
                           camera_topic_template=camera_topic(a), task=a['task'],
                           inference_type=a['inference_type'], torch_threads=a.number('torch_threads', int),
                           use_torch_compile=a.flag('use_torch_compile'), use_amp=a.flag('use_amp'),
                           fps=a.number('fps'))]


def generate_launch_description():
    return component('policy', ARGS, nodes)
