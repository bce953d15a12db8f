# SPDX-License-Identifier: Apache-2.0
"""The episodic strategy end to end on emulated hardware: real nodes composed
as the CLI does, an operator pressing keys on an InputEvent topic as the
phases come, and the dataset loaded back with LeRobot's LeRobotDataset."""

from time import monotonic as time_now

import numpy as np
import pytest
from test_strategies import OPERATOR_TOPIC, episode_lengths, koch_leader, load, recording  # noqa: F401 - fixture

from rollout_ros.cli import build_parser, config_from_args, run
from rollout_ros.core.episodic_phases import RECORDING, RESETTING
from rollout_ros.nodes.scripted_input import ReactiveInput

FPS = 30.0
EPISODE_S = 1.5
RESET_S = 0.8


def episodic(tmp_path, name='episodic', **kw):
    rec = recording(tmp_path, name, **kw)
    rec.dataset.episode_time_s = EPISODE_S
    rec.dataset.reset_time_s = RESET_S
    return rec


def recording_in(strategy, episode: int):
    """Condition: `episode` is being recorded (the recorder opened it)."""
    p = strategy.phases
    return lambda: p.phase == RECORDING and p.started and p.episode == episode


def resetting(strategy):
    return lambda: strategy.phases.phase == RESETTING


def operator(presses_for, seen: dict):
    """on_started hook: presses built from the strategy node once it runs."""

    def start(rollout):
        strategy = rollout.strategy
        op = ReactiveInput(strategy, OPERATOR_TOPIC, presses_for(strategy, seen))
        seen.update(strategy=strategy, operator=op)
        op.start()
        return op.stop

    return start


def kept_windows(timeline) -> list[tuple[float, float]]:
    """(begin, end) unix times of the recording phases whose episode was kept."""
    windows = []
    for (t0, phase, cause, _), (t1, _, end_cause, _close) in zip(timeline, timeline[1:]):
        if phase == RECORDING and cause == 'begin' and end_cause != 'redo':
            windows.append((t0, t1))
    return windows


