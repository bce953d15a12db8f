# SPDX-License-Identifier: Apache-2.0
"""Load a LeRobot policy checkpoint and bind its features to a robot by name.

Loading follows lerobot-rollout (``lerobot/rollout/context.py``): the config
comes from ``PreTrainedConfig.from_pretrained``, weights from the policy
class's ``from_pretrained`` and the processors from
``make_pre_post_processors(pretrained_path=...)`` with a device override.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lerobot.configs import FeatureType, PreTrainedConfig
from lerobot.policies import get_policy_class, make_pre_post_processors
from lerobot.utils.constants import ACTION, OBS_IMAGES, OBS_STATE
from safetensors import SafetensorError

from .acceleration import (
    amp_available,
    amp_enabled,
    compile_predict_action_chunk,
    prepare_config_for_compile,
)

CONFIG_FILE = 'config.json'
WEIGHTS_FILE = 'model.safetensors'
# lerobot keeps feature names only on some policy configs (pi0/pi05/pi0_fast
# ``action_feature_names``, molmoact2 ``dataset_feature_names``). Others, ACT
# included, have no such field and draccus rejects unknown keys in
# config.json, so names for those live in this sidecar next to it.
FEATURES_SIDECAR = 'rollout_ros_features.json'
_DEVICES = ('cpu', 'cuda', 'mps', 'auto')
# owner/name, as the Hub spells repo ids; anything else that does not exist
# locally is reported as a missing directory rather than sent to the Hub.
_HUB_ID = re.compile(r'^[A-Za-z0-9][\w.-]*/[\w.-]+$')


class PolicyConfigError(ValueError):
    """A policy/robot configuration problem; the message names the parameter and the fix."""

    def __init__(self, message: str, param: str = 'policy_path') -> None:
        super().__init__(message)
        self.param = param


@dataclass
class LoadedPolicy:
    policy: Any
    preprocessor: Any
    postprocessor: Any
    config: PreTrainedConfig
    policy_type: str
    device: str
    checkpoint_dir: Path
    state_dim: int | None
    action_dim: int
    image_keys: list[str]
    image_shapes: dict[str, tuple[int, int, int]]
    state_names: list[str] | None
    action_names: list[str] | None
    fps: int | None
    chunk_size: int | None
    n_action_steps: int | None
    # Whether inference autocasts (see acceleration.amp_enabled).
    use_amp: bool = False
    # torch.compile applied (predict_action_chunk, or the model's own compile_model):
    # the first call compiles.
    compiled: bool = False


@dataclass
class FeatureBinding:
    """How robot signals map onto the policy's tensors, resolved by name.

    ``state_order``/``action_order`` are joint names in the policy's vector
    order; ``image_sources`` maps each policy image key to the camera name
    that feeds it.
    """

    state_order: list[str]
    action_order: list[str]
    image_sources: dict[str, str]
    image_shapes: dict[str, tuple[int, int, int]]
    state_by_name: bool
    action_by_name: bool
    ignored_cameras: list[str]


def resolve_device(device: str) -> str:
    requested = (device or '').strip().lower()
    if requested == 'auto':
        if torch.cuda.is_available():
            return 'cuda'
        if torch.backends.mps.is_available():
            return 'mps'
        return 'cpu'
    family = requested.split(':', 1)[0]
    if family not in _DEVICES:
        raise PolicyConfigError(
            f"device={device!r} is not supported: set device to one of {list(_DEVICES)} (or 'cuda:N')."
        )
    available = {
        'cpu': True,
        'cuda': torch.cuda.is_available(),
        'mps': torch.backends.mps.is_available(),
    }[family]
    if available and family == 'cuda' and ':' in requested:
        index = requested.split(':', 1)[1]
        available = index.isdigit() and int(index) < torch.cuda.device_count()
    if not available:
        raise PolicyConfigError(
            f'device={device!r} is not available on this machine (torch {torch.__version__}, '
            f"cuda available: {torch.cuda.is_available()}): set device to 'cpu' or 'auto'."
        )
    return requested


def _resolve_checkpoint_dir(policy_path: str, revision: str | None) -> Path:
    if not policy_path or not str(policy_path).strip():
        raise PolicyConfigError(
            'policy_path is empty: set policy_path to a local checkpoint directory '
            "(with config.json and model.safetensors) or a Hugging Face Hub model id like 'user/act_so101'."
        )
    policy_path = str(policy_path).strip()
    local = Path(policy_path).expanduser()
    if local.exists():
        if not local.is_dir():
            raise PolicyConfigError(
                f'policy_path={policy_path!r} is a file: point policy_path at the checkpoint directory '
                f'that contains it (e.g. {str(local.parent)!r}).'
            )
        return local.resolve()
    if not _HUB_ID.match(policy_path):
        raise PolicyConfigError(
            f'policy_path={policy_path!r} does not exist: set policy_path to an existing checkpoint '
            "directory (e.g. outputs/train/<run>/checkpoints/last/pretrained_model) or a Hub id 'user/name'."
        )
    return _hub_snapshot(policy_path, revision)


def checkpoint_dir(policy_path: str, revision: str | None = None) -> Path:
    """The local directory of a checkpoint given as a directory or a Hub id (from the cache when offline)."""
    return _resolve_checkpoint_dir(policy_path, revision)


def _hub_snapshot(repo_id: str, revision: str | None) -> Path:
    # Imported here so a purely local setup never touches the Hub client.
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=['*.json', '*.safetensors']))
    except LocalEntryNotFoundError as exc:
        why = 'HF_HUB_OFFLINE is set' if constants.HF_HUB_OFFLINE else 'the Hub could not be reached'
        raise PolicyConfigError(
            f'policy_path={repo_id!r} (revision={revision!r}) is not in the local Hugging Face cache and '
            f'{why}: download it once with `hf download {repo_id}'
            f'{f" --revision {revision}" if revision else ""}` on a connected machine, '
            'or set policy_path to a local checkpoint directory.'
        ) from exc
    except (HfHubHTTPError, HFValidationError) as exc:
        raise PolicyConfigError(
            f'policy_path={repo_id!r} (revision={revision!r}) could not be fetched from the Hub ({exc}): '
            'check the model id and revision, or set policy_path to a local checkpoint directory.'
        ) from exc


def _read_names(config: PreTrainedConfig, ckpt: Path) -> tuple[list[str] | None, list[str] | None, int | None]:
    """State names, action names and fps, from lerobot's own fields first, then our sidecar."""
    action_names = getattr(config, 'action_feature_names', None)
    dataset_names = getattr(config, 'dataset_feature_names', None) or {}
    state_names = dataset_names.get(OBS_STATE)
    action_names = action_names or dataset_names.get(ACTION)
    fps = None
    sidecar = ckpt / FEATURES_SIDECAR
    if sidecar.is_file():
        try:
            extra = json.loads(sidecar.read_text())
        except json.JSONDecodeError as exc:
            raise PolicyConfigError(
                f'policy_path: {sidecar} is not valid JSON ({exc}): fix or delete that file.'
            ) from exc
        state_names = state_names or extra.get('state_names')
        action_names = action_names or extra.get('action_names')
        fps = extra.get('fps')
    return (
        list(state_names) if state_names else None,
        list(action_names) if action_names else None,
        int(fps) if fps else None,
    )


