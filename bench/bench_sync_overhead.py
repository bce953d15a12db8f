# SPDX-License-Identifier: Apache-2.0
"""What the ROS sync path adds per tick over a direct in-process policy call.

The same tiny ACT checkpoint (one 640x480 camera) and the same observations
go (a) straight into the engine in this process and (b) through the policy
node's ~/infer service, the node running in its own process. For (b) the
added latency of a tick is the round trip minus the time the node spent on
it (compute_ms), so chunk inferences do not swamp the figure.

A camera process streams the frames at 30 Hz, as a camera node would, and
this process (the strategy's place) and the policy node both subscribe to
it, as in a rollout. Requests go out back to back (as this bench always measured, so
figures compare across versions) and, for the record, paced at 30 Hz as the
control loop sends them (every hop then starts from a sleeping thread, which
costs more). Two request forms:

* ``stamp`` (what the strategy sends): the frame named by its capture stamp;
  the policy node takes it from its own subscription to the camera topic.
* ``full``: the 640x480 frame inside the request (an external caller).

The headline figures are the ``stamp`` ones; the last line is JSON
``{"bench": "sync_overhead", "added_ms_p50": ..., "added_ms_p99": ...}``.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

TICKS = 200
H, W = 480, 640
RATE_HZ = 30.0
# As config/base.yaml deploys the policy node.
TORCH_THREADS = int(os.environ.get('BENCH_TORCH_THREADS', '1'))
CAMERA_TOPIC = '/bench_sync_camera_{name}'
# A camera node's stand-in: the same four frames, cycled, stamped when sent.
CAMERA_PROCESS = """
import sys, time
import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
H, W, topic, rate = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
rng = np.random.default_rng(1)
rclpy.init()
node = rclpy.create_node('bench_sync_camera')
pub = node.create_publisher(Image, topic, qos_profile_sensor_data)
frames = []
for _ in range(4):
    m = Image(height=H, width=W, encoding='rgb8', step=W * 3)
    m.header.frame_id = 'front'
    m.data = rng.integers(0, 255, (H, W, 3), dtype=np.uint8).tobytes()
    frames.append(m)
i, t = 0, time.monotonic()
while rclpy.ok():
    msg = frames[i % 4]
    msg.header.stamp = node.get_clock().now().to_msg()
    pub.publish(msg)
    i += 1
    t += 1.0 / rate
    time.sleep(max(0.0, t - time.monotonic()))
