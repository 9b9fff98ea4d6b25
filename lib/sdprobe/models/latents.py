"""Between pixels and latents: the VAE encoder E and decoder D of the latent diffusion model."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from sdprobe.images import to_tensor

__all__ = ["decode_latents", "encode_images", "images_to_tensor", "latent_scale_factor"]


def latent_scale_factor(pipe) -> int:
    """Pixels per latent cell along each side (8 for every Stable Diffusion VAE): the one place
    the library reads it, from the VAE's depth."""
    return 2 ** (len(pipe.vae.config.block_out_channels) - 1)


#: PIL images → float ``[B, 3, H, W]`` in ``[-1, 1]`` (kept under its old name; see :mod:`sdprobe.images`).
images_to_tensor = to_tensor


def _vae_dtype(pipe) -> torch.dtype:
    # SDXL's fp16 VAE overflows; its config asks for fp32 decoding (force_upcast).
    if pipe.vae.dtype == torch.float16 and getattr(pipe.vae.config, "force_upcast", False):
        return torch.float32
    return pipe.vae.dtype


@torch.no_grad()
def encode_images(pipe, images: Sequence[Image.Image] | Image.Image, *, sample: bool = False,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Encode images to scaled latents ``[B, 4, H/8, W/8]`` (the space the U-Net denoises).

    ``sample=False`` takes the mean of the encoder's Gaussian; ``True`` draws from it.
    """
    vae = pipe.vae
    dtype = _vae_dtype(pipe)
    x = images_to_tensor(images).to(device=vae.device, dtype=dtype)
    with _vae_in(vae, dtype):
        dist = vae.encode(x).latent_dist
        z = dist.sample(generator) if sample else dist.mode()
    return (z * vae.config.scaling_factor).float()


@torch.no_grad()
def decode_latents(pipe, latents: torch.Tensor) -> list[Image.Image]:
    """Decode scaled latents ``[B, 4, h, w]`` to PIL images ``[B]`` of size ``8h × 8w``."""
    vae = pipe.vae
    dtype = _vae_dtype(pipe)
    z = latents.to(device=vae.device, dtype=dtype) / vae.config.scaling_factor
    with _vae_in(vae, dtype):
        x = vae.decode(z).sample
    return pipe.image_processor.postprocess(x.float(), output_type="pil")


class _vae_in:
    """Run the VAE in ``dtype`` for the duration, then put it back."""

    def __init__(self, vae, dtype: torch.dtype):
        self.vae, self.dtype, self.before = vae, dtype, vae.dtype

    def __enter__(self):
        if self.dtype != self.before:
            self.vae.to(dtype=self.dtype)

    def __exit__(self, *exc):
        if self.dtype != self.before:
            self.vae.to(dtype=self.before)
        return False
