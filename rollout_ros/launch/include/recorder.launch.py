"""Recorder: one lifecycle node (`recorder`) that writes the strategy's
`~/frames` and the camera images they used into a LeRobot v3 dataset, driven
by the strategy through `recorder/{start_episode,save_episode,discard_episode,push}`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # launch files are not a package
from rollout_launch import (CAMERA_NAME, CAMERA_SIZE, CAMERA_TOPIC, FPS, ROBOT, Arg, camera_sizes,  # noqa: E402
                            camera_topic, component, lifecycle_node)

from rollout_ros.core.errors import ConfigError  # noqa: E402
from rollout_ros.recording_config import DatasetConfig, RecordingConfig, recorder_params  # noqa: E402

ARGS = [
    Arg('strategy', 'sentry', "Strategy whose ~/frames are recorded; it decides rotation (sentry, dagger's "
        'record_autonomous), the ring buffer (highlight) and the intervention feature (dagger). The strategy '
        'launch files set it.', ('sentry', 'highlight', 'dagger')),
    Arg('repo_id', '', 'Dataset id <user>/rollout_<name>, required (lerobot --dataset.repo_id).'),
    Arg('dataset_root', '', "Dataset folder; '' = $HF_LEROBOT_HOME/<repo_id> (lerobot --dataset.root)."),
    Arg('push_to_hub', 'true', 'Upload to the Hugging Face Hub in the background; needs a login (lerobot '
        '--dataset.push_to_hub).'),
    Arg('private', 'false', 'Create the Hub repo private (lerobot --dataset.private).'),
    Arg('resume', 'false', 'Append to the dataset at dataset_root (lerobot --resume).'),
    Arg('upload_every_n_episodes', '5', 'Push after this many saved episodes (lerobot '
        '--strategy.upload_every_n_episodes).'),
    Arg('target_video_file_size_mb', '0.0', 'sentry, dagger with record_autonomous: episode rotation at this '
        "video size [MB]; 0 = lerobot's 200 (lerobot --strategy.target_video_file_size_mb)."),
    Arg('ring_buffer_seconds', '10.0', 'highlight: seconds kept in memory before a save press (lerobot '
        '--strategy.ring_buffer_seconds).'),
    Arg('ring_buffer_max_memory_mb', '1024.0', 'highlight: memory cap of that buffer [MB] (lerobot '
        '--strategy.ring_buffer_max_memory_mb).'),
    ROBOT[0], CAMERA_NAME, *CAMERA_SIZE, CAMERA_TOPIC, FPS,
]
# What this launch decides; every other recorder key stays with params_file.
LAUNCH_KEYS = ('repo_id', 'root', 'resume', 'push_to_hub', 'private', 'upload_every_n_episodes',
               'target_video_file_size_mb', 'ring_buffer_seconds', 'ring_buffer_max_memory_mb', 'fps',
               'robot_type', 'camera_names', 'camera_shapes', 'frames_topic', 'intervention', 'auto_rotate')


def nodes(a):
    if not a['repo_id']:
        raise ConfigError('repo_id', 'a recording strategy needs the dataset name.',
                          'pass repo_id:=<user>/rollout_<name>.')
    fps = a.number('fps')
    if fps != round(fps):
        raise ConfigError('fps', f'{fps:g} Hz: a LeRobot dataset stores an integer rate, one row per tick.',
                          'use an integer fps to record.')
    rec = RecordingConfig(
        dataset=DatasetConfig(repo_id=a['repo_id'], root=a['dataset_root'], push_to_hub=a.flag('push_to_hub'),
                              private=a.flag('private')),
        resume=a.flag('resume'), upload_every_n_episodes=a.number('upload_every_n_episodes', int),
        target_video_file_size_mb=a.number('target_video_file_size_mb'),
        ring_buffer_seconds=a.number('ring_buffer_seconds'),
        ring_buffer_max_memory_mb=a.number('ring_buffer_max_memory_mb'),
        # Declared by dagger.launch.py only.
        record_autonomous='record_autonomous' in a.values and a.flag('record_autonomous'))
    strategy_node = f'{a.prefix}/{a["strategy"]}_strategy'.lstrip('/')
    # The CLI's mapping from a strategy to recorder settings, so both agree.
    params = recorder_params(a['strategy'], strategy_node, fps, {'robot_type': a['robot_type']}, camera_sizes(a),
                            rec)
    return [lifecycle_node(a, 'recorder', 'recorder', camera_topic_template=camera_topic(a),
                           **{k: params[k] for k in LAUNCH_KEYS})]


def generate_launch_description():
    return component('recorder', ARGS, nodes, config='recorder.yaml')