"""


def pct(values, q) -> float:
    return round(float(np.percentile(values, q)), 3)


def main() -> None:
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    os.environ.setdefault('ROS_DOMAIN_ID', '91')
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    # The profile we recommend for images between processes (see its comment);
    # BENCH_DDS_PROFILE='' measures Fast DDS defaults instead.
    profile = os.environ.get(
        'BENCH_DDS_PROFILE',
        str(Path(__file__).resolve().parents[1] / 'rollout_ros' / 'config' / 'fastdds_large_messages.xml'),
    )
    if profile:
        os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = profile
    from rollout_ros.core.pacer import Pacer
    from rollout_ros.hardware.robots import get_robot_spec
    from rollout_ros.policy.loading import check_features, load_policy
    from rollout_ros.policy.sync_engine import SyncPolicyEngine
    from rollout_ros.policy.tiny_checkpoint import make_tiny_act_checkpoint

    spec = get_robot_spec('koch_follower')
    work = Path(tempfile.mkdtemp(prefix='bench_sync_'))
    ckpt = make_tiny_act_checkpoint(work / 'act', spec.feature_names, {'front': (3, H, W)})
    rng = np.random.default_rng(0)
    states = [{n: float(v) for n, v in zip(spec.feature_names, rng.uniform(-50, 50, 6))} for _ in range(TICKS)]
    # The camera process draws the same four frames (same seed, same calls).
    frame_rng = np.random.default_rng(1)
    images = [frame_rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(4)]
    topic = CAMERA_TOPIC.format(name='front')

    # (a) direct
    loaded = load_policy(str(ckpt))
    engine = SyncPolicyEngine(loaded, check_features(loaded, spec.feature_names, ['front']))
    engine.infer(states[0], {'front': images[0]})
    engine.reset()
    direct = []
    for i in range(TICKS):
        t0 = time.perf_counter()
        engine.infer(states[i], {'front': images[i % 4]})
        direct.append((time.perf_counter() - t0) * 1e3)

    # (b) service, policy node in another process
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from rollout_ros.nodes.lifecycle_client import LifecycleClient, call_blocking
    from rollout_ros.nodes.policy_node import image_ref
    from rollout_ros_interfaces.srv import InferAction

    camera = subprocess.Popen(
        [sys.executable, '-c', CAMERA_PROCESS, str(H), str(W), topic, str(RATE_HZ)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            '-m',
            'rollout_ros.nodes.policy_node',
            '--ros-args',
            '-r',
            '__node:=bench_policy',
            '-p',
            f'policy_path:={ckpt}',
            '-p',
            'camera_names:=[front]',
            '-p',
            f'camera_topic_template:={CAMERA_TOPIC}',
            '-p',
            f'torch_threads:={TORCH_THREADS}',
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rclpy.init()
    node = rclpy.create_node('bench_sync_client')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    latest: list = []
    node.create_subscription(Image, topic, lambda m: latest.__setitem__(slice(None), [m]), qos_profile_sensor_data)
    results = {}
    try:
        lc = LifecycleClient(node, '/bench_policy')
        assert lc.wait_ready(60), 'policy node did not start'
        assert lc.change('configure', 120) and lc.change('activate', 30), 'policy node failed'
        client = node.create_client(InferAction, '/bench_policy/infer')
        client.wait_for_service(timeout_sec=10)

        def request(i, form):
            frame = latest[0]
            img = image_ref(frame, 'front') if form == 'stamp' else frame
            return InferAction.Request(state_names=list(states[i]), state=list(states[i].values()), images=[img])

        deadline = time.monotonic() + 30
        while not latest or not (r := call_blocking(client, request(0, 'stamp'), 5.0)) or not r.success:
            assert time.monotonic() < deadline, 'the policy node never received a camera frame'
            time.sleep(0.05)
        for form, paced in (('stamp', False), ('full', False), ('stamp', True)):
            rtt, compute = [], []
            pacer = Pacer(RATE_HZ)
            pacer.start()
            for i in range(TICKS):
                if paced:
                    pacer.begin_tick()
                req = request(i, form)
                t0 = time.perf_counter()
                resp = call_blocking(client, req, 30.0)
                rtt.append((time.perf_counter() - t0) * 1e3)
                assert resp is not None and resp.success, resp
                compute.append(resp.compute_ms)
                if paced:
                    pacer.wait()
            results[form, paced] = (np.array(rtt), np.array(rtt) - np.array(compute))
        lc.change('deactivate', 10)
    finally:
        for p in (proc, camera):
            p.terminate()
            p.wait(timeout=20)
        executor.shutdown(timeout_sec=1)
        rclpy.try_shutdown()

    rtt, added = results['stamp', False]
    _, full_added = results['full', False]
    _, paced_added = results['stamp', True]
    result = {
        'bench': 'sync_overhead',
        'added_ms_p50': pct(added, 50),
        'added_ms_p99': pct(added, 99),
        'image': f'{W}x{H}',
        'ticks': TICKS,
        'rate_hz': RATE_HZ,
        'dds_profile': bool(profile),
        'request_images': 'stamp',
        'direct_ms_p50': pct(direct, 50),
        'direct_ms_p99': pct(direct, 99),
        'service_rtt_ms_p50': pct(rtt, 50),
        'service_rtt_ms_p99': pct(rtt, 99),
        'full_image_added_ms_p50': pct(full_added, 50),
        'full_image_added_ms_p99': pct(full_added, 99),
        'paced_added_ms_p50': pct(paced_added, 50),
        'paced_added_ms_p99': pct(paced_added, 99),
        'cpu_count': os.cpu_count(),
    }
    print(
        f'direct p50 {result["direct_ms_p50"]} ms; added by ROS with stamp-only images p50 '
        f'{result["added_ms_p50"]} ms, p99 {result["added_ms_p99"]} ms; with the full image in the '
        f'request p50 {result["full_image_added_ms_p50"]} ms, p99 {result["full_image_added_ms_p99"]} ms; '
        f'stamp-only paced at {RATE_HZ:g} Hz p50 {result["paced_added_ms_p50"]} ms, '
        f'p99 {result["paced_added_ms_p99"]} ms'
    )
    print(json.dumps(result))


if __name__ == '__main__':
    main()
