# SPDX-License-Identifier: Apache-2.0
"""The recording strategies end to end on emulated hardware, with real rclpy
nodes (policy, camera, driver, recorder, teleop) composed as the CLI does,
and a scripted operator pressing keys on an InputEvent topic; every dataset
is loaded back with LeRobot's own LeRobotDataset."""

import threading

import numpy as np
import pytest

from rollout_ros.cli import build_nodes, build_parser, config_from_args, run
from rollout_ros.demo import DEMO_RANGES
from rollout_ros.nodes.scripted_input import ScriptedInput
from rollout_ros.recording_config import DatasetConfig, RecordingConfig, TeleopConfig

OPERATOR_TOPIC = '/test_operator/events'


def recording(tmp_path, strategy, **kw):
    return RecordingConfig(
        dataset=DatasetConfig(
            repo_id=f'test/rollout_{strategy}', root=str(tmp_path / strategy), push_to_hub=False, vcodec='h264'
        ),
        play_sounds=False,
        input_device='none',
        input_topics=[OPERATOR_TOPIC],
        **kw,
    )


def operator(presses, started: list):
    def start(rollout):
        op = ScriptedInput(rollout.strategy, OPERATOR_TOPIC, presses)
        started.append((rollout, op))
        op.start()
        return op.stop

    return start


def load(cfg):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset(cfg.recording.dataset.repo_id, root=cfg.recording.dataset.root)


def episode_lengths(ds) -> list[int]:
    index = np.asarray(ds.hf_dataset['episode_index'])
    return [int((index == e).sum()) for e in sorted(set(index.tolist()))]


def test_sentry_rotates_episodes_and_keeps_the_rate(ros, emulator, rollout_config, tmp_path):
    cfg = rollout_config(
        strategy='sentry', duration=8.0, recording=recording(tmp_path, 'sentry', target_video_file_size_mb=0.01)
    )
    summary = run(cfg)
    ds = load(cfg)
    lengths = episode_lengths(ds)
    assert len(lengths) >= 2, lengths  # rotated at least once
    assert sum(lengths) == ds.num_frames
    # Every policy tick that carried an action became a row (the first ones may
    # precede the recorder's episode; none is lost after it).
    recorded_ticks = summary['ticks'] - summary['starved_ticks']
    assert ds.num_frames >= recorded_ticks - 15, (ds.num_frames, recorded_ticks)
    # The rate itself is a benchmark's (bench/); here only that the loop kept running while saving.
    assert summary['rate_hz'] > 0.5 * cfg.fps and summary['strategy'] == 'sentry'
    # A new dataset: this run's counts (rotations by the recorder included) are the dataset's.
    assert (summary['dataset_root'], summary['episodes'], summary['frames']) == (
        cfg.recording.dataset.root,
        ds.num_episodes,
        ds.num_frames,
    )
    assert (summary['dataset_episodes'], summary['dataset_frames']) == (ds.num_episodes, ds.num_frames)
    # The executed (clipped) action and real stamps sit next to LeRobot's columns.
    row = ds.hf_dataset[5]
    assert len(row['executed.action']) == len(row['action'])
    assert row['stamp.action_sent'] >= row['stamp.observation']
    assert all(emulator.register(i, 'Torque_Enable') == 0 for i in range(1, 7))


def test_resumed_sentry_summary_gives_this_runs_and_the_datasets_totals(ros, emulator, rollout_config, tmp_path):
    first = rollout_config(strategy='sentry', duration=2.0, recording=recording(tmp_path, 'sentry_resume'))
    before = run(first)
    rec = recording(tmp_path, 'sentry_resume', target_video_file_size_mb=0.01)
    rec.resume = True
    summary = run(rollout_config(strategy='sentry', duration=4.0, recording=rec))
    ds = load(first)
    lengths = episode_lengths(ds)
    assert before['episodes'] == 1 and len(lengths) >= 3, lengths  # resumed, and rotated at least once
    assert (summary['dataset_episodes'], summary['dataset_frames']) == (ds.num_episodes, ds.num_frames)
    assert (summary['episodes'], summary['frames']) == (len(lengths) - 1, sum(lengths[1:]))