def _check_names_fit(names: list[str] | None, dim: int | None, what: str, ckpt: Path) -> None:
    if names is None or dim is None:
        return
    if len(names) != dim or len(set(names)) != len(names):
        raise PolicyConfigError(
            f"policy_path: checkpoint {ckpt} names {len(names)} {what} features {names} but the policy's "
            f'{what} has dim {dim} (or names repeat): fix {FEATURES_SIDECAR} or the checkpoint config.'
        )


def _load_processors(config: PreTrainedConfig, ckpt: Path, device: str):
    from lerobot.processor.pipeline import ProcessorMigrationError

    try:
        return make_pre_post_processors(
            policy_cfg=config,
            pretrained_path=str(ckpt),
            preprocessor_overrides={'device_processor': {'device': device}},
        )
    except ProcessorMigrationError as exc:
        raise PolicyConfigError(
            f'policy_path: checkpoint {ckpt} predates LeRobot processor pipelines: {exc.migration_command}'
        ) from exc
    except (FileNotFoundError, KeyError) as exc:
        raise PolicyConfigError(
            f'policy_path: checkpoint {ckpt} has no usable policy_preprocessor.json / '
            f'policy_postprocessor.json ({exc}): re-save it with a current lerobot.'
        ) from exc


def load_policy(
    policy_path: str,
    device: str = 'cpu',
    revision: str | None = None,
    use_torch_compile: bool = False,
    use_amp: bool = False,
) -> LoadedPolicy:
    dev = resolve_device(device)
    if use_amp and not amp_available(dev):
        raise PolicyConfigError(
            f'use_amp=true: lerobot has no mixed precision on device {dev!r}: set use_amp false '
            '(or run on cuda or cpu).',
            param='use_amp',
        )
    ckpt = _resolve_checkpoint_dir(policy_path, revision)
    for required in (CONFIG_FILE, WEIGHTS_FILE):
        if not (ckpt / required).is_file():
            raise PolicyConfigError(
                f'policy_path={policy_path!r}: {ckpt} has no {required}; point policy_path at a LeRobot '
                "checkpoint directory (the 'pretrained_model' folder of a training run)."
            )
    try:
        config = PreTrainedConfig.from_pretrained(ckpt)
    except Exception as exc:  # draccus/registry errors have many types; all mean a bad config.json
        raise PolicyConfigError(
            f'policy_path={policy_path!r}: cannot parse {ckpt / CONFIG_FILE} ({exc}): point policy_path at '
            'a checkpoint saved by a lerobot with this policy type installed.'
        ) from exc
    if config.use_peft:
        raise PolicyConfigError(
            f'policy_path={policy_path!r} is a PEFT adapter: merge it into its base policy and save '
            'a full checkpoint, then point policy_path at that.'
        )
    config.device = dev
    config.pretrained_path = ckpt
    prepare_config_for_compile(config, use_torch_compile)

    try:
        policy = get_policy_class(config.type).from_pretrained(ckpt, config=config)
    except ImportError as exc:
        raise PolicyConfigError(
            f'policy_path={policy_path!r}: policy type {config.type!r} needs packages that are not '
            f'installed ({exc}); install them or choose another policy_path.'
        ) from exc
    except (RuntimeError, OSError, SafetensorError) as exc:  # truncated file, shape mismatch
        raise PolicyConfigError(
            f'policy_path={policy_path!r}: {ckpt / WEIGHTS_FILE} does not match its config.json ({exc}): '
            'point policy_path at an intact checkpoint.'
        ) from exc
    policy.to(dev)
    policy.eval()
    if use_torch_compile:
        compile_predict_action_chunk(policy, config.type)
    preprocessor, postprocessor = _load_processors(config, ckpt, dev)

    state_ft = config.robot_state_feature
    action_ft = config.action_feature
    if action_ft is None:
        raise PolicyConfigError(f"policy_path={policy_path!r}: the policy has no '{ACTION}' output feature.")
    images = {k: tuple(int(d) for d in ft.shape) for k, ft in config.image_features.items()}
    state_dim = int(state_ft.shape[0]) if state_ft is not None else None
    action_dim = int(action_ft.shape[0])
    state_names, action_names, fps = _read_names(config, ckpt)
    _check_names_fit(state_names, state_dim, 'state', ckpt)
    _check_names_fit(action_names, action_dim, 'action', ckpt)

    return LoadedPolicy(
        policy=policy,
        preprocessor=preprocessor,
        postprocessor=postprocessor,
        config=config,
        policy_type=config.type,
        device=dev,
        checkpoint_dir=ckpt,
        state_dim=state_dim,
        action_dim=action_dim,
        image_keys=list(images),
        image_shapes=images,
        state_names=state_names,
        action_names=action_names,
        fps=fps,
        chunk_size=getattr(config, 'chunk_size', None),
        n_action_steps=getattr(config, 'n_action_steps', None),
        use_amp=amp_enabled(dev, use_amp, getattr(config, 'use_amp', False)),
        compiled=bool(use_torch_compile),
    )


