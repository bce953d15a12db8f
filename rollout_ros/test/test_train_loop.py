# SPDX-License-Identifier: Apache-2.0
"""Record -> train -> deploy in the project's one environment, as the README shows it:
a sentry demo on the emulated arm records a dataset, LeRobot's own `lerobot-train`
trains a tiny ACT on it offline for two steps, and the demo runs that checkpoint."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from lerobot.datasets.lerobot_dataset import LeRobotDataset

BIN = Path(sys.executable).parent
# The README's training flags, shrunk to a model that trains two steps in seconds on a CPU.
TINY_ACT = [
    '--policy.dim_model=32',
    '--policy.n_heads=2',
    '--policy.dim_feedforward=64',
    '--policy.n_encoder_layers=1',
    '--policy.n_decoder_layers=1',
    '--policy.chunk_size=10',
    '--policy.n_action_steps=10',
    '--policy.use_vae=false',
]
LOAD = """
from lerobot.datasets.lerobot_dataset import LeRobotDataset
ds = LeRobotDataset('demo/rollout_sentry', root={root!r})
print(ds._video_backend, tuple(ds[ds.num_frames - 1]['observation.images.front'].shape))
"""


def _run(cmd, log: Path, timeout: float) -> str:
    env = dict(os.environ, HF_HUB_OFFLINE='1')
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=timeout)
    log.write_text(proc.stdout)
    assert proc.returncode == 0, f'{cmd[:3]} exited {proc.returncode}:\n{proc.stdout[-3000:]}'
    return proc.stdout


def test_sentry_recording_trains_with_lerobot_train_and_deploys_in_the_demo(tmp_path):
    work = tmp_path / 'demo'
    log = _run(
        [sys.executable, '-m', 'rollout_ros.demo', '--strategy', 'sentry', '--duration', '3', '--workdir', str(work)],
        tmp_path / 'record.log',
        240,
    )
    (root,) = (work / 'datasets').iterdir()
    recorded = LeRobotDataset('demo/rollout_sentry', root=root, video_backend='pyav')
    assert recorded.num_frames > 30
    # The strategy's own summary line counts every saved episode, the recorder's rotations too.
    logged = json.loads(log.split('run summary: ', 1)[1].splitlines()[0])
    assert (logged['episodes'], logged['frames']) == (recorded.num_episodes, recorded.num_frames)
    # As a user loads it: LeRobot picks its default decoder (torchcodec) and prints nothing.
    load = subprocess.run(
        [sys.executable, '-c', LOAD.format(root=str(root))],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, HF_HUB_OFFLINE='1'),
    )
    assert (load.returncode, load.stdout, load.stderr) == (0, 'torchcodec (3, 96, 128)\n', '')

    out = tmp_path / 'train'
    log = _run(
        [
            str(BIN / 'lerobot-train'),
            '--dataset.repo_id=demo/rollout_sentry',
            f'--dataset.root={root}',
            '--policy.type=act',
            '--policy.device=cpu',
            '--policy.push_to_hub=false',
            '--policy.pretrained_backbone_weights=null',
            *TINY_ACT,
            '--steps=2',
            '--batch_size=2',
            '--num_workers=0',
            '--save_freq=2',
            '--log_freq=1',
            '--wandb.enable=false',
            f'--output_dir={out}',
        ],
        tmp_path / 'train.log',
        400,
    )
    assert 'step:2 ' in log
    ckpt = out / 'checkpoints' / 'last' / 'pretrained_model'
    config = json.loads((ckpt / 'config.json').read_text())
    assert config['type'] == 'act' and config['dim_model'] == 32
    assert config['input_features']['observation.images.front']['shape'] == [3, 96, 128]

    log = _run(
        [sys.executable, '-m', 'rollout_ros.demo', '--policy', str(ckpt), '--duration', '2', '--workdir', str(work)],
        tmp_path / 'deploy.log',
        240,
    )
    assert f'loaded act from {ckpt.resolve()}' in log
    summary = json.loads((work / 'summary.json').read_text())
    assert summary['ticks'] > 30 and summary['starved_ticks'] == 0


def test_lerobot_info_reports_the_environment():
    proc = subprocess.run([str(BIN / 'lerobot-info')], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '- Torchcodec version: 0.' in proc.stdout and 'Traceback' not in proc.stderr


def test_emulated_arm_alone_serves_rollout_with_the_flags_it_prints(tmp_path, assets):
    from rollout_ros.demo import CAMERA, IMAGE_HW

    emulate = subprocess.Popen(
        [sys.executable, '-m', 'rollout_ros.emulate', 'so101_follower', '--workdir', str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [emulate.stdout.readline().strip() for _ in range(3)]
        assert lines[0].startswith('PORT /dev/pts/'), lines
        port = lines[0].split(' ', 1)[1]
        assert lines[2] == (
            f'ros2 launch: robot_type:=so101_follower robot_port:={port} robot_id:=demo '
            f'calibration_dir:={tmp_path / "calibration"}'
        )
        flags = lines[1].removeprefix('rollout: ').split()
        # Joint names of a Koch and an SO arm are the same: the demo's tiny ACT drives both.
        cams = (
            f'{{{CAMERA}: {{type: opencv, index_or_path: {assets["video"]}, width: {IMAGE_HW[1]}, '
            f'height: {IMAGE_HW[0]}, fps: 30}}}}'
        )
        out = _run(
            [
                sys.executable,
                '-m',
                'rollout_ros.cli',
                f'--policy.path={assets["checkpoint"]}',
                *flags,
                f'--robot.cameras={cams}',
                '--fps=30',
                '--duration=2',
                '--task=try',
            ],
            tmp_path / 'rollout.log',
            240,
        )
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary['ticks'] > 30 and summary['starved_ticks'] == 0
        assert emulate.poll() is None  # serves until stopped
    finally:
        emulate.send_signal(signal.SIGINT)
        assert emulate.wait(timeout=10) == 0
