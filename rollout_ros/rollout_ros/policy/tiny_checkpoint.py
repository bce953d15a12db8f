# SPDX-License-Identifier: Apache-2.0
"""Small random-weight ACT and Diffusion checkpoints in LeRobot's own on-disk format.

Used by tests, demos and benchmarks so the whole pipeline can run offline
without a trained model. The directory it writes is read by lerobot's own
loaders unchanged (``PreTrainedConfig.from_pretrained``,
``ACTPolicy.from_pretrained``, ``make_pre_post_processors``).
The Diffusion builder needs lerobot's ``diffusion`` extra (``diffusers``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.policies import make_pre_post_processors
from lerobot.policies.act.configuration_act import ACTConfig
from lerobot.policies.act.modeling_act import ACTPolicy
from lerobot.utils.constants import ACTION, OBS_IMAGES, OBS_STATE

from .loading import FEATURES_SIDECAR

# RANGE_M100_100 joints span [-100, 100]; std 30 keeps ~3 sigma inside that.
_JOINT_STD = 30.0
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _tiny_act_config(state_dim: int, cameras: dict[str, tuple[int, int, int]], chunk_size: int) -> ACTConfig:
    input_features = {OBS_STATE: PolicyFeature(type=FeatureType.STATE, shape=(state_dim,))}
    for cam, chw in cameras.items():
        input_features[f'{OBS_IMAGES}.{cam}'] = PolicyFeature(type=FeatureType.VISUAL, shape=tuple(chw))
    return ACTConfig(
        input_features=input_features,
        output_features={ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(state_dim,))},
        device='cpu',
        chunk_size=chunk_size,
        n_action_steps=chunk_size,
        # No download: this must work on an offline machine.
        pretrained_backbone_weights=None,
        dim_model=64,
        n_heads=4,
        dim_feedforward=128,
        n_encoder_layers=1,
        n_decoder_layers=1,
        use_vae=False,
        push_to_hub=False,
    )


def _stats(state_dim: int, cameras: dict[str, tuple[int, int, int]]) -> dict[str, dict[str, torch.Tensor]]:
    joint = {
        'mean': torch.zeros(state_dim),
        'std': torch.full((state_dim,), _JOINT_STD),
        'min': torch.full((state_dim,), -100.0),
        'max': torch.full((state_dim,), 100.0),
    }
    stats = {OBS_STATE: dict(joint), ACTION: dict(joint)}
    for cam, (c, _, _) in cameras.items():
        # Per-channel (C, 1, 1), the shape lerobot's dataset stats use for images.
        mean = torch.tensor(_IMAGENET_MEAN[:c] if c <= 3 else [0.5] * c).view(c, 1, 1)
        std = torch.tensor(_IMAGENET_STD[:c] if c <= 3 else [0.25] * c).view(c, 1, 1)
        stats[f'{OBS_IMAGES}.{cam}'] = {
            'mean': mean,
            'std': std,
            'min': torch.zeros(c, 1, 1),
            'max': torch.ones(c, 1, 1),
        }
    return stats


def make_tiny_act_checkpoint(
    out_dir: str | Path,
    state_names: list[str],
    cameras: dict[str, tuple[int, int, int]],
    chunk_size: int = 20,
    seed: int = 0,
    fps: int = 30,
) -> Path:
    """Write a random-weight ACT checkpoint to ``out_dir`` and return its path.

    ``cameras`` maps camera name to (C, H, W). Action dim equals state dim and
    the action names equal ``state_names`` (position control of the same joints).
    """
    if not state_names or len(set(state_names)) != len(state_names):
        raise ValueError(f'state_names must be non-empty and unique, got {state_names}')
    if not cameras:
        raise ValueError('ACT needs at least one camera (or an environment state); cameras is empty')
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    config = _tiny_act_config(len(state_names), cameras, chunk_size)
    # Forked RNG: same seed -> same weights, without disturbing the caller's RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = ACTPolicy(config)
    policy.save_pretrained(out)
    # ACTConfig has no field for names (see FEATURES_SIDECAR), hence the sidecar.
    _save_processors_and_names(config, out, state_names, cameras, fps)
    return out


def _save_processors_and_names(config, out: Path, state_names: list[str], cameras, fps: int) -> None:
    preprocessor, postprocessor = make_pre_post_processors(config, dataset_stats=_stats(len(state_names), cameras))
    preprocessor.save_pretrained(out)
    postprocessor.save_pretrained(out)
    sidecar = {'state_names': list(state_names), 'action_names': list(state_names), 'fps': int(fps)}
    (out / FEATURES_SIDECAR).write_text(json.dumps(sidecar, indent=2) + '\n')


def make_default_act_checkpoint(
    out_dir: str | Path,
    state_names: list[str],
    cameras: dict[str, tuple[int, int, int]],
    seed: int = 0,
    fps: int = 30,
) -> Path:
    """ACT at lerobot's default size (ResNet-18 backbone, dim 512, 4 encoder
    layers, chunk 100, VAE) with random weights, in lerobot's format: what a
    trained ACT costs per inference, for benchmarks. The backbone starts
    untrained (`pretrained_backbone_weights=None`), so nothing is downloaded."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    input_features = {OBS_STATE: PolicyFeature(type=FeatureType.STATE, shape=(len(state_names),))}
    for cam, chw in cameras.items():
        input_features[f'{OBS_IMAGES}.{cam}'] = PolicyFeature(type=FeatureType.VISUAL, shape=tuple(chw))
    config = ACTConfig(
        input_features=input_features,
        output_features={ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(len(state_names),))},
        device='cpu',
        pretrained_backbone_weights=None,
        push_to_hub=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = ACTPolicy(config)
    policy.save_pretrained(out)
    _save_processors_and_names(config, out, state_names, cameras, fps)
    return out