def _bind_vector(policy_names: list[str] | None, dim: int | None, joint_names: list[str], what: str) -> list[str]:
    if dim is None:
        return []
    if policy_names is not None:
        missing = [n for n in policy_names if n not in joint_names]
        extra = [n for n in joint_names if n not in policy_names]
        if missing or extra:
            raise PolicyConfigError(
                f"joint_names do not match the policy's {what} features: missing from the robot {missing}, "
                f'not used by the policy {extra}. Set joint_names to exactly '
                f'{policy_names} (any order).'
            )
        return list(policy_names)
    if len(joint_names) != dim:
        raise PolicyConfigError(
            f'the checkpoint does not name its {what} features, so joints are bound by position, but the '
            f"policy's {what} dim is {dim} and joint_names has {len(joint_names)} names {joint_names}: "
            f"set joint_names to exactly {dim} joints in the policy's training order."
        )
    return list(joint_names)


def _bind_cameras(
    loaded: LoadedPolicy, camera_names: list[str], rename_map: dict[str, str]
) -> tuple[dict[str, str], list[str]]:
    ours = {f'{OBS_IMAGES}.{cam}': cam for cam in camera_names}
    unknown = [k for k in rename_map if k not in ours]
    if unknown:
        raise PolicyConfigError(
            f'rename_map keys {unknown} are not configured cameras: keys must be our camera keys '
            f"{sorted(ours)} (observation.images.<camera name>), values the policy's keys "
            f'{loaded.image_keys}.'
        )
    provided: dict[str, str] = {}
    for key, cam in ours.items():
        target = rename_map.get(key, key)
        if target in provided:
            raise PolicyConfigError(
                f'rename_map sends cameras {provided[target]!r} and {cam!r} to the same key {target!r}: '
                'map each camera to a distinct policy key.'
            )
        provided[target] = cam
    missing = [k for k in loaded.image_keys if k not in provided]
    if missing:
        raise PolicyConfigError(
            f'the policy needs image keys {loaded.image_keys} but the cameras provide {sorted(provided)} '
            f'(missing {missing}). Rename cameras with rename_map, e.g. '
            f'{{"{next(iter(ours), "observation.images.<cam>")}": "{missing[0]}"}}, '
            'or set camera_names to match the policy.'
        )
    sources = {k: provided[k] for k in loaded.image_keys}
    ignored = [cam for cam in camera_names if cam not in sources.values()]
    return sources, ignored