def test_episodes_early_end_discard_and_time_limit(ros, emulator, rollout_config, tmp_path, monkeypatch):
    import rollout_ros.core.speech

    monkeypatch.setattr(rollout_ros.core.speech, 'SPEECH_TOOLS', ())  # prompts recorded, never spoken aloud
    seen = {}

    def presses(strategy, seen):
        def sample_at_reset_end():
            # Near the end of the time-limited reset: where the arm is held.
            seen['reset_end_pose'] = strategy.loop.last_command
            return True

        def reset_started():
            if strategy.phases.phase != RESETTING:
                return False
            seen['reset_start_pose'] = strategy.loop.last_command
            return True

        return [
            (recording_in(strategy, 1), 0.5, 'right'),  # episode 1 ends early
            (resetting(strategy), 0.2, 'right'),  # and so does its reset
            (lambda: strategy.phases.phase == RECORDING and not strategy.phases.started, 0.0, 'right'),  # refused
            (recording_in(strategy, 2), 0.5, 'left'),  # episode 2 discarded: a reset, then again
            (reset_started, 0.1, 'left'),  # refused: already discarded
            (resetting(strategy), RESET_S - 0.25, 'x'),  # an unbound key: ignored
            (sample_at_reset_end, 0.0, 'x'),
            # The operator's status line (and /diagnostics) while the last episode records.
            (lambda: 'episode 3/3 recording' in strategy.status_text, 0.0, 'x'),
        ]

    rec = episodic(tmp_path)
    rec.dataset.num_episodes = 3
    rec.play_sounds = True
    cfg = rollout_config(strategy='episodic', duration=40.0, recording=rec, action_log_len=0)
    summary = run(cfg, on_started=operator(presses, seen))
    strategy = seen['strategy']

    max_rows = int(EPISODE_S * FPS)
    assert summary['strategy'] == 'episodic' and summary['episodes'] == 3 and summary['discarded'] == 1
    assert summary['transitions'] == [
        'recording->resetting:next',
        'resetting->recording:next',
        'recording->resetting:redo',
        'resetting->recording:time',
        'recording->resetting:frames' if summary['transitions'][4].endswith('frames') else 'recording->resetting:time',
        'resetting->recording:time',
        summary['transitions'][6],
    ]
    assert summary['transitions'][6] in ('recording->done:time', 'recording->done:frames')
    # The run ends by itself after the last episode, long before duration.
    assert summary['ticks'] < 25 * FPS

    ds = load(cfg)
    lengths = episode_lengths(ds)
    assert lengths == summary['episode_frames'] and ds.num_episodes == 3, (lengths, summary)
    assert (summary['dataset_root'], summary['episodes'], summary['frames']) == (
        cfg.recording.dataset.root,
        ds.num_episodes,
        ds.num_frames,
    )
    assert list(summary)[-3:] == ['dataset_root', 'dataset_episodes', 'dataset_frames']
    assert all(n <= max_rows for n in lengths), lengths
    assert 1 <= lengths[0] <= 0.6 * max_rows, lengths  # ended early, at ~0.5 s
    assert all(n >= 1 for n in lengths[1:]), lengths  # ran to the limit (transitions above), fewer rows when starved
    # Every row lies in the recording window of its kept episode: no reset
    # frame and nothing of the discarded attempt reached the dataset.
    windows = kept_windows(strategy.timeline)
    assert len(windows) == 3
    stamps = np.asarray(ds.hf_dataset.with_format('arrow')['stamp.observation'].to_pylist(), float).ravel()
    episodes = np.asarray(ds.hf_dataset['episode_index']).ravel()
    for e, (t0, t1) in enumerate(windows):
        s = stamps[episodes == e]
        assert t0 <= s.min() and s.max() < t1, (e, t0, s.min(), s.max(), t1)
        assert np.all(np.diff(s) < 0.6 * RESET_S), np.diff(s).max()  # no reset-long gap inside an episode
    # Without a teleoperator the reset brings the arm back to its starting
    # pose, every joint on its way there at no more than handover_speed.
    joints = [np.array(strategy.mapper.joint_command(seen[k])[1]) for k in ('reset_start_pose', 'reset_end_pose')]
    initial = np.array(strategy.mapper.joint_command(strategy._initial)[1])
    start, end = (np.abs(j - initial) for j in joints)
    speed = strategy.param('handover_speed')
    assert np.all(end <= np.maximum(start - 0.5 * speed * (RESET_S - 0.3), 0.0) + 1e-3), (start, end)
    assert np.max(np.abs(joints[1] - joints[0])) <= speed * RESET_S + 1e-3, (start, end)
    assert [k for _, k in seen['operator'].sent] == ['right', 'right', 'right', 'left', 'left', 'x', 'x', 'x']
    # lerobot's spoken prompts, in order (episode numbers of this session).
    prompts = [t for t in strategy.speaker.spoken if t != 'episode saved']
    assert prompts == [
        'Recording episode 1',
        'Reset the environment',
        'Recording episode 2',
        'Re-record episode',
        'Reset the environment',
        'Recording episode 2',
        'Reset the environment',
        'Recording episode 3',
        'Stop recording',
    ], prompts
    assert all(emulator.register(i, 'Torque_Enable') == 0 for i in range(1, 7))


