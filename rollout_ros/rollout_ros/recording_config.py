# SPDX-License-Identifier: Apache-2.0
"""The recording half of a rollout's configuration (dataset, strategy options,
teleop, operator input), with lerobot-rollout's flag names, and the nodes it
adds next to policy, cameras and drivers: recorder, teleop, keyboard or pedal.

Kept apart from cli.py so the Python API, the demo and the CLI build the
same nodes from the same objects.
"""

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from rollout_ros.core.errors import ConfigError

RECORDING_STRATEGIES = ('sentry', 'highlight', 'dagger', 'episodic')
# Strategies an operator drives with keys or a pedal.
INPUT_STRATEGIES = ('highlight', 'dagger', 'episodic')
INPUT_DEVICES = ('keyboard', 'pedal', 'none')


@dataclass
class DatasetConfig:
    repo_id: str = ''
    root: str = ''
    single_task: str = ''
    fps: int = 0  # 0 = the rollout's fps; anything else must equal it
    push_to_hub: bool = True
    private: bool = False
    tags: list[str] = field(default_factory=list)
    num_episodes: int = 50
    episode_time_s: float = 60.0  # episodic
    reset_time_s: float = 60.0  # episodic
    vcodec: str = 'libsvtav1'
    stamp_repo_id: bool = True


@dataclass
class TeleopConfig:
    type: str = ''
    port: str = ''
    id: str = 'leader'
    left_port: str = ''  # bimanual leaders (bi_so_leader, bi_openarm_mini)
    right_port: str = ''
    side: str = ''  # openarm_mini: per-side joint directions
    calibration_dir: str = ''  # LeRobot's --teleop.calibration_dir: the folder holding <id>.json


@dataclass
class RecordingConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    teleop: TeleopConfig = field(default_factory=TeleopConfig)
    resume: bool = False
    play_sounds: bool = True
    upload_every_n_episodes: int = 5
    push_timeout_s: float = 60.0  # the last upload's wait at the end of the run
    target_video_file_size_mb: float = 0.0  # 0 = lerobot's 200 MB
    ring_buffer_seconds: float = 10.0
    ring_buffer_max_memory_mb: float = 1024.0
    save_key: str = 's'
    push_key: str = 'h'
    discard_key: str = 'd'
    num_episodes: int = 0  # dagger; 0 = dataset.num_episodes
    record_autonomous: bool = False
    smooth_handover: bool = True
    reset_to_initial_position: bool = True  # episodic without a teleoperator
    smooth_leader_to_follower_handover: bool = True  # episodic with an actuated leader
    input_device: str = 'keyboard'
    keyboard_keys: dict[str, str] = field(
        default_factory=lambda: {
            'pause_resume': 'space',
            'correction': 'tab',
            'upload': 'enter',
            'next': 'right',
            'redo': 'left',
        }
    )
    pedal_keys: dict[str, str] = field(
        default_factory=lambda: {
            'pause_resume': 'KEY_A',
            'correction': 'KEY_B',
            'upload': 'KEY_C',
            'next': 'KEY_C',
            'redo': 'KEY_A',
        }
    )
    pedal_device_path: str = ''
    tty_path: str = ''
    bag_path: str = ''
    bag_topics: list[str] = field(default_factory=list)  # '' = the session's own topics
    # InputEvent topics the strategy listens to besides its own input node's
    # (a scripted operator, your own buttons).
    input_topics: list[str] = field(default_factory=list)


def parse_flag(name: str, text) -> bool:
    """A boolean command-line flag; anything but a clear yes/no names the flag."""
    value = str(text).strip().lower()
    if value not in ('1', 'true', 'yes', 'on', '0', 'false', 'no', 'off'):
        raise ConfigError(name, f'{text!r} is not a boolean.', f'use {name}=true or {name}=false.')
    return value in ('1', 'true', 'yes', 'on')


