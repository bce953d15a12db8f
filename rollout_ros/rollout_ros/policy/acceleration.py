# SPDX-License-Identifier: Apache-2.0
"""torch.compile and mixed precision for inference, applied as lerobot-rollout applies them.

Compilation (``lerobot/rollout/context.py``): a policy config with a
``compile_model`` field gets it set before the model is built (pi0/pi05
compile their own sampling loop, Diffusion its U-Net); every policy but
pi0/pi05 also gets ``predict_action_chunk`` wrapped in ``torch.compile``
(inductor, mode "default"). torch compiles lazily, on the first call, so a
compiler that cannot work here only shows up then: callers run warm-up
inferences before the first real tick (see ``is_compile_error``).

Mixed precision: lerobot-rollout autocasts only on cuda, and only when the
checkpoint's ``use_amp`` is set. Here an explicit request (``use_amp`` node
parameter, ``--policy.use_amp``) also autocasts on cpu, as lerobot's own
training and evaluation scripts do with ``torch.autocast(device_type=...)``:
torch's cpu autocast type is bfloat16, which CPUs with AVX512-BF16/AMX run
natively. mps is refused, as lerobot's ``is_amp_available`` does.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, ContextManager

import torch

COMPILE_BACKEND = 'inductor'
COMPILE_MODE = 'default'
# lerobot-rollout's compile_warmup_inferences.
COMPILE_WARMUP_INFERENCES = 2
# These compile inside the model when their config says compile_model;
# wrapping predict_action_chunk as well would compile the same code twice.
SELF_COMPILING_TYPES = ('pi0', 'pi05')


def amp_available(device: str) -> bool:
    from lerobot.utils.device_utils import is_amp_available

    return is_amp_available(device.split(':', 1)[0])


def amp_enabled(device: str, requested: bool, checkpoint_use_amp: bool) -> bool:
    """Whether inference autocasts: on request, or (cuda only, like lerobot-rollout) when the checkpoint asks."""
    family = device.split(':', 1)[0]
    return bool(requested) or (family == 'cuda' and bool(checkpoint_use_amp))


def autocast_factory(device: torch.device, enabled: bool) -> Callable[[], ContextManager]:
    """A context manager factory: torch's default autocast type for the device, or nothing."""
    if not enabled:
        return nullcontext
    return lambda: torch.autocast(device_type=device.type)


def prepare_config_for_compile(config, use_torch_compile: bool) -> None:
    """Before the model is built: the config's own compile switch follows the request, either way."""
    if hasattr(config, 'compile_model'):
        config.compile_model = bool(use_torch_compile)


def compile_predict_action_chunk(policy, policy_type: str) -> None:
    """Wrap ``predict_action_chunk`` in torch.compile, except for types that compile themselves."""
    if policy_type in SELF_COMPILING_TYPES:
        return
    # An instance attribute: select_action calls self.predict_action_chunk,
    # so the sync path runs the compiled function too.
    policy.predict_action_chunk = torch.compile(policy.predict_action_chunk, backend=COMPILE_BACKEND, mode=COMPILE_MODE)


def is_compile_error(exc: BaseException) -> bool:
    """An error raised by torch.compile (tracing, or the backend: no C++ compiler...), not by the model."""
    from torch._dynamo.exc import TorchDynamoException

    return isinstance(exc, TorchDynamoException)


def default_torch_threads(background: bool, cpu_count: int | None = None) -> int:
    """Intra-op threads for torch when none are asked for.

    Sync inference runs on the loop's own thread, which waits for it anyway:
    every core makes the chunk-boundary stall shortest. Background chunking
    runs next to the loop: every core but one, or torch's workers (which spin
    while they wait) take the loop's core and its ticks come late."""
    import os

    cores = cpu_count or os.cpu_count() or 1
    return max(1, cores - 1) if background else cores
