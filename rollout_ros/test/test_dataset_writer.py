# SPDX-License-Identifier: Apache-2.0
"""DatasetWriter: LeRobot v3 round trip, crash safety (SIGKILL, partial saves, full
disk), resume checks, repair of crashed datasets (ours and LeRobot's) and
encoder backpressure. Every dataset is loaded back with lerobot's own
LeRobotDataset, offline."""

import errno
import json
import os
import select
import signal
import time
import warnings
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from rollout_ros.core.errors import ConfigError
from rollout_ros.dataset import writer as writer_mod
from rollout_ros.dataset.cli import main as cli_main
from rollout_ros.dataset.layout import ORPHANS_DIR, STAGING_DIR
from rollout_ros.dataset.repair import repair
from rollout_ros.dataset.video import CameraEncoder, resolve_encoder
from rollout_ros.dataset.writer import DatasetWriter, DiskFullError, make_features

H, W = 96, 128
FPS = 10
CAMS = {'front': (H, W), 'wrist': (H, W)}
REPO = 'test/rollout'
JOINTS = ['shoulder.pos', 'elbow.pos', 'gripper.pos']
TASKS = ['pick the cube', 'place the cube']


def features(**kw):
    return make_features(JOINTS, JOINTS, CAMS, intervention=True, **kw)


