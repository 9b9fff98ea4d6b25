"""The forward process and the sampling loop's arithmetic, for showing rather than training.

Stable Diffusion's forward (noising) process jumps straight to any step t::

    x_t = sqrt(abar_t) * x_0 + sqrt(1 - abar_t) * eps,   eps ~ N(0, I)

where ``abar_t`` is the cumulative product of ``1 - beta`` over the scheduler's betas.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["add_noise", "noise_schedule", "count_flops"]


def noise_schedule(scheduler) -> dict[str, np.ndarray]:
    """Per training timestep t = 0…T-1: ``beta``, ``alpha_bar``, ``signal`` = sqrt(abar), ``noise`` = sqrt(1-abar)."""
    abar = scheduler.alphas_cumprod.double().numpy()
    return {
        "t": np.arange(len(abar)),
        "beta": scheduler.betas.double().numpy(),
        "alpha_bar": abar,
        "signal": np.sqrt(abar),
        "noise": np.sqrt(1.0 - abar),
    }


def add_noise(scheduler, x0: torch.Tensor, timesteps: Sequence[int], *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Noise one clean sample to several timesteps with ONE shared draw of eps.

    Args:
        x0: a clean image ``[C, H, W]`` in ``[-1, 1]`` or a latent ``[4, h, w]``.
        timesteps: training timesteps in ``[0, T)``.
    Returns:
        ``[len(timesteps), C, H, W]``: the same eps at every level, so the strip reads as one
        picture fading into one noise field.
    """
    T = len(scheduler.alphas_cumprod)
    bad = [t for t in timesteps if not 0 <= int(t) < T]
    if bad:
        raise ValueError(f"timesteps must lie in [0, {T}); got {bad}")
    eps = torch.randn(x0.shape, generator=generator, dtype=torch.float32)
    abar = scheduler.alphas_cumprod[torch.as_tensor([int(t) for t in timesteps])].float()
    a = abar.sqrt().view(-1, *[1] * x0.dim())
    s = (1 - abar).sqrt().view(-1, *[1] * x0.dim())
    return a * x0.float().unsqueeze(0) + s * eps.unsqueeze(0)


def count_flops(module: torch.nn.Module, *args, **kwargs) -> int:
    """Floating-point operations of one forward call, counted by torch (deterministic, no timing)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*args, **kwargs)
    return int(counter.get_total_flops())


def unet_flops(pipe, height: int, width: int) -> int:
    """FLOPs of one U-Net call (batch 1) on a ``height × width`` grid of 4-channel latents."""
    unet = pipe.unet
    dev, dt = unet.device, unet.dtype
    sample = torch.zeros(1, unet.config.in_channels, height, width, device=dev, dtype=dt)
    text = torch.zeros(1, 77, unet.config.cross_attention_dim, device=dev, dtype=dt)
    kwargs = {}
    if unet.config.addition_embed_type == "text_time":  # SDXL: pooled text and size/crop ids
        pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.zeros(1, pooled, device=dev, dtype=dt),
            "time_ids": torch.zeros(1, 6, device=dev, dtype=dt),
        }
    return count_flops(unet, sample, torch.tensor([500], device=dev), encoder_hidden_states=text, **kwargs)