def test_leaders_drive_the_resets_and_resume_adds_episodes(
    ros,
    emulator,
    rollout_config,
    tmp_path,
    so101_leader,
    koch_leader,  # noqa: F811 - the fixture imported from test_strategies
    assets,
):
    """An actuated SO-101 leader is driven to the follower at a reset and
    released, the follower holding meanwhile; then the same dataset resumed,
    a passive Koch leader this time, which the follower approaches."""
    from rollout_ros.recording_config import TeleopConfig

    def actuated_presses(strategy, seen):
        def sample(key):
            def take():
                if strategy.phases.phase != RESETTING:
                    return False
                leader = strategy.leader.pose(strategy.mapper.ros_joint_names)
                follower = strategy.mapper.joint_command(strategy.loop.last_command)[1]
                seen[key] = float(np.max(np.abs(np.array(follower) - leader)))
                seen[f'leader_{key}'] = np.array(leader)
                return True

            return take

        # ~1.2 rad apart: ~2.4 s for the leader at the teleop's 0.5 rad/s.
        return [(sample('start'), 0.0, 'x'), (resetting(strategy), 3.4, 'x'), (sample('end'), 0.0, 'x')]

    first = episodic(
        tmp_path,
        'episodic_resume',
        teleop=TeleopConfig(
            'so101_leader', so101_leader.port, 'test_so_leader', calibration_dir=str(assets['calibration_dir'])
        ),
    )
    first.dataset.num_episodes = 2
    first.dataset.reset_time_s = 4.0
    cfg = rollout_config(strategy='episodic', duration=30.0, recording=first)
    seen = {}
    run(cfg, on_started=operator(actuated_presses, seen))
    assert load(cfg).num_episodes == 2
    # The leader came to the follower (which held meanwhile), then went limp.
    assert seen['start'] > 0.2 and seen['end'] < 0.15, seen
    # No hand moves this leader: only the teleop node's move_to can have brought it over.
    assert np.max(np.abs(seen['leader_end'] - seen['leader_start'])) > 0.3, seen
    assert any(so101_leader.register(i, 'Torque_Enable') == 0 for i in range(1, 7))

    seen = {}

    def presses(strategy, seen):
        def gap(key):
            def sample():
                if strategy.phases.phase != RESETTING:
                    return False
                leader = strategy.leader.pose(strategy.mapper.ros_joint_names)
                follower = strategy.mapper.joint_command(strategy.loop.last_command)[1]
                seen[key] = (time_now(), float(np.max(np.abs(np.array(follower) - leader))))
                return True

            return sample

        return [(gap('start'), leader_reset_s - 0.3, 'x'), (gap('end'), 0.0, 'x')]

    again = episodic(
        tmp_path,
        'episodic_resume',
        teleop=TeleopConfig('koch_leader', koch_leader, 'test_leader', calibration_dir=str(assets['calibration_dir'])),
    )
    again.dataset.num_episodes = 2
    # Long enough for the follower to reach the leader (~0.5 rad away) at 0.5 rad/s.
    leader_reset_s = again.dataset.reset_time_s = 2.0
    again.resume = True
    again.dataset.root = cfg.recording.dataset.root
    again.dataset.stamp_repo_id = False
    cfg2 = rollout_config(strategy='episodic', duration=20.0, recording=again)
    cfg2.recording.dataset.repo_id = cfg.recording.dataset.repo_id
    summary = run(cfg2, on_started=operator(presses, seen))
    ds = load(cfg2)
    # episodes/frames are this run's, dataset_episodes/dataset_frames the resumed dataset's.
    assert (summary['dataset_episodes'], summary['dataset_frames']) == (ds.num_episodes, ds.num_frames)
    assert ds.num_episodes == 4 and summary['episodes'] == 2
    assert episode_lengths(ds)[2:] == summary['episode_frames'] and summary['frames'] == sum(summary['episode_frames'])
    # The follower goes to the (passive) leader at handover_speed, then follows it.
    (t0, start), (t1, end) = seen['start'], seen['end']
    speed = seen['strategy'].param('handover_speed')
    assert end <= max(start - 0.5 * speed * (t1 - t0), 0.1), (start, end, t1 - t0)


def test_episodic_flags_map_onto_the_nodes(ros):
    from rollout_ros.cli import build_nodes

    args = [
        '--strategy.type=episodic',
        '--policy.path=/ckpt',
        '--dataset.repo_id=u/rollout_e',
        '--dataset.num_episodes=4',
        '--dataset.episode_time_s=12.5',
        '--dataset.reset_time_s=0',
        '--strategy.reset_to_initial_position=false',
        '--strategy.smooth_leader_to_follower_handover=false',
        '--strategy.smooth_handover=false',
        '--strategy.input_device=pedal',
        '--strategy.pedal.next=KEY_B',
        '--teleop.type=so101_leader',
        '--teleop.port=/dev/ttyACM1',
    ]
    cfg = config_from_args(build_parser().parse_args(args))
    strategy, managed = build_nodes(cfg)
    try:
        p = {
            name: strategy.get_parameter(name).value
            for name in (
                'num_episodes',
                'episode_time_s',
                'reset_time_s',
                'reset_to_initial_position',
                'smooth_leader_to_follower_handover',
                'smooth_handover',
                'next_keys',
                'redo_keys',
                'teleop_node',
                'teleop_type',
                'input_topics',
            )
        }
        assert p == {
            'num_episodes': 4,
            'episode_time_s': 12.5,
            'reset_time_s': 0.0,
            'reset_to_initial_position': False,
            'smooth_leader_to_follower_handover': False,
            'smooth_handover': False,
            'next_keys': ['KEY_B'],
            'redo_keys': ['KEY_A'],
            'teleop_node': '/teleop',
            'teleop_type': 'so101_leader',
            'input_topics': ['/pedal/events'],
        }
        assert {'teleop', 'recorder', 'pedal'} <= {n.get_name() for n in managed}
    finally:
        for node in (strategy, *managed):
            node.destroy_node()


@pytest.mark.parametrize(
    'flag, value',
    [('--dataset.episode_time_s', '0'), ('--dataset.reset_time_s', '-1'), ('--dataset.num_episodes', '0')],
)
def test_episodic_flag_mistakes_are_named(flag, value):
    from rollout_ros.core.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        config_from_args(
            build_parser().parse_args(['--strategy.type=episodic', '--dataset.repo_id=u/rollout_e', f'{flag}={value}'])
        )
    assert err.value.param == flag


