# SPDX-License-Identifier: Apache-2.0
"""The plain-Python policy layer against a real (tiny, random-weight) ACT checkpoint."""

import os

os.environ.setdefault('HF_HUB_OFFLINE', '1')

import math
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rollout_ros.hardware.robots import get_robot_spec
from rollout_ros.policy.loading import (
    FEATURES_SIDECAR,
    PolicyConfigError,
    check_features,
    load_policy,
)
from rollout_ros.policy.sync_engine import ObservationError, SyncPolicyEngine
from rollout_ros.policy.tiny_checkpoint import make_tiny_act_checkpoint

JOINTS = get_robot_spec('koch_follower').feature_names  # the demo arm's, in lerobot's order
CHW = (3, 48, 64)
CHUNK = 5


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
    return make_tiny_act_checkpoint(
        tmp_path_factory.mktemp('ckpt') / 'tiny_act', JOINTS, {'front': CHW}, chunk_size=CHUNK, seed=0
    )


@pytest.fixture(scope='module')
def loaded(ckpt):
    return load_policy(str(ckpt))


def _obs(seed=0):
    rng = np.random.default_rng(seed)
    state = {name: float(rng.uniform(-60, 60)) for name in JOINTS}
    image = rng.integers(0, 256, size=(CHW[1], CHW[2], 3), dtype=np.uint8)
    return state, image


def _engine(loaded, joints=JOINTS, cameras=('front',), rename_map=None):
    return SyncPolicyEngine(loaded, check_features(loaded, list(joints), list(cameras), rename_map), task='t')


def test_checkpoint_is_a_real_lerobot_checkpoint(ckpt):
    from lerobot.configs import PreTrainedConfig
    from lerobot.policies import make_pre_post_processors
    from lerobot.policies.act.modeling_act import ACTPolicy

    for name in ('config.json', 'model.safetensors', 'policy_preprocessor.json', 'policy_postprocessor.json'):
        assert (ckpt / name).is_file(), name
    assert list(ckpt.glob('policy_preprocessor_step_*_normalizer_processor.safetensors'))
    assert list(ckpt.glob('policy_postprocessor_step_*_unnormalizer_processor.safetensors'))

    policy = ACTPolicy.from_pretrained(ckpt)
    config = PreTrainedConfig.from_pretrained(ckpt)
    pre, post = make_pre_post_processors(config, pretrained_path=str(ckpt))
    assert config.type == 'act' and config.pretrained_backbone_weights is None
    assert config.n_action_steps == config.chunk_size == CHUNK
    assert policy.config.input_features['observation.images.front'].shape == CHW
    assert policy.config.output_features['action'].shape == (len(JOINTS),)
    assert len(pre.steps) > 0 and len(post.steps) > 0


def test_loaded_policy_reports_features(loaded):
    assert loaded.policy_type == 'act'
    assert loaded.state_dim == loaded.action_dim == len(JOINTS)
    assert loaded.image_keys == ['observation.images.front']
    assert loaded.image_shapes == {'observation.images.front': CHW}
    assert loaded.state_names == JOINTS and loaded.action_names == JOINTS
    assert loaded.fps == 30 and loaded.chunk_size == CHUNK and loaded.n_action_steps == CHUNK


def test_same_seed_same_weights_other_seed_differs(ckpt, tmp_path):
    again = make_tiny_act_checkpoint(tmp_path / 'a', JOINTS, {'front': CHW}, chunk_size=CHUNK, seed=0)
    other = make_tiny_act_checkpoint(tmp_path / 'b', JOINTS, {'front': CHW}, chunk_size=CHUNK, seed=1)
    ref, same, diff = (load_file(p / 'model.safetensors') for p in (ckpt, again, other))
    assert all(torch.equal(ref[k], same[k]) for k in ref)
    assert any(not torch.equal(ref[k], diff[k]) for k in ref)


def test_infer_returns_finite_action_per_joint(loaded):
    engine = _engine(loaded)
    state, image = _obs()
    action = engine.infer(state, {'front': image})
    assert set(action) == set(JOINTS)
    assert all(math.isfinite(v) for v in action.values())
    assert engine.last_timing.ran_model is True
    assert engine.last_timing.model_ms > 0


def test_chunk_is_cached_between_model_runs(loaded):
    engine = _engine(loaded)
    state, image = _obs()
    ran = []
    for _ in range(CHUNK + 1):
        engine.infer(state, {'front': image})
        ran.append(engine.last_timing.ran_model)
    assert ran == [True] + [False] * (CHUNK - 1) + [True]
    engine.reset()
    engine.infer(state, {'front': image})
    assert engine.last_timing.ran_model is True


def test_two_fresh_engines_give_the_same_first_action(ckpt):
    state, image = _obs(3)
    first = [_engine(load_policy(str(ckpt))).infer(state, {'front': image}) for _ in range(2)]
    assert first[0] == first[1]


