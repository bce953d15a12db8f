"""What the ROS sync path adds per tick over a direct in-process policy call.

The same tiny ACT checkpoint (one 640x480 camera) and the same observations
go (a) straight into the engine in this process and (b) through the policy
node's ~/infer service, the node running in its own process. For (b) the
added latency of a tick is the round trip minus the time the node spent in
the engine for it, so chunk inferences do not swamp the figure.
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


def main() -> None:
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    os.environ.setdefault('ROS_DOMAIN_ID', '91')
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    # The profile we recommend for images between processes (see its comment);
    # BENCH_DDS_PROFILE='' measures Fast DDS defaults instead.
    profile = os.environ.get('BENCH_DDS_PROFILE', str(Path(__file__).resolve().parents[1] / 'rollout_ros'
                                                      / 'config' / 'fastdds_large_messages.xml'))
    if profile:
        os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = profile
    from rollout_ros.hardware.robots import get_robot_spec
    from rollout_ros.policy.loading import check_features, load_policy
    from rollout_ros.policy.sync_engine import SyncPolicyEngine
    from rollout_ros.policy.tiny_checkpoint import make_tiny_act_checkpoint

    spec = get_robot_spec('koch_follower')
    work = Path(tempfile.mkdtemp(prefix='bench_sync_'))
    ckpt = make_tiny_act_checkpoint(work / 'act', spec.feature_names, {'front': (3, H, W)})
    rng = np.random.default_rng(0)
    states = [{n: float(v) for n, v in zip(spec.feature_names, rng.uniform(-50, 50, 6))} for _ in range(TICKS)]
    images = [rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(4)]

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
    from rollout_ros_interfaces.srv import InferAction
    from sensor_msgs.msg import Image

    from rollout_ros.nodes.lifecycle_client import LifecycleClient, call_blocking

    proc = subprocess.Popen([sys.executable, '-m', 'rollout_ros.nodes.policy_node', '--ros-args',
                             '-r', '__node:=bench_policy', '-p', f'policy_path:={ckpt}',
                             '-p', 'camera_names:=[front]'], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    rclpy.init()
    node = rclpy.create_node('bench_sync_client')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    try:
        lc = LifecycleClient(node, '/bench_policy')
        assert lc.wait_ready(60), 'policy node did not start'
        assert lc.change('configure', 120) and lc.change('activate', 30), 'policy node failed'
        client = node.create_client(InferAction, '/bench_policy/infer')
        client.wait_for_service(timeout_sec=10)
        msgs = []
        for img in images:
            m = Image(height=H, width=W, encoding='rgb8', step=W * 3)
            m.header.frame_id = 'front'
            m.data = img.tobytes()
            msgs.append(m)
        rtt, compute = [], []
        for i in range(TICKS):
            req = InferAction.Request(state_names=list(states[i]), state=list(states[i].values()),
                                      images=[msgs[i % 4]])
            t0 = time.perf_counter()
            resp = call_blocking(client, req, 30.0)
            rtt.append((time.perf_counter() - t0) * 1e3)
            assert resp is not None and resp.success, resp
            compute.append(resp.compute_ms)
        lc.change('deactivate', 10)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        executor.shutdown(timeout_sec=1)
        rclpy.try_shutdown()

    added = np.array(rtt) - np.array(compute)
    direct = np.array(direct)
    result = {'bench': 'sync_overhead', 'image': f'{W}x{H}', 'ticks': TICKS, 'dds_profile': bool(profile),
              'added_ms_p50': round(float(np.percentile(added, 50)), 3),
              'added_ms_p99': round(float(np.percentile(added, 99)), 3),
              'direct_ms_p50': round(float(np.percentile(direct, 50)), 3),
              'direct_ms_p99': round(float(np.percentile(direct, 99)), 3),
              'service_rtt_ms_p50': round(float(np.percentile(rtt, 50)), 3),
              'service_rtt_ms_p99': round(float(np.percentile(rtt, 99)), 3)}
    print(f"direct p50 {result['direct_ms_p50']} ms; service round trip p50 {result['service_rtt_ms_p50']} "
          f"ms; added by ROS p50 {result['added_ms_p50']} ms, p99 {result['added_ms_p99']} ms")
    print(json.dumps(result))


if __name__ == '__main__':
    main()
