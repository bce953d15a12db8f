# SPDX-License-Identifier: Apache-2.0
"""`--ros-args -r` moves every topic a node uses, inputs included: a rollout
whose joint states, joint commands and camera images all live on remapped
topics runs to its end, and the graph shows who uses which topic."""

import json
import os
import subprocess
import sys

from helpers import wait_for

from rollout_ros.demo import CAMERA, IMAGE_HW, ROBOT_ID, ROBOT_TYPE

REMAPS = {
    'joint_states': '/remapped/joint_states',
    'joint_commands': '/remapped/joint_commands',
    f'/camera_{CAMERA}/image_raw': f'/remapped/{CAMERA}/image',
}


def rollout_cmd(assets, port, duration, summary_path, *extra):
    cameras = json.dumps(
        {
            CAMERA: {
                'type': 'opencv',
                'index_or_path': str(assets['video']),
                'width': IMAGE_HW[1],
                'height': IMAGE_HW[0],
                'fps': 30,
            }
        }
    )
    return [
        sys.executable,
        '-m',
        'rollout_ros.cli',
        f'--policy.path={assets["checkpoint"]}',
        f'--robot.type={ROBOT_TYPE}',
        f'--robot.port={port}',
        f'--robot.id={ROBOT_ID}',
        f'--robot.calibration_dir={assets["calibration_dir"]}',
        f'--robot.cameras={cameras}',
        '--robot.max_relative_target=6.3',
        '--fps=30',
        f'--duration={duration}',
        '--task=test',
        '--torch_threads=1',
        f'--summary_json={summary_path}',
        *extra,
    ]


def endpoints(probe, topic, kind):
    infos = (probe.get_subscriptions_info_by_topic if kind == 'sub' else probe.get_publishers_info_by_topic)(topic)
    return {f'{i.node_namespace.rstrip("/")}/{i.node_name}' for i in infos}


def test_remapped_inputs_and_outputs_run(ros, assets, emulator, tmp_path):
    import rclpy

    ros_args = ['--ros-args'] + [a for src, dst in REMAPS.items() for a in ('-r', f'{src}:={dst}')]
    summary_path = tmp_path / 'summary.json'
    proc = subprocess.Popen(
        rollout_cmd(assets, emulator.port, 6.0, summary_path, *ros_args),
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    probe = rclpy.create_node(f'remap_probe_{os.getpid()}')
    try:
        # While it runs: the strategy's inputs (on its link node) and the
        # driver's and camera's outputs are all on the remapped names.
        def wired():
            return (
                '/base_strategy_link' in endpoints(probe, REMAPS['joint_states'], 'sub')
                and '/base_strategy_link' in endpoints(probe, REMAPS[f'/camera_{CAMERA}/image_raw'], 'sub')
                and '/robot_driver' in endpoints(probe, REMAPS['joint_states'], 'pub')
                and '/robot_driver' in endpoints(probe, REMAPS['joint_commands'], 'sub')
                and '/base_strategy' in endpoints(probe, REMAPS['joint_commands'], 'pub')
            )

        wait_for(lambda: proc.poll() is not None or wired(), timeout=120)
        assert wired(), f'remapped graph never appeared (exit {proc.poll()}): ' + (
            proc.communicate()[1][-3000:] if proc.poll() is not None else ''
        )
        for topic in ('/joint_states', '/joint_commands', f'/camera_{CAMERA}/image_raw'):
            assert probe.count_publishers(topic) == 0 and probe.count_subscribers(topic) == 0, topic
        out, err = proc.communicate(timeout=120)
    finally:
        probe.destroy_node()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads(summary_path.read_text())
    assert summary['ticks'] >= 30 and summary['starved_ticks'] <= summary['ticks'] // 2, summary
    assert len(emulator.goal_writes) >= 30 * 6  # the policy's commands reached the servos