def test_robot_joint_order_does_not_matter(loaded):
    state, image = _obs(1)
    shuffled = [JOINTS[i] for i in (3, 0, 5, 1, 4, 2)]
    ref = _engine(loaded).infer(state, {'front': image})
    binding = check_features(loaded, shuffled, ['front'])
    assert binding.state_order == JOINTS and binding.action_order == JOINTS
    got = SyncPolicyEngine(loaded, binding).infer(dict(reversed(state.items())), {'front': image})
    assert got == pytest.approx(ref, abs=1e-6)


def test_state_values_reach_the_policy_by_name(loaded):
    # Guards the test above: if the policy ignored the state, order could not matter.
    state, image = _obs(1)
    swapped = dict(state)
    swapped[JOINTS[0]], swapped[JOINTS[1]] = state[JOINTS[1]], state[JOINTS[0]]
    a = _engine(loaded).infer(state, {'front': image})
    b = _engine(loaded).infer(swapped, {'front': image})
    assert a != pytest.approx(b, abs=1e-4)


def test_joint_name_mismatch_lists_missing_and_extra(loaded):
    with pytest.raises(PolicyConfigError) as err:
        check_features(loaded, JOINTS[:-1] + ['claw.pos'], ['front'])
    msg = str(err.value)
    assert 'joint_names' in msg and 'gripper.pos' in msg and 'claw.pos' in msg


def test_unnamed_checkpoint_falls_back_to_robot_order_only_when_dims_match(ckpt, tmp_path):
    bare = shutil.copytree(ckpt, tmp_path / 'bare')
    (bare / FEATURES_SIDECAR).unlink()
    unnamed = load_policy(str(bare))
    assert unnamed.state_names is None and unnamed.action_names is None
    robot = ['a.pos', 'b.pos', 'c.pos', 'd.pos', 'e.pos', 'f.pos']
    binding = check_features(unnamed, robot, ['front'])
    assert binding.state_order == robot and not binding.state_by_name
    with pytest.raises(PolicyConfigError, match=r'dim is 6 and joint_names has 7'):
        check_features(unnamed, robot + ['g.pos'], ['front'])


def test_missing_camera_suggests_rename_map(loaded):
    with pytest.raises(PolicyConfigError) as err:
        check_features(loaded, JOINTS, ['top', 'wrist'])
    msg = str(err.value)
    assert 'rename_map' in msg and 'observation.images.front' in msg and 'observation.images.top' in msg


def test_rename_map_binds_camera(loaded):
    state, image = _obs()
    ref = _engine(loaded).infer(state, {'front': image})
    # Built after the reference run: engines on one LoadedPolicy share its action queue.
    engine = _engine(
        loaded, cameras=['top', 'wrist'], rename_map={'observation.images.top': 'observation.images.front'}
    )
    assert engine.binding.image_sources == {'observation.images.front': 'top'}
    assert engine.binding.ignored_cameras == ['wrist']
    assert engine.infer(state, {'top': image}) == pytest.approx(ref, abs=1e-6)


def test_rename_map_with_unknown_camera_is_rejected(loaded):
    with pytest.raises(PolicyConfigError, match='rename_map'):
        check_features(loaded, JOINTS, ['front'], {'observation.images.tpo': 'observation.images.front'})


def test_wrong_image_size_names_camera_and_shapes(loaded):
    state, _ = _obs()
    with pytest.raises(ObservationError) as err:
        _engine(loaded).infer(state, {'front': np.zeros((480, 640, 3), np.uint8)})
    msg = str(err.value)
    assert "'front'" in msg and '(480, 640, 3)' in msg and f'({CHW[1]}, {CHW[2]}, {CHW[0]})' in msg


def test_missing_joint_in_state_is_reported(loaded):
    state, image = _obs()
    del state['gripper.pos']
    with pytest.raises(ObservationError, match='gripper.pos'):
        _engine(loaded).infer(state, {'front': image})


@pytest.mark.parametrize('path', ['', '/nonexistent/rollout_ros/ckpt', './no_such_dir'])
def test_bad_policy_path_is_named(path):
    with pytest.raises(PolicyConfigError, match='policy_path'):
        load_policy(path)


@pytest.mark.parametrize('drop', ['config.json', 'model.safetensors'])
def test_incomplete_checkpoint_is_named(ckpt, tmp_path, drop):
    broken = shutil.copytree(ckpt, tmp_path / 'broken')
    (broken / drop).unlink()
    with pytest.raises(PolicyConfigError, match=rf'policy_path.*{drop}'):
        load_policy(str(broken))


def test_uncached_hub_id_offline_says_not_in_cache():
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        pytest.skip('needs HF_HUB_OFFLINE=1 set before huggingface_hub is imported')
    with pytest.raises(PolicyConfigError, match=r'policy_path.*not in the local Hugging Face cache'):
        load_policy('rollout-ros-test/definitely-not-cached-act')