def test_sentry_uploads_on_schedule_without_slowing_the_loop(ros, emulator, rollout_config, tmp_path, monkeypatch):
    import huggingface_hub.constants
    from test_dataset_hub import FakeHub

    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', False)
    monkeypatch.setattr(huggingface_hub.constants, 'ENDPOINT', hub.endpoint)
    monkeypatch.setenv('HF_TOKEN', 'hf_FAKEtokenForTheStandIn')
    rec = recording(tmp_path, 'sentry_push', target_video_file_size_mb=0.01, upload_every_n_episodes=2)
    rec.dataset.push_to_hub = True
    cfg = rollout_config(strategy='sentry', duration=8.0, recording=rec)
    try:
        summary = run(cfg)
    finally:
        hub.close()
    ds = load(cfg)
    assert ds.num_episodes >= 4
    ((repo, state),) = hub.repos.items()
    assert repo.startswith('test/rollout_sentry_push_')  # lerobot's stamp
    pushes = [c for c in hub.commits if any(p.startswith('data/') for p in c[2])]
    assert len(pushes) >= 2  # during the run, and the final one
    # The final push holds every episode's files, and nothing half-written.
    uploaded = set(state['files'])
    local = {
        str(p.relative_to(ds.root))
        for p in ds.root.rglob('*')
        if p.is_file() and not any(part.startswith('.') for part in p.relative_to(ds.root).parts)
    }
    assert local <= uploaded, local - uploaded
    assert summary['rate_hz'] > 0.5 * cfg.fps  # uploads do not stall it; the rate is bench/'s


def test_sentry_bags_the_session_next_to_the_dataset(ros, emulator, rollout_config, tmp_path):
    from rosbags.rosbag2 import Reader

    rec = recording(tmp_path, 'sentry_bag', bag_path=str(tmp_path / 'bags'))
    cfg = rollout_config(strategy='sentry', duration=3.0, recording=rec)
    summary = run(cfg)
    (bag,) = (tmp_path / 'bags').iterdir()
    with Reader(bag) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    for topic in ('/joint_states', '/joint_commands', '/sentry_strategy/frames', '/camera_front/image_raw'):
        assert counts.get(topic, 0) > 0, (topic, counts)
    # One frame per recorded row, give or take the ones in flight at start and stop.
    assert abs(counts['/sentry_strategy/frames'] - summary['frames']) <= 10, (counts, summary['frames'])


def test_highlight_episode_starts_with_the_seconds_before_the_press(ros, emulator, rollout_config, tmp_path):
    started = []
    cfg = rollout_config(
        strategy='highlight', duration=7.0, recording=recording(tmp_path, 'highlight', ring_buffer_seconds=2.0)
    )
    run(cfg, on_started=operator([(3.0, 's'), (4.5, 's'), (5.0, 's'), (5.5, 'd')], started))
    (first_press, _), (second_press, _) = started[0][1].sent[:2]
    ds = load(cfg)
    assert len(episode_lengths(ds)) == 1  # the second one was discarded
    # Unix seconds in float64 on disk; LeRobot's torch view would round them to float32.
    stamps = np.asarray(ds.hf_dataset.with_format('arrow')['stamp.observation'].to_pylist(), float).ravel()
    assert np.all(np.diff(stamps) >= 0)  # one joint-state sample may serve two ticks
    # The ring buffer's 2 s before the first press, then live up to the second.
    # The buffer holds 2 s worth of ticks: a loop slowed by load spans a little more time.
    assert first_press - 3.5 <= stamps[0] <= first_press - 1.5, first_press - stamps[0]
    assert abs(stamps[-1] - second_press) < 0.6, stamps[-1] - second_press
    assert len(stamps) >= 0.5 * cfg.fps * (stamps[-1] - stamps[0])  # no gap where the buffer ends


@pytest.fixture
def koch_leader(tmp_path, assets):
    """An emulated Koch leader (follower's calibration ranges) moved by an emulated hand."""
    from rollout_ros.core.calibration import MotorCalibration, save_calibration
    from rollout_ros.hardware.emulator.human import EmulatedHuman, sinusoid
    from rollout_ros.hardware.emulator.servo_bus_emulator import KOCH_IDS, ServoBusEmulator
    from rollout_ros.hardware.leaders import get_leader_spec, leader_calibration_paths
    from rollout_ros.hardware.robots import get_robot_spec

    follower = get_robot_spec('koch_follower')
    calib = {m.name: MotorCalibration(m.id, 0, 0, *DEMO_RANGES[m.name]) for m in follower.motors}
    path = leader_calibration_paths(assets['calibration_dir'], get_leader_spec('koch_leader'), 'test_leader')[0]
    save_calibration(path, calib)
    # Far enough from the follower that the handover is a real move.
    initial = {m.id: int(sum(DEMO_RANGES[m.name]) / 2) + 300 for m in follower.motors}
    with ServoBusEmulator({i: 'xl330-m077' for i in KOCH_IDS}, tau=0.02, initial_positions=initial) as emu:
        with EmulatedHuman(emu, sinusoid(KOCH_IDS, amplitude=60, period_s=3.0)):
            yield emu.port