def image(cam: int, e: int, i: int) -> np.ndarray:
    """Smooth, moving, different per camera/episode/frame, so a decoded frame can
    be told apart from its neighbours after lossy coding."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    phase = i / 12 + e / 5 + cam / 3
    r = 128 + 90 * np.sin(2 * np.pi * (x / W + phase))
    g = 128 + 90 * np.cos(2 * np.pi * (y / H - phase))
    b = np.full_like(x, 40 + 60 * cam + 10 * e)
    return np.stack([r, g, b], -1).round().astype(np.uint8)


def frame(e: int, i: int) -> dict:
    state = np.array([e, i, e * 100 + i], np.float32) / 7
    return {
        'observation.state': state,
        'action': state + 1,
        'observation.images.front': image(0, e, i),
        'observation.images.wrist': image(1, e, i),
        'intervention': (i + e) % 3 == 0,
        'executed.action': state + 0.5,
        'stamp.observation': 1.7e9 + e * 100 + i * 0.1 + 1e-6,
        'stamp.action_sent': 1.7e9 + e * 100 + i * 0.1 + 2e-6,
        'stamp.camera.front': 1.7e9 + e * 100 + i * 0.1 - 3e-6,
        'stamp.camera.wrist': 1.7e9 + e * 100 + i * 0.1 - 4e-6,
    }


def record(w: DatasetWriter, e: int, n: int, task: str | None = None) -> dict:
    for i in range(n):
        w.add_frame(frame(e, i), task or TASKS[e % 2])
    return w.save_episode()


def load(root):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset(REPO, root=root, video_backend='pyav')


def count_video_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for p in c.demux(video=0) if p.size)


LENGTHS = [6, 7, 8]


def test_round_trip_loads_in_lerobot(tmp_path):
    root = tmp_path / 'ds'
    with DatasetWriter.create(root, REPO, FPS, 'koch_follower', features()) as w:
        results = [record(w, e, n) for e, n in enumerate(LENGTHS)]
        assert (w.num_episodes, w.num_frames, w.episode_frames) == (3, sum(LENGTHS), 0)
    assert [r['length'] for r in results] == LENGTHS
    assert all(r['video_bytes']['front'] > 0 and r['video_bytes']['wrist'] > 0 for r in results)

    ds = load(root)
    assert ds.num_episodes == 3 and len(ds) == sum(LENGTHS)
    assert ds.meta.episodes['length'] == LENGTHS
    # Stamps are float64 on disk, exact; LeRobotDataset.__getitem__ hands every
    # python float out as a float32 tensor, so they are compared here.
    rows = ds.hf_dataset.with_format('arrow')[:]
    want = [frame(e, i) for e, n in enumerate(LENGTHS) for i in range(n)]
    for key in ('stamp.observation', 'stamp.action_sent', 'stamp.camera.front', 'stamp.camera.wrist'):
        assert str(rows[key].type) == 'double'
        assert rows[key].to_pylist() == [f[key] for f in want], key
    index = 0
    for e, n in enumerate(LENGTHS):
        for i in range(n):
            item, want = ds[index], frame(e, i)
            for key in ('observation.state', 'action', 'executed.action'):
                np.testing.assert_array_equal(item[key].numpy(), want[key], err_msg=f'{key} row {index}')
            assert bool(item['intervention']) == want['intervention']
            assert item['timestamp'].item() == pytest.approx(i / FPS)
            assert (item['frame_index'].item(), item['episode_index'].item(), item['index'].item()) == (i, e, index)
            assert item['task'] == TASKS[e % 2] and item['task_index'].item() == e % 2
            for cam, key in enumerate(('observation.images.front', 'observation.images.wrist')):
                got = item[key].numpy().transpose(1, 2, 0) * 255
                diff = np.abs(got - image(cam, e, i)).mean()
                assert diff < 6, f'{key} row {index}: mean abs diff {diff:.1f}'
                # ...and it is this frame, not a neighbour.
                if i:
                    assert diff < np.abs(got - image(cam, e, i - 1)).mean()
            index += 1

    info = json.loads((root / 'meta/info.json').read_text())
    assert info['codebase_version'] == 'v3.0' and info['fps'] == FPS and info['robot_type'] == 'koch_follower'
    assert (info['total_episodes'], info['total_frames'], info['total_tasks']) == (3, sum(LENGTHS), 2)
    assert info['splits'] == {'train': '0:3'}
    assert (info['chunks_size'], info['data_files_size_in_mb'], info['video_files_size_in_mb']) == (1000, 100, 200)
    for key in ('observation.images.front', 'observation.images.wrist'):
        vinfo = info['features'][key]['info']
        assert vinfo['video.codec'] == 'av1' and vinfo['video.pix_fmt'] == 'yuv420p'
        assert (vinfo['video.height'], vinfo['video.width'], vinfo['video.fps']) == (H, W, FPS)
        assert (vinfo['video.g'], vinfo['video.crf'], vinfo['video.preset']) == (2, 30, 12)
        for e, n in enumerate(LENGTHS):
            assert count_video_frames(root / ds.meta.get_video_file_path(e, key)) == n

    states = np.stack([frame(e, i)['observation.state'] for e, n in enumerate(LENGTHS) for i in range(n)])
    stats = ds.meta.stats
    np.testing.assert_allclose(stats['observation.state']['min'], states.min(0))
    np.testing.assert_allclose(stats['observation.state']['max'], states.max(0))
    np.testing.assert_allclose(stats['observation.state']['mean'], states.mean(0), rtol=1e-5)
    assert stats['observation.state']['count'].item() == sum(LENGTHS)
    assert stats['index']['max'].item() == sum(LENGTHS) - 1
    pixels = np.stack([image(0, e, i) for e, n in enumerate(LENGTHS) for i in range(n)]) / 255
    front = stats['observation.images.front']
    assert front['mean'].shape == (3, 1, 1) and front['q50'].shape == (3, 1, 1)
    np.testing.assert_allclose(front['mean'].ravel(), pixels.mean((0, 1, 2)), atol=0.03)
    np.testing.assert_allclose(front['max'].ravel(), pixels.max((0, 1, 2)), atol=0.02)
    # The extras must not look like policy inputs/outputs to lerobot.
    from lerobot.utils.feature_utils import dataset_to_policy_features

    assert set(dataset_to_policy_features(ds.meta.features)) == {
        'observation.state',
        'action',
        'observation.images.front',
        'observation.images.wrist',
    }


def test_make_features_shapes_and_names():
    f = make_features(['a', 'b'], ['a', 'b'], {'top': (480, 640)}, intervention=False, timing=False)
    assert set(f) == {'observation.state', 'action', 'observation.images.top'}
    assert f['observation.images.top'] == {
        'dtype': 'video',
        'shape': (480, 640, 3),
        'names': ['height', 'width', 'channels'],
    }
    f = make_features(['a'], ['b', 'c'], {'top': (4, 6)}, intervention=True)
    assert f['intervention'] == {'dtype': 'bool', 'shape': (1,), 'names': None}
    assert f['executed.action']['names'] == ['b', 'c'] and f['stamp.camera.top']['dtype'] == 'float64'
    with pytest.raises(ConfigError, match='state_names'):
        make_features(['a', 'a'], ['b'], {})
    with pytest.raises(ConfigError, match='contains "image"'):
        make_features(['a'], ['b'], {'image_top': (4, 6)})


def test_add_frame_rejects_bad_frames_without_keeping_a_row(tmp_path):
    with DatasetWriter.create(tmp_path / 'ds', REPO, FPS, 'koch_follower', features()) as w:
        bad = frame(0, 0)
        bad['observation.state'] = np.zeros(4, np.float32)
        with pytest.raises(ValueError, match='observation.state'):
            w.add_frame(bad, 'x')
        bad = frame(0, 0)
        bad['observation.images.front'] = bad['observation.images.front'].astype(np.float32)
        with pytest.raises(ValueError, match='uint8'):
            w.add_frame(bad, 'x')
        bad = frame(0, 0)
        del bad['intervention']
        with pytest.raises(ValueError, match='missing'):
            w.add_frame(bad, 'x')
        assert w.episode_frames == 0


def kill_while(record, root: Path) -> None:
    """Run `record(root, ready)` in a forked child and SIGKILL it as soon as it
    calls ready(). Forking skips a 5 s interpreter start-up; the parent only
    has tqdm's monitor and Arrow's pool threads, which survive a fork, and a
    child that hangs anyway fails the test after a minute instead of hanging it."""
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)  # "multi-threaded, use of fork()"
        pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            os.close(read_fd)
            record(root, lambda: os.write(write_fd, b'R'))
            time.sleep(120)
        finally:
            os._exit(1)
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], 60)
        assert ready and os.read(read_fd, 1) == b'R', 'the writer child failed or hung before getting ready'
    finally:
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(read_fd)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def two_episodes_then_open_third(root: Path, ready) -> None:
    w = DatasetWriter.create(root, REPO, FPS, 'koch_follower', features())
    record(w, 0, 6)
    record(w, 1, 7)
    for i in range(40):
        w.add_frame(frame(2, i), TASKS[0])
    while not all(w.open_episode_video_bytes().values()):
        time.sleep(0.01)
    ready()


def test_sigkill_mid_episode_keeps_finished_episodes_and_resumes(tmp_path):
    root = tmp_path / 'ds'
    kill_while(two_episodes_then_open_third, root)
    assert any((root / STAGING_DIR).iterdir()), 'the open episode should have left partial videos'
    ds = load(root)  # without repair
    assert ds.num_episodes == 2 and len(ds) == 13
    assert ds.meta.episodes['length'] == [6, 7]
    ds[len(ds) - 1]

    with DatasetWriter.resume(root, fps=FPS, robot_type='koch_follower', features=features(), repo_id=REPO) as w:
        assert (w.num_episodes, w.num_frames) == (2, 13)
        assert not any((root / STAGING_DIR).iterdir())
        result = record(w, 2, 8)
    assert result['episode_index'] == 2
    ds = load(root)
    assert ds.num_episodes == 3 and ds.meta.episodes['length'] == [6, 7, 8]
    item = ds[len(ds) - 1]
    assert (item['episode_index'].item(), item['frame_index'].item(), item['index'].item()) == (2, 7, 20)
    np.testing.assert_array_equal(item['action'].numpy(), frame(2, 7)['action'])


@pytest.mark.parametrize(
    'change, param',
    [
        ({'fps': 15}, 'fps'),
        ({'robot_type': 'so101_follower'}, 'robot_type'),
        ({'features': make_features(JOINTS, JOINTS, {'front': (H, W)}, intervention=True)}, 'features'),
        (
            {'features': make_features(JOINTS, JOINTS, {'front': (H, W), 'wrist': (H * 2, W * 2)}, intervention=True)},
            'features.observation.images.wrist',
        ),
        ({'features': make_features(JOINTS[::-1], JOINTS, CAMS, intervention=True)}, 'features.observation.state'),
        ({'features': make_features(JOINTS, JOINTS, CAMS, intervention=False)}, 'features'),
    ],
)
def test_resume_mismatch_names_the_parameter(tmp_path, change, param):
    root = tmp_path / 'ds'
    DatasetWriter.create(root, REPO, FPS, 'koch_follower', features()).finalize()
    before = (root / 'meta/info.json').read_bytes()
    kwargs = {'fps': FPS, 'robot_type': 'koch_follower', 'features': features(), **change}
    with pytest.raises(ConfigError) as exc:
        DatasetWriter.resume(root, **kwargs)
    assert exc.value.param == param
    assert (root / 'meta/info.json').read_bytes() == before


def test_create_refuses_an_existing_dataset_and_a_second_writer(tmp_path):
    root = tmp_path / 'ds'
    with DatasetWriter.create(root, REPO, FPS, 'koch_follower', features()):
        with pytest.raises(ConfigError, match='already holds'):
            DatasetWriter.create(root, REPO, FPS, 'koch_follower', features())
        from rollout_ros.dataset.layout import DatasetBusyError

        with pytest.raises(DatasetBusyError):
            DatasetWriter.resume(root, fps=FPS, robot_type='koch_follower', features=features())


def test_encoder_backpressure_blocks_instead_of_dropping(tmp_path, monkeypatch):
    slow_mux = CameraEncoder._mux

    def mux(self, container, packets):
        time.sleep(0.03)
        slow_mux(self, container, packets)

    monkeypatch.setattr(CameraEncoder, '_mux', mux)
    root = tmp_path / 'ds'
    with DatasetWriter.create(root, REPO, FPS, 'koch_follower', features(), encoder_queue_size=2) as w:
        result = record(w, 0, 20)
        assert w.backpressure_waits > 0 and w.backpressure_seconds > 0
        assert result['backpressure_waits'] == w.backpressure_waits
    ds = load(root)
    for key in ('observation.images.front', 'observation.images.wrist'):
        assert count_video_frames(root / ds.meta.get_video_file_path(0, key)) == 20 == len(ds)


def test_disk_full_during_save_keeps_earlier_episodes_and_can_retry(tmp_path, monkeypatch):
    root = tmp_path / 'ds'
    with DatasetWriter.create(root, REPO, FPS, 'koch_follower', features()) as w:
        record(w, 0, 6)
        real_write = pq.write_table

        def full(*a, **kw):
            raise OSError(errno.ENOSPC, 'No space left on device')

        monkeypatch.setattr(pq, 'write_table', full)
        for i in range(7):
            w.add_frame(frame(1, i), TASKS[1])
        with pytest.raises(DiskFullError, match='1 earlier episodes are intact'):
            w.save_episode()
        assert not [p for p in (root / STAGING_DIR).iterdir() if p.suffix == '.tmp']
        assert load(root).num_episodes == 1
        with pytest.raises(RuntimeError, match='save failed'):
            w.add_frame(frame(1, 7), TASKS[1])
        monkeypatch.setattr(pq, 'write_table', real_write)
        assert w.save_episode()['length'] == 7
    ds = load(root)
    assert ds.num_episodes == 2 and ds.meta.episodes['length'] == [6, 7]
    np.testing.assert_array_equal(ds[12]['action'].numpy(), frame(1, 6)['action'])


class _Crash(BaseException):
    pass


def test_crash_after_files_published_before_commit_is_rolled_forward(tmp_path, monkeypatch):
    root = tmp_path / 'ds'
    w = DatasetWriter.create(root, REPO, FPS, 'koch_follower', features())
    record(w, 0, 6)
    real = writer_mod.rows_table

    def crash(rows):
        raise _Crash

    monkeypatch.setattr(writer_mod, 'rows_table', crash)
    with pytest.raises(_Crash):
        record(w, 1, 7)
    monkeypatch.setattr(writer_mod, 'rows_table', real)
    w._lock.release()  # the process "died" holding it
    assert len(list((root / 'data').glob('*/*.parquet'))) == 2
    assert load(root).num_episodes == 1  # loadable even before repair

    report = repair(root)
    assert any('rebuilt the lost metadata of episode 1' in a for a in report.actions), report.text()
    assert not report.problems and (report.episodes, report.frames) == (2, 13)
    ds = load(root)
    assert ds.num_episodes == 2 and ds.meta.episodes['length'] == [6, 7]
    np.testing.assert_array_equal(ds[12]['observation.state'].numpy(), frame(1, 6)['observation.state'])
    assert repair(root).actions == []


def test_repair_fixes_info_counting_missing_episodes_and_orphans(tmp_path, capsys):
    root = tmp_path / 'ds'
    with DatasetWriter.create(root, REPO, FPS, 'koch_follower', features()) as w:
        record(w, 0, 6)
        record(w, 1, 7)
    # An episode whose data landed but whose videos did not (not finished), and a
    # stray copy of a finished episode's file: neither may cost a finished episode.
    import pyarrow.compute as pc

    table = pq.read_table(root / 'data/chunk-000/file-001.parquet')
    table = table.set_column(
        table.schema.get_field_index('episode_index'), 'episode_index', pc.add(table.column('episode_index'), 1)
    )
    table = table.set_column(table.schema.get_field_index('index'), 'index', pc.add(table.column('index'), 7))
    orphan = root / 'data/chunk-000/file-002.parquet'
    pq.write_table(table, orphan)
    copy = root / 'data/chunk-000/file-003.parquet'
    copy.write_bytes((root / 'data/chunk-000/file-001.parquet').read_bytes())
    info = json.loads((root / 'meta/info.json').read_text())
    info['total_episodes'], info['total_frames'] = 5, 40
    (root / 'meta/info.json').write_text(json.dumps(info))

    assert cli_main(['info', str(root), '--json']) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary['episodes'] == 5 and any('counts 5 episodes' in s for s in summary['needs_repair'])
    assert cli_main(['repair', str(root)]) == 0
    out = capsys.readouterr().out
    assert '5 -> 2 episodes' in out and 'file-002.parquet' in out and 'PROBLEM' not in out
    for stray in (orphan, copy):
        assert not stray.exists() and list((root / ORPHANS_DIR).rglob(stray.name))
    ds = load(root)
    assert ds.num_episodes == 2 and len(ds) == 13


def lerobot_frame(e: int, i: int) -> dict:
    return {
        'observation.state': np.array([e, i], np.float32),
        'action': np.array([e, -i], np.float32),
        'observation.images.cam': np.full((48, 64, 3), 30 * i + 5 * e, np.uint8),
        'task': f'task {e % 2}',
    }


def lerobot_three_episodes_then_open_fourth(root: Path, ready) -> None:
    """LeRobot's own writer, streaming encoder on; killed before finalize()
    so its parquet footers are never written."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    feats = {
        'observation.state': {'dtype': 'float32', 'shape': (2,), 'names': ['a', 'b']},
        'action': {'dtype': 'float32', 'shape': (2,), 'names': ['a', 'b']},
        'observation.images.cam': {'dtype': 'video', 'shape': (48, 64, 3), 'names': ['height', 'width', 'channels']},
    }
    ds = LeRobotDataset.create(
        'test/lerobot', fps=10, features=feats, root=root, robot_type='koch', streaming_encoding=True
    )
    for e in range(3):
        for i in range(5 + e):
            ds.add_frame(lerobot_frame(e, i))
        ds.save_episode()
    for i in range(3):
        ds.add_frame(lerobot_frame(3, i))
    ready()