def add_recording_flags(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a(
        '--dataset.repo_id',
        dest='dataset_repo_id',
        default='',
        help='required by sentry/highlight/dagger; name must start with rollout_',
    )
    a('--dataset.root', dest='dataset_root', default='', help="'' = $HF_LEROBOT_HOME/<repo_id>")
    a('--dataset.single_task', dest='dataset_single_task', default='', help='same as --task')
    a('--dataset.fps', dest='dataset_fps', type=int, default=0, help='must equal --fps when given')
    a('--dataset.push_to_hub', dest='dataset_push_to_hub', default='true')
    a('--dataset.private', dest='dataset_private', default='false')
    a('--dataset.tags', dest='dataset_tags', default='', help='comma-separated Hub tags')
    a('--dataset.num_episodes', dest='dataset_num_episodes', type=int, default=50)
    a(
        '--dataset.episode_time_s',
        dest='dataset_episode_time_s',
        type=float,
        default=60.0,
        help='episodic: longest episode [s]',
    )
    a(
        '--dataset.reset_time_s',
        dest='dataset_reset_time_s',
        type=float,
        default=60.0,
        help='episodic: reset after each episode but the last [s], nothing recorded',
    )
    a('--dataset.vcodec', '--dataset.rgb_encoder.vcodec', dest='dataset_vcodec', default='libsvtav1')
    a(
        '--dataset.no_stamp',
        dest='dataset_no_stamp',
        default='false',
        help="keep repo_id as given instead of appending lerobot's _YYYYmmdd_HHMMSS",
    )
    a('--teleop.type', dest='teleop_type', default='', help='leader arm for dagger, e.g. koch_leader')
    a('--teleop.port', dest='teleop_port', default='')
    a('--teleop.id', dest='teleop_id', default='leader')
    a('--teleop.left_arm_config.port', dest='teleop_left_port', default='', help='bimanual leader: left arm port')
    a('--teleop.right_arm_config.port', dest='teleop_right_port', default='', help='bimanual leader: right arm port')
    a('--teleop.side', dest='teleop_side', default='', help='openarm_mini: left or right')
    a(
        '--teleop.calibration_dir',
        dest='teleop_calibration_dir',
        default='',
        help="folder holding <teleop.id>.json; '' = lerobot's default",
    )
    a('--resume', default='false', help='continue the dataset at --dataset.root')
    a('--play_sounds', default='true', help='speak events (spd-say/espeak where present)')
    a('--strategy.upload_every_n_episodes', dest='upload_every_n_episodes', type=int, default=5)
    a(
        '--push_timeout_s',
        type=float,
        default=60.0,
        help='at the end, wait this long for the last upload (retries included); what is not uploaded stays '
        'local, the exit code says so, and `rollout_dataset push <root>` sends it later',
    )
    a(
        '--strategy.target_video_file_size_mb',
        dest='target_video_file_size_mb',
        type=float,
        default=0.0,
        help='sentry/dagger rotation target; 0 = 200 MB as lerobot',
    )
    a('--strategy.ring_buffer_seconds', dest='ring_buffer_seconds', type=float, default=10.0)
    a('--strategy.ring_buffer_max_memory_mb', dest='ring_buffer_max_memory_mb', type=float, default=1024.0)
    a('--strategy.save_key', dest='save_key', default='s')
    a('--strategy.push_key', dest='push_key', default='h')
    a('--strategy.discard_key', dest='discard_key', default='d')
    a(
        '--strategy.num_episodes',
        dest='strategy_num_episodes',
        type=int,
        default=0,
        help='dagger corrections to record; 0 = --dataset.num_episodes',
    )
    a('--strategy.record_autonomous', dest='record_autonomous', default='false')
    a('--strategy.smooth_handover', dest='smooth_handover', default='true')
    a(
        '--strategy.reset_to_initial_position',
        dest='reset_to_initial_position',
        default='true',
        help='episodic without --teleop.type: resets bring the robot back to its starting pose',
    )
    a(
        '--strategy.smooth_leader_to_follower_handover',
        dest='smooth_leader_to_follower_handover',
        default='true',
        help='episodic: at a reset, drive an actuated leader to the follower before releasing it',
    )
    a('--strategy.input_device', dest='input_device', default='keyboard', choices=INPUT_DEVICES)
    for event, key in RecordingConfig().keyboard_keys.items():
        a(f'--strategy.keyboard.{event}', dest=f'keyboard_{event}', default=key)
    for event, key in RecordingConfig().pedal_keys.items():
        a(f'--strategy.pedal.{event}', dest=f'pedal_{event}', default=key)
    a('--strategy.pedal.device_path', dest='pedal_device_path', default='')
    a('--strategy.tty_path', dest='tty_path', default='', help="keyboard node's terminal; '' = this one")
    a('--bag_path', default='', help='also record the session as a rosbag2 directory here')
    a(
        '--bag_topics',
        default='',
        help="comma-separated topics for --bag_path; '' = joint states and "
        "commands, camera images, the strategy's frames and status, /diagnostics",
    )


def recording_from_args(ns) -> RecordingConfig:
    tags = [t.strip() for t in ns.dataset_tags.split(',') if t.strip()]
    return RecordingConfig(
        dataset=DatasetConfig(
            repo_id=ns.dataset_repo_id,
            root=ns.dataset_root,
            single_task=ns.dataset_single_task,
            fps=ns.dataset_fps,
            push_to_hub=parse_flag('--dataset.push_to_hub', ns.dataset_push_to_hub),
            private=parse_flag('--dataset.private', ns.dataset_private),
            tags=tags,
            num_episodes=ns.dataset_num_episodes,
            episode_time_s=ns.dataset_episode_time_s,
            reset_time_s=ns.dataset_reset_time_s,
            vcodec=ns.dataset_vcodec,
            stamp_repo_id=not parse_flag('--dataset.no_stamp', ns.dataset_no_stamp),
        ),
        teleop=TeleopConfig(
            ns.teleop_type,
            ns.teleop_port,
            ns.teleop_id,
            ns.teleop_left_port,
            ns.teleop_right_port,
            ns.teleop_side,
            ns.teleop_calibration_dir,
        ),
        resume=parse_flag('--resume', ns.resume),
        play_sounds=parse_flag('--play_sounds', ns.play_sounds),
        upload_every_n_episodes=ns.upload_every_n_episodes,
        push_timeout_s=ns.push_timeout_s,
        target_video_file_size_mb=ns.target_video_file_size_mb,
        ring_buffer_seconds=ns.ring_buffer_seconds,
        ring_buffer_max_memory_mb=ns.ring_buffer_max_memory_mb,
        save_key=ns.save_key,
        push_key=ns.push_key,
        discard_key=ns.discard_key,
        num_episodes=ns.strategy_num_episodes,
        record_autonomous=parse_flag('--strategy.record_autonomous', ns.record_autonomous),
        smooth_handover=parse_flag('--strategy.smooth_handover', ns.smooth_handover),
        reset_to_initial_position=parse_flag('--strategy.reset_to_initial_position', ns.reset_to_initial_position),
        smooth_leader_to_follower_handover=parse_flag(
            '--strategy.smooth_leader_to_follower_handover', ns.smooth_leader_to_follower_handover
        ),
        input_device=ns.input_device,
        keyboard_keys={e: getattr(ns, f'keyboard_{e}') for e in RecordingConfig().keyboard_keys},
        pedal_keys={e: getattr(ns, f'pedal_{e}') for e in RecordingConfig().pedal_keys},
        pedal_device_path=ns.pedal_device_path,
        tty_path=ns.tty_path,
        bag_path=ns.bag_path,
        bag_topics=[t.strip() for t in ns.bag_topics.split(',') if t.strip()],
    )


def check_recording(strategy: str, fps: float, task: str, rec: RecordingConfig | None) -> None:
    """lerobot-rollout's rules, plus the traps it leaves open, before anything starts."""
    if strategy not in RECORDING_STRATEGIES:
        if rec is not None and rec.dataset.repo_id:
            raise ConfigError(
                '--dataset.repo_id',
                f'the {strategy} strategy records nothing.',
                'drop the --dataset.* flags, or use --strategy.type=sentry.',
            )
        return
    if rec is None or not rec.dataset.repo_id:
        raise ConfigError(
            '--dataset.repo_id',
            f'the {strategy} strategy records a dataset and needs its name.',
            'pass --dataset.repo_id=<user>/rollout_<name>.',
        )
    if rec.dataset.fps and rec.dataset.fps != fps:
        raise ConfigError(
            '--dataset.fps',
            f'{rec.dataset.fps} differs from --fps={fps:g}; the dataset '
            'would claim a rate its frames were not recorded at.',
            'drop --dataset.fps or make both equal.',
        )
    if rec.dataset.single_task and task and rec.dataset.single_task != task:
        raise ConfigError(
            '--dataset.single_task', f'{rec.dataset.single_task!r} differs from --task={task!r}.', 'give one of them.'
        )
    if strategy == 'dagger' and not rec.teleop.type:
        raise ConfigError(
            '--teleop.type',
            'dagger needs a leader arm for the corrections.',
            'pass --teleop.type=koch_leader --teleop.port=/dev/ttyACM1 (and --teleop.id).',
        )
    if rec.resume and not rec.dataset.root:
        raise ConfigError(
            '--dataset.root',
            '--resume needs the dataset directory to continue.',
            'pass --dataset.root=<path of the dataset to continue>.',
        )


def check_dataset_root(rec: RecordingConfig | None) -> None:
    """What can be told about --dataset.root without opening the dataset,
    before any node (and any servo) is touched; the recorder checks the
    contents (features, fps, robot type) at configure, before the drivers."""
    if rec is None or not rec.dataset.root:
        return
    root, resume = Path(rec.dataset.root).expanduser(), rec.resume
    if root.exists() and not root.is_dir():
        raise ConfigError(
            '--dataset.root',
            f'{root} is a file, not a folder.',
            'give the path of a new folder (or of the dataset to continue with --resume=true).',
        )
    existing = root
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(
            '--dataset.root',
            f'{existing} (on the way to {root}) is a file, not a folder.',
            'give a path under a folder.',
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            '--dataset.root',
            f'{existing} is not writable here.',
            'pick a folder you can write to, or fix its permissions / read-only mount.',
        )
    has_dataset = (root / 'meta' / 'info.json').is_file()
    if resume and not has_dataset:
        raise ConfigError(
            '--dataset.root',
            f'{root} holds no dataset to continue (no meta/info.json).',
            'point --dataset.root at an existing dataset, or drop --resume to create one.',
        )
    if not resume and has_dataset:
        raise ConfigError(
            '--dataset.root',
            f'{root} already holds a dataset.',
            'pass --resume=true to add episodes to it, or pick a new root.',
        )


def session_topics(namespace: str, strategy_node: str, cameras) -> list[str]:
    """What a rosbag of the session holds unless told otherwise (the run's
    own topics in its namespace, '' or '/<ns>'; launch users list their own)."""
    ns = namespace.rstrip('/')
    return [
        f'{ns}/joint_states',
        f'{ns}/joint_commands',
        f'{ns}/{strategy_node}/frames',
        f'{ns}/{strategy_node}/status',
        '/diagnostics',
        *(f'{ns}/camera_{c.name}/image_raw' for c in cameras),
    ]