def _ros2() -> str | None:
    import importlib.util
    import os
    import sys

    exe = os.path.join(os.path.dirname(sys.executable), 'ros2')
    have = all(importlib.util.find_spec(m) for m in ('launch', 'launch_ros', 'ros2launch'))
    return exe if have and os.path.exists(exe) else None


@pytest.mark.skipif(_ros2() is None, reason='ros2 launch not installed (make setup with /work/shared/ros2)')
def test_ros2_launch_episodic_records_the_episodes(emulator, assets, tmp_path):
    """The same run as separate processes started by `ros2 launch`: the launch
    ends by itself after the last episode, and LeRobot loads what it wrote."""
    import os
    import subprocess
    import sys

    from rollout_ros.demo import CAMERA, IMAGE_HW, ROBOT_ID

    root = tmp_path / 'launched'
    env = dict(
        os.environ,
        ROS_LOG_DIR=str(tmp_path / 'logs'),
        HF_HUB_OFFLINE='1',
        AMENT_PREFIX_PATH=os.pathsep.join(filter(None, [sys.prefix, os.environ.get('AMENT_PREFIX_PATH')])),
    )
    args = dict(
        policy_path=assets['checkpoint'],
        robot_port=emulator.port,
        robot_id=ROBOT_ID,
        calibration_dir=assets['calibration_dir'],
        camera_name=CAMERA,
        camera_index_or_path=assets['video'],
        camera_width=IMAGE_HW[1],
        camera_height=IMAGE_HW[0],
        repo_id='test/rollout_episodic_launch',
        dataset_root=root,
        push_to_hub='false',
        num_episodes=2,
        episode_time_s=EPISODE_S,
        reset_time_s=RESET_S,
        input_device='none',
        play_sounds='false',
        task='test',
        torch_threads=1,
    )
    proc = subprocess.run(
        [_ros2(), 'launch', 'rollout_ros', 'episodic.launch.py', *(f'{k}:={v}' for k, v in args.items())],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset('test/rollout_episodic_launch', root=root)
    lengths = episode_lengths(ds)
    assert len(lengths) == 2 and all(1 <= n <= int(EPISODE_S * FPS) for n in lengths), lengths
    assert 'recording -> done' in proc.stdout + proc.stderr
    assert all(emulator.register(i, 'Torque_Enable') == 0 for i in range(1, 7))


def test_status_and_diagnostics_show_episode_phase_and_time_left():
    from rollout_ros.nodes.status import diagnostics, status_line
    from rollout_ros_interfaces.msg import RolloutStatus

    msg = RolloutStatus(
        strategy='episodic',
        state='running',
        phase='resetting',
        episode=2,
        num_episodes=5,
        phase_time_left_s=12.4,
        recording=True,
        episodes_saved=1,
    )
    assert 'episode 2/5 resetting 12 s left' in status_line(msg)
    values = {kv.key: kv.value for kv in diagnostics(msg, 'episodic_strategy').status[0].values}
    assert (values['phase'], values['episode'], values['num_episodes'], values['phase_time_left_s']) == (
        'resetting',
        '2',
        '5',
        '12.400',
    )
    # Strategies without episodes keep their line as it was.
    assert 'left' not in status_line(RolloutStatus(strategy='sentry', state='running'))


@pytest.fixture
def so101_leader(assets):
    """An emulated SO-101 leader (actuated: the teleop node can drive it), its
    calibration spanning the demo follower's ranges, resting off the follower's pose."""
    from rollout_ros.core.calibration import MotorCalibration, save_calibration
    from rollout_ros.demo import DEMO_RANGES
    from rollout_ros.hardware.emulator.feetech_emulator import FeetechBusEmulator
    from rollout_ros.hardware.leaders import get_leader_spec, leader_calibration_paths

    names = list(DEMO_RANGES)
    calib = {n: MotorCalibration(i, 0, 0, *DEMO_RANGES[n]) for i, n in enumerate(names, 1)}
    save_calibration(
        leader_calibration_paths(assets['calibration_dir'], get_leader_spec('so101_leader'), 'test_so_leader')[0], calib
    )
    initial = {i: int(sum(DEMO_RANGES[n]) / 2) + 250 for i, n in enumerate(names, 1)}
    with FeetechBusEmulator({i: 'sts3215' for i in initial}, tau=0.02, initial_positions=initial) as emu:
        yield emu