def check_features(
    loaded: LoadedPolicy,
    joint_names: list[str],
    camera_names: list[str],
    rename_map: dict[str, str] | None = None,
) -> FeatureBinding:
    """Bind robot joints and cameras to the policy's features by name, never by position."""
    joint_names = list(joint_names)
    if len(set(joint_names)) != len(joint_names):
        raise PolicyConfigError(f'joint_names repeat: {joint_names}; list each joint once.')
    if len(set(camera_names)) != len(camera_names):
        raise PolicyConfigError(f'camera_names repeat: {list(camera_names)}; list each camera once.')
    unsupported = [
        k
        for k, ft in (loaded.config.input_features or {}).items()
        if ft.type is not FeatureType.VISUAL and k != OBS_STATE
    ]
    if unsupported:
        raise PolicyConfigError(
            f'policy_path: the policy needs inputs {unsupported} that a robot cannot provide '
            f'(supported: {OBS_STATE} and {OBS_IMAGES}.<camera>): use a policy trained on robot observations.'
        )
    state_order = _bind_vector(loaded.state_names, loaded.state_dim, joint_names, 'state')
    action_order = _bind_vector(loaded.action_names, loaded.action_dim, joint_names, 'action')
    sources, ignored = _bind_cameras(loaded, list(camera_names), dict(rename_map or {}))
    return FeatureBinding(
        state_order=state_order,
        action_order=action_order,
        image_sources=sources,
        image_shapes={k: loaded.image_shapes[k] for k in sources},
        state_by_name=loaded.state_names is not None,
        action_by_name=loaded.action_names is not None,
        ignored_cameras=ignored,
    )