def test_cached_hub_id_loads_offline(ckpt, tmp_path, monkeypatch):
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        pytest.skip('needs HF_HUB_OFFLINE=1 set before huggingface_hub is imported')
    # The Hub cache layout: refs/main holds the commit, snapshots/<commit>/ the files.
    commit = '0123456789abcdef0123456789abcdef01234567'
    repo = tmp_path / 'models--tester--tiny_act'
    (repo / 'refs').mkdir(parents=True)
    (repo / 'refs' / 'main').write_text(commit)
    shutil.copytree(ckpt, repo / 'snapshots' / commit)
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path))
    hub = load_policy('tester/tiny_act')
    assert hub.checkpoint_dir == repo / 'snapshots' / commit
    assert hub.state_names == JOINTS


@pytest.mark.parametrize('device', ['tpu', 'cuda', 'mps'])
def test_bad_device_is_named(ckpt, device):
    available = {'tpu': False, 'cuda': torch.cuda.is_available(), 'mps': torch.backends.mps.is_available()}
    if available[device]:
        pytest.skip(f'{device} is available here')
    with pytest.raises(PolicyConfigError, match='device'):
        load_policy(str(ckpt), device=device)


def test_auto_device_loads(ckpt):
    assert load_policy(str(ckpt), device='auto').device in ('cpu', 'cuda', 'mps')


# ---------------------------------------------------------------- Diffusion


@pytest.fixture(scope='module')
def diffusion_ckpt(tmp_path_factory):
    pytest.importorskip('diffusers', reason="lerobot's Diffusion policy needs the 'diffusion' extra")
    from rollout_ros.policy.tiny_checkpoint import make_tiny_diffusion_checkpoint

    return make_tiny_diffusion_checkpoint(
        tmp_path_factory.mktemp('diffusion') / 'tiny_diffusion', JOINTS, {'front': (3, 96, 128)}
    )


def test_tiny_diffusion_is_a_real_lerobot_checkpoint(diffusion_ckpt):
    from lerobot.configs import PreTrainedConfig
    from lerobot.policies import make_pre_post_processors
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    for name in ('config.json', 'model.safetensors', 'policy_preprocessor.json', 'policy_postprocessor.json'):
        assert (diffusion_ckpt / name).is_file(), name
    config = PreTrainedConfig.from_pretrained(diffusion_ckpt)
    assert config.type == 'diffusion'
    # Nothing to download: no pretrained backbone, group norm instead of its batch-norm statistics.
    assert config.pretrained_backbone_weights is None and config.use_group_norm
    policy = DiffusionPolicy.from_pretrained(diffusion_ckpt)
    assert policy.config.output_features['action'].shape == (len(JOINTS),)
    pre, post = make_pre_post_processors(config, pretrained_path=str(diffusion_ckpt))
    assert len(pre.steps) > 0 and len(post.steps) > 0


def test_tiny_diffusion_through_the_sync_engine(diffusion_ckpt):
    loaded = load_policy(str(diffusion_ckpt))
    assert loaded.policy_type == 'diffusion' and loaded.state_names == JOINTS
    engine = SyncPolicyEngine(loaded, check_features(loaded, JOINTS, ['front']), task='t')
    rng = np.random.default_rng(0)
    state = {name: float(rng.uniform(-60, 60)) for name in JOINTS}
    image = rng.integers(0, 256, size=(96, 128, 3), dtype=np.uint8)
    steps = loaded.n_action_steps
    ran, actions = [], []
    for _ in range(steps + 1):
        actions.append(engine.infer(state, {'front': image}))
        ran.append(engine.last_timing.ran_model)
    # One denoising run per n_action_steps ticks, the chunk served from the queue between.
    assert ran == [True] + [False] * (steps - 1) + [True]
    assert all(set(a) == set(JOINTS) and all(math.isfinite(v) for v in a.values()) for a in actions)
    assert len({a[JOINTS[0]] for a in actions[:steps]}) > 1, "the chunk's actions should differ"


def test_cached_act_steps_match_lerobots_own_pipeline(ckpt):
    """ACT's queued steps skip our preprocessing; every action still equals
    what lerobot's own preprocessor -> select_action -> postprocessor gives
    for the same observations, across chunk boundaries."""
    from lerobot.policies.utils import build_inference_frame, make_robot_action

    ours, theirs = _engine(load_policy(str(ckpt))), load_policy(str(ckpt))
    theirs.policy.reset()
    preprocess, calls = ours.loaded.preprocessor, []
    ours.loaded.preprocessor = lambda frame: calls.append(1) or preprocess(frame)
    for i in range(2 * CHUNK + 1):
        state, image = _obs(i)  # a new observation every tick
        got = ours.infer(state, {'front': image})
        with torch.inference_mode():
            frame = build_inference_frame(
                {**state, 'front': image}, torch.device('cpu'), ours._batcher.ds_features, task='t'
            )
            action = theirs.postprocessor(theirs.policy.select_action(theirs.preprocessor(frame)))
        want = make_robot_action(action, ours._batcher.action_features)
        assert got == pytest.approx(want, abs=1e-5), i
    assert len(calls) == 3  # the three ticks that ran the network
