"""The toy model's architecture: Stable Diffusion 1.x's blocks, shrunk to 128-pixel images.

The U-Net keeps SD 1.x's layout exactly (four levels, two resnets per level, cross-attention in
the first three levels and the middle), so it has the same block names ``IN0``…``OUT11`` and the
same sixteen text-conditioned layers as the papers' models, at 16 × 16 latents instead of 64 × 64.
The VAE downsamples 8× like SD's; the text encoder is a small CLIP text transformer with 77
positions.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CLIP_TEXT", "CLIP_VISION", "SCHEDULER", "UNET", "VAE", "text_encoder_config"]

IMAGE_SIZE = 128
LATENT_SIZE = IMAGE_SIZE // 8
TEXT_WIDTH = 64

VAE: dict[str, Any] = dict(
    in_channels=3, out_channels=3, latent_channels=4, sample_size=IMAGE_SIZE,
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
    # Four channels per norm group at the first level, as in SD's VAE (128 / 32): with one channel
    # per group, GroupNorm would erase each channel's mean, i.e. the colour of flat regions.
    block_out_channels=[16, 32, 64, 64], layers_per_block=1, norm_num_groups=4,
    mid_block_add_attention=False,
)

UNET: dict[str, Any] = dict(
    sample_size=LATENT_SIZE, in_channels=4, out_channels=4,
    down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    block_out_channels=[32, 64, 96, 96], layers_per_block=2, norm_num_groups=8,
    cross_attention_dim=TEXT_WIDTH, attention_head_dim=4,
)

#: SD 1.x's noise schedule and sampler settings (PNDM, scaled-linear betas 0.00085 → 0.012).
SCHEDULER: dict[str, Any] = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    prediction_type="epsilon", set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1,
)


def make_scheduler():
    """The toy's shipped scheduler: SD 1.x's PNDM, with SD 1.x's ``clip_sample: false`` in its config.

    PNDM ignores that key, but DDIM built from the config (``load_pipeline(..., scheduler="ddim")``)
    reads it; its default, clipping the predicted x0 to [-1, 1], wrecks the toy's images, whose
    latents reach beyond 1.
    """
    from diffusers import PNDMScheduler

    scheduler = PNDMScheduler(**SCHEDULER)
    scheduler.register_to_config(clip_sample=False)
    return scheduler

CLIP_TEXT: dict[str, Any] = dict(
    hidden_size=TEXT_WIDTH, intermediate_size=4 * TEXT_WIDTH, num_attention_heads=4, num_hidden_layers=3,
    max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=64,
)

CLIP_VISION: dict[str, Any] = dict(
    hidden_size=64, intermediate_size=256, num_attention_heads=4, num_hidden_layers=3,
    image_size=64, patch_size=8, num_channels=3, hidden_act="quick_gelu", projection_dim=64,
)


def text_encoder_config(vocab_size: int, bos_id: int, eos_id: int) -> dict[str, Any]:
    """The text tower's config for a vocabulary; the end token pads, as in SD 1.x."""
    return dict(CLIP_TEXT, vocab_size=vocab_size, bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=eos_id)