def test_repair_recovers_a_lerobot_dataset_killed_before_finalize(tmp_path):
    root = tmp_path / 'lr'
    kill_while(lerobot_three_episodes_then_open_fourth, root)
    assert json.loads((root / 'meta/info.json').read_text())['total_episodes'] == 3
    assert not list((root / 'meta/episodes').rglob('*.parquet'))  # metadata never flushed
    with pytest.raises(Exception):  # noqa: B017 - whatever pyarrow raises for a footer-less file
        pq.read_metadata(root / 'data/chunk-000/file-000.parquet')  # footer-less
    with pytest.raises(Exception):  # noqa: B017 - LeRobot's own error for an unrepaired dataset
        load(root)

    report = repair(root)
    assert not report.problems, report.text()
    assert (report.episodes, report.frames) == (3, 18)
    ds = load(root)
    assert ds.num_episodes == 3 and ds.meta.episodes['length'] == [5, 6, 7]
    index = 0
    for e in range(3):
        for i in range(5 + e):
            item = ds[index]
            np.testing.assert_array_equal(item['action'].numpy(), [e, -i])
            assert item['task'] == f'task {e % 2}'
            pixel = item['observation.images.cam'].numpy().mean() * 255
            assert abs(pixel - (30 * i + 5 * e)) < 4, (e, i, pixel)
            index += 1
    assert repair(root).actions == []
    # And our writer can continue it.
    feats = json.loads((root / 'meta/info.json').read_text())['features']
    with DatasetWriter.resume(root, fps=10, robot_type='koch', features=feats, repo_id=REPO) as w:
        for i in range(4):
            w.add_frame(
                {
                    'observation.state': [3, i],
                    'action': [3, -i],
                    'observation.images.cam': np.full((48, 64, 3), 50, np.uint8),
                },
                'task 1',
            )
        w.save_episode()
    ds = load(root)
    assert ds.num_episodes == 4 and len(ds) == 22
    assert ds[21]['action'].tolist() == [3, -3]


