"""The ``vae`` stage: the 8x autoencoder, trained on crops and then whole scenes, and its latent scale."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import torch

from sdprobe.progress import progress
from sdprobe.toy import architecture as arch
from sdprobe.toy.train.checkpoints import _load, _log, _lr, _save
from sdprobe.toy.train.data import (
    WORK,
    object_masks,
    outline_band,
    scene_batch,
    seed_stream,
    step_generator,
)


def train_vae(steps: int = 3000, batch: int = 16, crop: int = 64, lr: float = 1e-3, seed: int = 0,
              full_from: int | None = None, object_weight: float = 10.0, outline_weight: float = 10.0,
              gradient_weight: float = 1.0, work: Path = WORK) -> None:
    """The VAE: ``batch`` crops of ``crop`` pixels per step, then (from ``full_from``, by default 60 %
    of ``steps``) ``batch // 4`` whole scenes per step.

    The reconstruction loss is an L1 in which object pixels weigh ``object_weight`` and pixels
    within two of an outline ``outline_weight`` more (they are few, and their colours and edges
    are what the judge reads), plus ``gradient_weight`` times an L1 between the horizontal and
    vertical differences of picture and reconstruction, which keeps corners and points sharp.
    """
    from diffusers import AutoencoderKL

    full_from = int(0.6 * steps) if full_from is None else full_from
    recipe = dict(steps=steps, batch=batch, device="cpu", threads=torch.get_num_threads(), crop=crop, lr=lr,
                  object_weight=object_weight, outline_weight=outline_weight, gradient_weight=gradient_weight)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / "vae.pt"
    torch.manual_seed(seed)
    vae = AutoencoderKL(**arch.VAE)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    start = 0
    if (state := _load(ckpt)) is not None:
        vae.load_state_dict(state["model"]); opt.load_state_dict(state["opt"]); start = state["step"]
    vae.train()
    for step in progress(range(start, steps), desc="vae", initial=start, total=steps):
        gen = step_generator(seed, step)
        # Crops first (cheap); whole scenes last, so that the norm statistics match full images.
        size, count = (crop, batch) if step < full_from else (128, batch // 4)
        seeds = seed_stream(1, batch, step)[:count]
        images, _ = scene_batch(seeds)
        y, x = torch.randint(0, 128 - size + 1, (2,), generator=gen).tolist()
        images = images[:, :, y:y + size, x:x + size]
        masks = object_masks(seeds)[:, :, y:y + size, x:x + size]
        weight = 1.0 + (object_weight - 1.0) * masks + (outline_weight - 1.0) * outline_band(masks)
        for g in opt.param_groups:
            g["lr"] = _lr(step, lr, 50, steps)
        dist = vae.encode(images).latent_dist
        recon = vae.decode(dist.sample(gen)).sample
        rec = ((recon - images).abs() * weight).mean() / weight.mean()
        edges = _gradient_l1(recon, images)
        kl = dist.kl().mean() / (4 * (size // 8) ** 2)
        loss = rec + gradient_weight * edges + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        _log(work, "vae", {"step": step, "l1": rec.item(), "edges": edges.item(), "kl": kl.item()})
        if (step + 1) % 50 == 0 or step + 1 == steps:
            _save(ckpt, model=vae.state_dict(), opt=opt.state_dict(), step=step + 1, recipe=recipe)


def _gradient_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the horizontal and vertical pixel differences of two images."""
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]
    return (dx(a) - dx(b)).abs().mean() + (dy(a) - dy(b)).abs().mean()


def _load_vae(work: Path = WORK, device: str | torch.device = "cpu"):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(**arch.VAE)
    vae.load_state_dict(_load(work / "vae.pt")["model"])
    return vae.to(device).eval().requires_grad_(False)


@torch.no_grad()
def latent_scale(vae, n: int = 256) -> float:
    """SD's ``scaling_factor``: one over the std of the latents of held-out scenes."""
    device = next(vae.parameters()).device
    images = _held_out_scenes(n)
    z = torch.cat([vae.encode(images[i:i + 32].to(device)).latent_dist.mean for i in range(0, n, 32)])
    return float(1.0 / z.std())


@cache
def _held_out_scenes(n: int) -> torch.Tensor:
    """The scenes :func:`latent_scale` encodes, drawn once per process (every stage asks for them)."""
    return scene_batch(np.arange(900_000, 900_000 + n))[0]