def make_tiny_diffusion_checkpoint(
    out_dir: str | Path,
    state_names: list[str],
    cameras: dict[str, tuple[int, int, int]],
    n_obs_steps: int = 2,
    horizon: int = 16,
    n_action_steps: int = 12,
    num_inference_steps: int = 4,
    crop_shape: tuple[int, int] | None = None,
    seed: int = 0,
    fps: int = 30,
) -> Path:
    """Write a random-weight Diffusion Policy checkpoint to ``out_dir`` and return its path.

    Small enough to run a chunk in tens of milliseconds on a CPU: a two-level
    UNet, a handful of DDIM steps and an untrained ResNet-18 (lerobot's
    smallest backbone) with group norm, since there are no pretrained
    batch-norm statistics to keep. ``crop_shape`` defaults to 7/8 of the
    smallest camera, which fits a 96x128 image (84x112).
    """
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    if not state_names or len(set(state_names)) != len(state_names):
        raise ValueError(f'state_names must be non-empty and unique, got {state_names}')
    if not cameras:
        raise ValueError('Diffusion needs at least one camera (or an environment state); cameras is empty')
    if crop_shape is None:
        h = min(chw[1] for chw in cameras.values())
        w = min(chw[2] for chw in cameras.values())
        crop_shape = (h * 7 // 8, w * 7 // 8)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    state_dim = len(state_names)
    input_features = {OBS_STATE: PolicyFeature(type=FeatureType.STATE, shape=(state_dim,))}
    for cam, chw in cameras.items():
        input_features[f'{OBS_IMAGES}.{cam}'] = PolicyFeature(type=FeatureType.VISUAL, shape=tuple(chw))
    config = DiffusionConfig(
        input_features=input_features,
        output_features={ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(state_dim,))},
        device='cpu',
        n_obs_steps=n_obs_steps,
        horizon=horizon,
        n_action_steps=n_action_steps,
        drop_n_last_frames=max(0, horizon - n_action_steps - n_obs_steps + 1),
        crop_shape=tuple(crop_shape),
        crop_is_random=False,
        # No download: this must work on an offline machine.
        pretrained_backbone_weights=None,
        use_group_norm=True,
        spatial_softmax_num_keypoints=16,
        down_dims=(32, 64),
        kernel_size=3,
        n_groups=8,
        diffusion_step_embed_dim=32,
        noise_scheduler_type='DDIM',
        num_train_timesteps=50,
        num_inference_steps=num_inference_steps,
        push_to_hub=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = DiffusionPolicy(config)
    policy.save_pretrained(out)
    _save_processors_and_names(config, out, state_names, cameras, fps)
    return out