def test_codec_fallback_and_recorded_codec(tmp_path, monkeypatch):
    from lerobot.configs import RGBEncoderConfig

    def no_svt(vcodec='libsvtav1', **kw):
        if vcodec == 'libsvtav1':
            raise ValueError('Unsupported video codec: libsvtav1')
        return RGBEncoderConfig(vcodec=vcodec, **kw)

    monkeypatch.setattr('rollout_ros.dataset.video.RGBEncoderConfig', no_svt)
    assert resolve_encoder('libsvtav1').vcodec == 'h264'
    monkeypatch.undo()
    root = tmp_path / 'ds'
    feats = make_features(JOINTS, JOINTS, {'front': (H, W)}, timing=False)
    with DatasetWriter.create(root, REPO, FPS, 'koch_follower', feats, vcodec='libx264') as w:
        assert w.codec == 'h264'
        for i in range(5):
            w.add_frame(
                {'observation.state': np.zeros(3), 'action': np.zeros(3), 'observation.images.front': image(0, 0, i)},
                'x',
            )
        w.save_episode()
    info = json.loads((root / 'meta/info.json').read_text())
    assert info['features']['observation.images.front']['info']['video.codec'] == 'h264'
    assert len(load(root)) == 5


def test_encoder_failure_is_reported_and_the_episode_can_be_discarded(tmp_path, monkeypatch):
    real_mux = CameraEncoder._mux

    def mux(self, container, packets):
        if self.name == 'encoder-wrist' and self.frames_encoded >= 3:
            raise OSError(errno.ENOSPC, 'No space left on device')
        real_mux(self, container, packets)

    root = tmp_path / 'ds'
    with DatasetWriter.create(root, REPO, FPS, 'koch_follower', features()) as w:
        record(w, 0, 6)
        monkeypatch.setattr(CameraEncoder, '_mux', mux)
        with pytest.raises(DiskFullError, match='discard_episode'):
            for i in range(200):
                w.add_frame(frame(1, i), TASKS[1])
                time.sleep(0.005)
        with pytest.raises(RuntimeError, match='discard_episode'):
            w.save_episode()
        w.discard_episode()
        monkeypatch.setattr(CameraEncoder, '_mux', real_mux)
        record(w, 1, 5)
    ds = load(root)
    assert ds.meta.episodes['length'] == [6, 5] and not any((root / STAGING_DIR).iterdir())