def test_dagger_corrections_only(ros, emulator, rollout_config, tmp_path, koch_leader, assets):
    started = []
    rec = recording(
        tmp_path,
        'dagger',
        teleop=TeleopConfig('koch_leader', koch_leader, 'test_leader', calibration_dir=str(assets['calibration_dir'])),
        num_episodes=2,
    )
    cfg = rollout_config(strategy='dagger', duration=20.0, recording=rec)
    presses = [
        (1.0, 'tab'),  # refused: no correction from autonomous
        (1.5, 'space'),
        (2.0, 'tab'),
        (4.0, 'tab'),
        (4.5, 'tab'),
        (6.0, 'tab'),
    ]
    summary = run(cfg, on_started=operator(presses, started))
    strategy = started[0][0].strategy
    assert summary['corrections'] == 2 and summary['episodes'] == 2
    assert summary['transitions'] == [
        'autonomous->paused',
        'paused->correcting',
        'correcting->paused',
        'paused->correcting',
        'correcting->paused',
    ]
    # The run ends by itself after num_episodes corrections, long before duration.
    assert summary['ticks'] < 15 * cfg.fps
    ds = load(cfg)
    lengths = episode_lengths(ds)
    assert len(lengths) == 2 and 40 <= lengths[0] <= 80, lengths  # ~2 s and ~1.5 s at 30 fps
    assert bool(np.all(np.asarray(ds.hf_dataset['intervention']))), 'corrections carry intervention=True'
    # Handover to a passive leader: the follower approaches it at handover_speed,
    # then follows the hand (slower than the cap here); no step is larger.
    cap = strategy.param('handover_speed') / cfg.fps
    names = ds.meta.features['action']['names']
    episodes = np.asarray(ds.hf_dataset['episode_index']).ravel()
    actions = np.asarray(ds.hf_dataset['action'])
    first = [np.array(strategy.mapper.joint_command(dict(zip(names, row)))[1]) for row in actions[episodes == 0]]
    steps = [float(np.max(np.abs(b - a))) for a, b in zip(first, first[1:])]
    assert max(steps) <= cap + 1e-4, (max(steps), cap)
    assert np.mean(steps[:5]) > 0.8 * cap, steps[:5]  # a real, capped approach
    assert all(emulator.register(i, 'Torque_Enable') == 0 for i in range(1, 7))


def test_stop_mid_episode_saves_it_and_leaves_the_robot_safe(ros, emulator, rollout_config, tmp_path):
    stop = threading.Event()
    cfg = rollout_config(strategy='sentry', duration=0.0, recording=recording(tmp_path, 'sentry_stop'))

    def stop_later(rollout):
        threading.Timer(2.0, stop.set).start()

    summary = run(cfg, stop, on_started=stop_later)
    ds = load(cfg)
    assert summary['episodes'] == 1 and ds.num_episodes == 1 and ds.num_frames > 30
    assert all(emulator.register(i, 'Torque_Enable') == 0 for i in range(1, 7))


def test_stop_during_a_correction_saves_it(ros, emulator, rollout_config, tmp_path, koch_leader, assets):
    stop, started = threading.Event(), []
    rec = recording(
        tmp_path,
        'dagger_stop',
        teleop=TeleopConfig('koch_leader', koch_leader, 'test_leader', calibration_dir=str(assets['calibration_dir'])),
    )
    cfg = rollout_config(strategy='dagger', duration=0.0, recording=rec)
    press = operator([(1.0, 'space'), (1.5, 'tab')], started)

    def start(rollout):
        threading.Timer(3.5, stop.set).start()  # Ctrl-C while the human corrects
        return press(rollout)

    summary = run(cfg, stop, on_started=start)
    assert summary['transitions'][-1] == 'paused->correcting'
    ds = load(cfg)
    assert ds.num_episodes == 1 and ds.num_frames > 30
    assert bool(np.all(np.asarray(ds.hf_dataset['intervention'])))
    assert all(emulator.register(i, 'Torque_Enable') == 0 for i in range(1, 7))