H264_ENCODE = """
import sys
from pathlib import Path
import av
import numpy as np
from rollout_ros.dataset.video import CameraEncoder, resolve_encoder
av.logging.restore_default_callback()   # as LeRobot leaves it after one of its encodes or decodes
enc = CameraEncoder(Path(sys.argv[1]), 30, resolve_encoder('h264'), 8)
enc.start()
for i in range(30):
    enc.put(np.full((64, 64, 3), i * 8, np.uint8))
enc.request_finish()
enc.wait()
"""


def test_h264_encoding_prints_no_encoder_statistics(tmp_path):
    import subprocess
    import sys

    video = tmp_path / 'x.mp4'
    proc = subprocess.run([sys.executable, '-c', H264_ENCODE, str(video)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == '', proc.stderr
    with av.open(str(video)) as container:
        assert container.streams.video[0].codec_context.name in ('h264', 'libx264')
        assert sum(1 for _ in container.decode(video=0)) == 30


def test_lerobots_push_to_hub_uploads_the_dataset_and_none_of_our_bookkeeping(tmp_path, monkeypatch):
    """LeRobotDataset.push_to_hub, as a user runs it on a recording still open (lock held, a file
    being staged) and one repair left an orphan in: the Hub gets exactly the dataset's files."""
    import huggingface_hub.constants
    import huggingface_hub.repocard
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from test_dataset_hub import FakeHub

    from rollout_ros.dataset.layout import LOCK_FILE

    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', False)
    monkeypatch.setattr(huggingface_hub.constants, 'ENDPOINT', hub.endpoint)
    monkeypatch.setenv('HF_TOKEN', 'hf_FAKEtokenForTheStandIn')
    # The dataset card goes through the Hub client made at import, aimed at the real Hub: skipped, it
    # is no file of the dataset folder.
    monkeypatch.setattr(huggingface_hub.repocard.RepoCard, 'push_to_hub', lambda self, *a, **k: None)
    root = tmp_path / 'ds'
    try:
        with DatasetWriter.create(root, REPO, FPS, 'koch_follower', features()) as w:
            for e, n in enumerate(LENGTHS[:2]):
                record(w, e, n)
            for rel in (f'{STAGING_DIR}/file-009.parquet.1.tmp', f'{ORPHANS_DIR}/file-007.mp4'):
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(b'not dataset content')
            assert (root / LOCK_FILE).exists()
            dataset_files = {
                p.relative_to(root).as_posix()
                for p in root.rglob('*')
                if p.is_file() and p.relative_to(root).parts[0] in ('meta', 'data', 'videos')
            }
            LeRobotDataset(REPO, root=root, video_backend='pyav').push_to_hub(tag_version=False)
        ((repo, state),) = hub.repos.items()
    finally:
        hub.close()
    uploaded = set(state['files'])
    assert uploaded == dataset_files, uploaded ^ dataset_files
    assert {'meta/info.json', 'data/chunk-000/file-000.parquet'} <= uploaded