SEED_FLAGS = [
    '--strategy.type=dagger',
    '--policy.path=/ckpt',
    '--robot.type=koch_follower',
    '--robot.port=/dev/ttyX',
    '--robot.id=arm',
    '--robot.cameras={ front: {type: opencv, index_or_path: 0, width: 640, height: 480, '
    'fps: 30}, wrist: {type: opencv, index_or_path: /dev/video2, width: 320, height: 240, fps: 30}}',
    '--dataset.repo_id=me/rollout_towels',
    '--dataset.root=/data/towels',
    '--dataset.single_task=fold',
    '--dataset.push_to_hub=false',
    '--dataset.private=true',
    '--dataset.tags=a,b',
    '--dataset.num_episodes=7',
    '--teleop.type=koch_leader',
    '--teleop.port=/dev/ttyY',
    '--teleop.id=lead',
    '--inference.type=rtc',
    '--fps=15',
    '--duration=60',
    '--strategy.record_autonomous=true',
    '--strategy.upload_every_n_episodes=3',
    '--strategy.target_video_file_size_mb=50',
    '--strategy.input_device=pedal',
    '--strategy.pedal.device_path=/dev/input/event7',
    '--strategy.pedal.correction=KEY_X',
    '--play_sounds=false',
    '--resume=true',
    '--display_data=true',
    '--display_ip=10.0.0.2',
    '--display_port=9000',
]


def test_seed_flags_map_onto_the_nodes(ros):
    cfg = config_from_args(build_parser().parse_args(SEED_FLAGS))
    assert (cfg.strategy, cfg.fps, cfg.task, cfg.inference_type) == ('dagger', 15.0, 'fold', 'rtc')
    assert [(c.name, c.width, c.height) for c in cfg.cameras] == [('front', 640, 480), ('wrist', 320, 240)]
    strategy, managed = build_nodes(cfg)
    try:
        nodes = {n.get_name(): n for n in managed}
        # Hardware last: the follower's driver after the leader's teleop, both after the dataset checks.
        assert list(nodes) == ['policy', 'camera_front', 'camera_wrist', 'recorder', 'pedal', 'teleop', 'robot_driver']
        rec = nodes['recorder']
        assert rec.param('repo_id') == 'me/rollout_towels' and rec.param('root') == '/data/towels'
        assert rec.param('resume') and not rec.param('push_to_hub') and rec.param('private')
        assert list(rec.param('tags')) == ['a', 'b'] and rec.param('fps') == 15
        assert list(rec.param('camera_shapes')) == ['480x640', '240x320']
        assert rec.param('auto_rotate') and rec.param('intervention')
        assert rec.param('target_video_file_size_mb') == 50.0 and rec.param('upload_every_n_episodes') == 3
        assert rec.param('frames_topic') == '/dagger_strategy/frames'
        assert nodes['teleop'].param('teleop_port') == '/dev/ttyY' and nodes['teleop'].param('teleop_id') == 'lead'
        assert nodes['pedal'].param('device_path') == '/dev/input/event7'
        assert strategy.get_name() == 'dagger_strategy'
        assert list(strategy.param('correction_keys')) == ['KEY_X']
        assert list(strategy.param('pause_resume_keys')) == ['KEY_A']
        assert strategy.param('num_episodes') == 7 and strategy.param('record_autonomous')
        assert not strategy.param('play_sounds') and strategy.param('teleop_type') == 'koch_leader'
        assert list(strategy.param('managed_nodes')) == [f'/{n}' for n in nodes]
        assert strategy.param('display_data') and strategy.param('display_ip') == '10.0.0.2'
        assert strategy.param('display_port') == 9000
    finally:
        for node in (strategy, *managed):
            node.destroy_node()


@pytest.mark.parametrize(
    'flags, param',
    [
        (['--strategy.type=sentry'], '--dataset.repo_id'),
        (['--strategy.type=dagger', '--dataset.repo_id=u/rollout_x'], '--teleop.type'),
        (['--strategy.type=sentry', '--dataset.repo_id=u/rollout_x', '--dataset.fps=10'], '--dataset.fps'),
        (['--strategy.type=highlight', '--dataset.repo_id=u/rollout_x', '--resume=true'], '--dataset.root'),
        (['--strategy.type=base', '--dataset.repo_id=u/rollout_x'], '--dataset.repo_id'),
    ],
)
def test_seed_flag_mistakes_are_named(flags, param):
    from rollout_ros.core.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        config_from_args(build_parser().parse_args(flags))
    assert err.value.param == param
