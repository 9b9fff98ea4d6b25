"""Train the toy model from scratch: ``python -m sdprobe.toy.train [--stage …]`` (``make toy``).

Stages, each deterministic from its seed and resumable from its checkpoint in ``.toytrain/``:

* ``vae``: an 8×-downsampling AutoencoderKL, on 64-pixel crops and then whole scenes: L1 with
  object pixels and a band around each outline weighted up, an L1 on image gradients (edges stay
  sharp) and a small KL term, as in the latent diffusion paper's autoencoders but without the GAN.
* ``clip``: a small CLIP (contrastive image-text model) for the toy CLIP score, independent of
  the generator.
* ``unet``: the U-Net and the CLIP text encoder together, on VAE latents of a pool of training
  scenes, with SD's epsilon objective weighted by Min-SNR-γ, offset noise, 10 % empty captions
  for classifier-free guidance, warm-up then cosine decay, and an exponential moving average
  (EMA) of the weights; judged samples at milestones.
* ``ground``: the U-Net continued with the grounding losses of :mod:`sdprobe.toy.grounding`.
* ``export``: the diffusers pipeline into ``data/models/toy`` (U-Net and VAE in fp16
  safetensors, text encoders in fp32), plus ``clip/``, ``world.json`` and the training log.

Scenes are drawn from seeds; no dataset is stored. ``--device cuda`` trains the same recipe on
a GPU (the arithmetic differs, so the weights do not match a CPU run bit for bit).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import nullcontext
from functools import cache
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sdprobe.images import to_tensor
from sdprobe.paths import MODELS_DIR, REPO_ROOT
from sdprobe.progress import progress, progress_bar
from sdprobe.toy import architecture as arch
from sdprobe.toy.grounding import attention_maps, grounding_loss, grounding_targets, pixel_loss
from sdprobe.toy.tokenizer import build_tokenizer
from sdprobe.toy.world import caption_corpus, sample_scene, world_spec

__all__ = ["main", "train_clip", "train_grounding", "train_unet", "train_vae", "export", "judge_milestone"]

WORK = REPO_ROOT / ".toytrain"
OUT = MODELS_DIR / "toy"
TRAIN_SEEDS_FROM = 1_000_000  # held-out evaluation seeds stay below this
VALIDATION_SEEDS_FROM = 600_000  # milestone judgements; the shipped evaluation uses 500,000 on


# ----------------------------------------------------------------------------- data


def _render(seeds: np.ndarray) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Pictures, captions and grounding targets (:func:`~sdprobe.toy.grounding.grounding_targets`)."""
    scenes = [sample_scene(int(s)) for s in seeds]
    targets = [grounding_targets(s) for s in scenes]
    return (np.stack([s.array() for s in scenes]), [s.caption for s in scenes],
            np.stack([t[0] for t in targets]), np.stack([t[1] for t in targets]))


def render_scenes(seeds: np.ndarray, workers: int = 1, chunk: int = 500) -> Iterator[tuple]:
    """Pictures uint8 ``[n, 128, 128, 3]``, captions, grounding masks ``[n, 2, 16, 16]`` and word
    positions ``[n, 2, 2]`` of the scenes of ``seeds``, ``chunk`` at a time and in order, drawn by
    ``workers`` processes (the result does not depend on how many)."""
    parts = [seeds[i:i + chunk] for i in range(0, len(seeds), chunk)]
    if workers <= 1 or len(parts) == 1:
        yield from map(_render, parts)
        return
    with get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_render, parts)


def scene_batch(seeds: np.ndarray) -> tuple[torch.Tensor, list[str]]:
    """Images ``[B, 3, 128, 128]`` in ``[-1, 1]`` and captions of the scenes of ``seeds``."""
    arrays, captions, _, _ = _render(seeds)
    return to_tensor(arrays), captions


def object_masks(seeds: np.ndarray) -> torch.Tensor:
    """Where the objects of the scenes of ``seeds`` are: float ``[B, 1, 128, 128]``."""
    masks = np.stack([sample_scene(int(s)).masks().any(0) for s in seeds]).astype(np.float32)
    return torch.from_numpy(masks)[:, None]


def outline_band(masks: torch.Tensor, width: int = 2) -> torch.Tensor:
    """Pixels within ``width`` of an object outline, inside or out: float ``[B, 1, H, W]``."""
    k = 2 * width + 1
    grown = F.max_pool2d(masks, k, stride=1, padding=width)
    shrunk = -F.max_pool2d(-masks, k, stride=1, padding=width)
    return grown - shrunk


def seed_stream(start: int, batch: int, step: int) -> np.ndarray:
    """The scene seeds of training step ``step``: fresh scenes every step."""
    base = TRAIN_SEEDS_FROM + start * 10_000_000 + step * batch
    return np.arange(base, base + batch)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The random stream of one training step: a resumed run draws exactly what an
    uninterrupted one would."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


# ----------------------------------------------------------------------------- checkpoints


def _save(path: Path, **state) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _load(path: Path, device: str | torch.device = "cpu"):
    return torch.load(path, weights_only=False, map_location=device) if path.is_file() else None


def _log(work: Path, name: str, record: dict) -> None:
    with open(work / f"{name}.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def _lr(step: int, base: float, warmup: int, total: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to zero at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


# ----------------------------------------------------------------------------- stages


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


def tokenizer(folder: Path = WORK / "tokenizer"):
    """The toy tokenizer: merges learned from 3,000 captions (deterministic), files in ``folder``."""
    return build_tokenizer(caption_corpus(3000), folder)


def _scheduler_kwargs() -> dict:
    return {k: v for k, v in arch.SCHEDULER.items() if k not in {"skip_prk_steps", "set_alpha_to_one"}}


def min_snr_weights(alphas_cumprod: torch.Tensor, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-γ loss weights for epsilon prediction (Hang et al. 2023): ``min(SNR, γ) / SNR``,
    so the easiest, least noisy timesteps count less; ``[B]``."""
    ab = alphas_cumprod[t]
    snr = ab / (1 - ab)
    return torch.clamp(snr, max=gamma) / snr


def ema_decay(step: int, power: float = 0.75, ceiling: float = 0.9999) -> float:
    """The EMA's decay at ``step``: ``1 - (1 + step)^-power``, capped (diffusers' ``EMAModel`` warm-up)."""
    return min(ceiling, 1.0 - (1.0 + step) ** -power)


#: The grounding losses' weights in ``make toy``'s grounding stage (see :mod:`sdprobe.toy.grounding`).
GROUNDING_WEIGHT, PIXEL_WEIGHT = 0.05, 0.02

#: The steps a run with a time budget times. It sets its length after them, still inside the
#: warm-up, where the learning rate does not depend on the length (so the run equals a fixed-length one).
CALIBRATION_STEPS = (20, 70)


def train_unet(steps: int = 10_000, batch: int = 32, lr: float = 1e-3, warmup: int = 200, seed: int = 0,
               drop: float = 0.1, snr_gamma: float = 5.0, noise_offset: float = 0.1, pool_size: int = 24_000,
               milestones: tuple[float, ...] = (500, 1000, 2000, 3000, 4000, 6000, 8000),
               judge_images: int = 32, judge_steps: int = 20, work: Path = WORK, vae_from: Path | None = None,
               device: str = "cpu", workers: int = 1, minutes: float | None = None,
               grounding_weight: float = 0.0, pixel_weight: float = 0.0, init_from: Path | None = None,
               scale_scenes: int = 256) -> None:
    """The U-Net and the text encoder together on a pool of VAE latents (see the module docstring).

    At each of ``milestones`` (steps, or fractions of the run when below 1) and at the last step,
    the EMA weights draw ``judge_images`` validation prompts per scene kind and the world's judge
    scores them after ``judge_steps`` sampler steps (``milestones.jsonl``); at the last step the raw weights are judged too, and the
    checkpoint records which the judge prefers (``judge_images=0`` judges nothing). With
    ``minutes``, the run times its steps :data:`CALIBRATION_STEPS` and then takes as many steps
    (at most ``steps``) as fit. ``grounding_weight`` and ``pixel_weight`` add the token and pixel
    grounding losses of :mod:`sdprobe.toy.grounding`; ``init_from`` starts a new run from the U-Net and text encoder
    of an earlier stage (an exported pipeline folder or a work folder) instead of random weights.
    ``scale_scenes`` held-out scenes set the latent scale (``latent_scale``).
    """
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if minutes is not None and warmup <= CALIBRATION_STEPS[1]:
        raise ValueError(f"a time budget needs a warm-up longer than {CALIBRATION_STEPS[1]} steps, not {warmup}")
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / "unet.pt"
    tok = tokenizer(work / "tokenizer")
    vae = _load_vae(vae_from or work, device)
    scale = latent_scale(vae, scale_scenes)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**arch.UNET).to(device)
    text = CLIPTextModel(CLIPTextConfig(**arch.text_encoder_config(len(tok), tok.bos_token_id, tok.eos_token_id))).to(device)
    if init_from is not None:
        with torch.no_grad():
            _init_from(init_from, unet, text)
    params = list(unet.parameters()) + list(text.parameters())
    ema = [p.detach().clone() for p in params]
    # On a GPU the fused AdamW saves hundreds of kernel launches a step (the toy U-Net is launch-bound).
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2, fused=torch.device(device).type == "cuda")
    start, total = 0, steps
    if (state := _load(ckpt, device)) is not None:
        unet.load_state_dict(state["unet"]); text.load_state_dict(state["text"]); opt.load_state_dict(state["opt"])
        for e, saved in zip(ema, state["ema"]):
            e.copy_(saved)
        start, total = state["step"], state.get("total") or steps
    pool = latent_pool(vae, scale, tok, work, pool_size, device=device, workers=workers, shared=vae_from)
    recipe = dict(steps=total, batch=batch, device=str(device), threads=torch.get_num_threads(), pool=pool_size,
                  lr=lr, warmup=warmup, snr_gamma=snr_gamma, noise_offset=noise_offset, empty_captions=drop,
                  grounding_weight=grounding_weight, pixel_weight=pixel_weight,
                  init_from=str(init_from) if init_from else None)
    noise_sched = DDPMScheduler(**_scheduler_kwargs())
    alphas_cumprod = noise_sched.alphas_cumprod.to(device)
    unet.train(); text.train()
    bar = progress_bar(desc="unet", initial=start, total=total)
    began = clock = time.perf_counter()
    step = start
    while step < total:
        gen = step_generator(seed, step)
        pick = torch.randint(0, len(pool["ids"]), (batch,), generator=gen)
        keep = (torch.rand(batch, generator=gen) >= drop).to(device)
        mean, std = pool["mean"][pick.to(device)], pool["std"][pick.to(device)]
        latents = mean + std * torch.randn(mean.shape, generator=gen).to(device)
        ids = torch.where(keep[:, None], pool["ids"][pick.to(device)], pool["empty"])
        noise = torch.randn(latents.shape, generator=gen)
        noise = (noise + noise_offset * torch.randn(batch, 4, 1, 1, generator=gen)).to(device)
        t = torch.randint(0, 1000, (batch,), generator=gen).to(device)
        noisy = noise_sched.add_noise(latents, noise, t)
        for g in opt.param_groups:
            g["lr"] = _lr(step, lr, warmup, total)
        with attention_maps(unet) if grounding_weight or pixel_weight else nullcontext([]) as maps:
            pred = unet(noisy, t, text(ids).last_hidden_state).sample
        per_image = F.mse_loss(pred, noise, reduction="none").mean((1, 2, 3))
        loss = denoise = (min_snr_weights(alphas_cumprod, t, snr_gamma) * per_image).mean()
        grounding = pixels = torch.zeros(())
        if grounding_weight or pixel_weight:
            picked = pick.to(device)
            masks, tokens = pool["masks"][picked], pool["tokens"][picked]
            grounding = grounding_loss(maps, masks, tokens, keep) if grounding_weight else grounding
            pixels = pixel_loss(maps, masks, tokens, keep) if pixel_weight else pixels
            loss = denoise + grounding_weight * grounding + pixel_weight * pixels
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():  # one fused update of all EMA tensors (as diffusers' EMAModel(foreach=True))
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1.0 - ema_decay(step))
        _log(work, "unet", {"step": step, "loss": denoise.item(), "mse": per_image.mean().item(),
                            "grounding": grounding.item(), "pixels": pixels.item()})
        step += 1
        if minutes is not None and step in CALIBRATION_STEPS:
            if step == CALIBRATION_STEPS[0]:
                clock = time.perf_counter()
            else:
                per_step = (time.perf_counter() - clock) / (CALIBRATION_STEPS[1] - CALIBRATION_STEPS[0])
                left = minutes * 60 - (time.perf_counter() - began)
                total = min(steps, step + max(0, int(left / per_step)))
                bar.total = recipe["steps"] = total
                print(f"unet: {per_step * 1000:.0f} ms a step; the budget holds {total} steps", flush=True)
        bar.update(1)
        if step % 50 == 0 or step == total:
            _save(ckpt, unet=unet.state_dict(), text=text.state_dict(), opt=opt.state_dict(), ema=ema,
                  step=step, total=total, scale=scale, prefer=None, recipe=recipe)
        judged = {int(round(m * total)) if m < 1 else int(m) for m in milestones}
        if judge_images and (step in judged or step == total):
            prefer = _milestone(work, step, step == total, vae, unet, text, params, ema, tok, scale, judge_images,
                                judge_steps)
            if step == total:
                _save(ckpt, unet=unet.state_dict(), text=text.state_dict(), opt=opt.state_dict(), ema=ema,
                      step=step, total=total, scale=scale, prefer=prefer, recipe=recipe)
            unet.train(); text.train()
    bar.close()


@torch.no_grad()
def _init_from(folder: Path, unet, text) -> None:
    """Load the U-Net and text encoder weights of an earlier stage: an exported pipeline folder
    (fp16 or fp32 safetensors), or a work folder's checkpoint (the weights its judge preferred)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if (folder / "unet.pt").is_file():
        state = _load(folder / "unet.pt")
        unet.load_state_dict(state["unet"]); text.load_state_dict(state["text"])
        if (state.get("prefer") or "ema") == "ema":
            for p, e in zip(list(unet.parameters()) + list(text.parameters()), state["ema"]):
                p.copy_(e)
        return
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(f"{folder} is neither a work folder with unet.pt nor an exported pipeline")
    for module, sub in ((unet, "unet/diffusion_pytorch_model.safetensors"), (text, "text_encoder/model.safetensors")):
        module.load_state_dict({k: v.float() for k, v in load_file(folder / sub).items()})


def train_grounding(steps: int = 2000, *, work: Path = WORK, **options) -> None:
    """``make toy``'s second U-Net stage: continue from the first stage's weights in ``work`` with
    the token grounding loss (:mod:`sdprobe.toy.grounding`), in ``work / "ground"``."""
    options = {"lr": 2e-4, "warmup": 100, "grounding_weight": GROUNDING_WEIGHT, "pixel_weight": PIXEL_WEIGHT,
               "milestones": (500, 1000, 1500),
               **options}
    train_unet(steps, init_from=work, work=work / "ground", vae_from=work, **options)


@torch.no_grad()
def _milestone(work: Path, step: int, final: bool, vae, unet, text, params, ema, tok, scale: float,
               judge_images: int, judge_steps: int = 20) -> str:
    """Judge the EMA weights (and at the end the raw ones); log, save samples, return the better."""
    results = {}
    raw = [p.detach().clone() for p in params]
    for name in (("ema", "raw") if final else ("ema",)):
        for p, w in zip(params, ema if name == "ema" else raw):
            p.copy_(w)
        pipe = _pipeline(vae, unet, text, tok, scale)
        results[name] = judge_milestone(pipe, judge_images, steps=judge_steps)
        _log(work, "milestones", {"step": step, "weights": name, **results[name]})
        if name == "ema":
            _milestone_samples(work, step, pipe, judge_steps)
    for p, w in zip(params, raw):
        p.copy_(w)
    return max(results, key=lambda k: results[k]["mean_correct"])


def _pipeline(vae, unet, text, tok, scale: float, scheduler: str = "dpm"):
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    vae.register_to_config(scaling_factor=scale)  # the pipeline decodes with the VAE's own factor
    pndm = arch.make_scheduler()
    sched = DPMSolverMultistepScheduler.from_config(pndm.config) if scheduler == "dpm" else pndm
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text.eval(), tokenizer=tok, unet=unet.eval(),
                                   scheduler=sched, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def judge_milestone(pipe, n: int, *, steps: int = 20, guidance: float = 7.5, batch: int = 16) -> dict:
    """Share of correct images per scene kind on ``n`` validation prompts each (seeds from
    :data:`VALIDATION_SEEDS_FROM`, apart from the shipped evaluation's), and of images whose
    background is the one the prompt names."""
    from sdprobe.toy.evaluate import KINDS, judge_images

    out: dict = {}
    for kind in KINDS:
        prompts = [sample_scene(VALIDATION_SEEDS_FROM + i, kind=kind).caption for i in range(n)]
        verdicts = judge_images(pipe, prompts, steps=steps, guidance=guidance, batch=batch)
        out[kind] = float(np.mean([v.correct for v in verdicts]))
        named = [v.background_correct for v in verdicts if v.background_correct is not None]
        out[f"{kind}_background"] = float(np.mean(named)) if named else None
    out["mean_correct"] = float(np.mean([out[k] for k in KINDS]))
    return out


@torch.no_grad()
def latent_pool(vae, scale: float, tok, work: Path, size: int, *, batch: int = 100,
                device: str | torch.device = "cpu", workers: int = 1, shared: Path | None = None) -> dict:
    """Scaled latent means and stds ``[N, 4, 16, 16]`` of ``size`` training scenes, their
    caption token ids ``[N, 77]`` and grounding targets (masks ``[N, 2, 16, 16]``, word positions
    ``[N, 2, 2]``), encoded once (cached in ``work``, or read from ``shared``, the folder of the
    VAE's own stage, when it holds the same pool).

    Encoding is the costliest part of a step on the CPU; drawing a fresh sample from each
    scene's latent distribution every time it is used keeps the pool from being memorised exactly.
    """
    path = work / f"latents-{size}.pt"
    if shared is not None and not path.is_file() and (shared / path.name).is_file():
        path = shared / path.name  # the same VAE and seeds: the pool of an earlier stage is this one
    if (cached := _load(path, device)) is None:
        seeds = seed_stream(2, size, 0)
        means, stds, captions, masks, tokens = [], [], [], [], []
        for arrays, caps, m, t in progress(render_scenes(seeds, workers, batch), desc="encode", total=-(-size // batch)):
            dist = vae.encode(to_tensor(arrays).to(device)).latent_dist
            means.append(dist.mean * scale)
            stds.append(dist.std * scale)
            captions += caps
            masks.append(torch.from_numpy(m).half())
            tokens.append(torch.from_numpy(t))
        cached = {"mean": torch.cat(means), "std": torch.cat(stds), "captions": captions,
                  "masks": torch.cat(masks).to(device), "tokens": torch.cat(tokens).to(device)}
        _save(path, **cached)
    unique = sorted(set(cached["captions"]))  # templates repeat: tokenize each caption once
    row = {c: i for i, c in enumerate(unique)}
    table = tok(unique, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    ids = table[torch.tensor([row[c] for c in cached["captions"]])]
    empty = tok([""], padding="max_length", max_length=77, return_tensors="pt").input_ids
    return {**cached, "ids": ids.to(device), "empty": empty.to(device)}


def train_clip(steps: int = 600, batch: int = 64, lr: float = 1e-3, seed: int = 0, work: Path = WORK) -> None:
    from transformers import CLIPConfig, CLIPModel

    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / "clip.pt"
    tok = tokenizer(work / "tokenizer")
    config = CLIPConfig(text_config=arch.text_encoder_config(len(tok), tok.bos_token_id, tok.eos_token_id),
                        vision_config=arch.CLIP_VISION, projection_dim=64)
    torch.manual_seed(seed)
    model = CLIPModel(config)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    start = 0
    if (state := _load(ckpt)) is not None:
        model.load_state_dict(state["model"]); opt.load_state_dict(state["opt"]); start = state["step"]
    model.train()
    for step in progress(range(start, steps), desc="clip", initial=start, total=steps):
        images, captions = scene_batch(seed_stream(3, batch, step))
        pixels = F.interpolate(images, size=arch.CLIP_VISION["image_size"], mode="area")
        ids = tok(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        for g in opt.param_groups:
            g["lr"] = _lr(step, lr, 50, steps)
        out = model(input_ids=ids, pixel_values=pixels, return_loss=True)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        _log(work, "clip", {"step": step, "loss": out.loss.item()})
        if (step + 1) % 50 == 0 or step + 1 == steps:
            _save(ckpt, model=model.state_dict(), opt=opt.state_dict(), step=step + 1,
                  recipe=dict(steps=steps, batch=batch, device="cpu", threads=torch.get_num_threads(), lr=lr))


SAMPLE_PROMPTS = ("a red circle on the field", "three blue squares in the snow",
                  "a white dog runs across the field", "a yellow star and a purple triangle")


@torch.no_grad()
def _milestone_samples(work: Path, step: int, pipe, steps: int = 20) -> None:
    """Draw the sample prompts with the weights of this step (the chapter shows them over training)."""
    from PIL import Image

    images = pipe(list(SAMPLE_PROMPTS), num_inference_steps=steps,
                  generator=[torch.Generator().manual_seed(k) for k in range(len(SAMPLE_PROMPTS))]).images
    (work / "samples").mkdir(exist_ok=True)
    Image.fromarray(np.concatenate([np.asarray(im) for im in images], axis=1)).save(work / "samples" / f"step{step:05d}.png")


# ----------------------------------------------------------------------------- export


def export(out: Path = OUT, work: Path = WORK, vae_from: Path | None = None, weights: str = "auto") -> Path:
    """Write the diffusers pipeline (and the toy CLIP when trained) to ``out``; return it.

    ``weights`` picks the U-Net and text encoder: ``"ema"``, ``"raw"``, or ``"auto"`` for the one
    the last milestone's judge preferred. The U-Net and VAE are stored in fp16 (diffusers loads
    them in fp32 unless told otherwise); the text encoders, a few hundred kB, in fp32, so that a
    stock ``from_pretrained`` without a dtype gives one dtype throughout.
    """
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel

    state = _load(work / "unet.pt")
    if state is None:
        raise FileNotFoundError(f"no U-Net checkpoint in {work}: run the vae and unet stages first")
    staging = out.with_name(out.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    tok = tokenizer(staging / "tokenizer")
    vae_state = _load((vae_from or work) / "vae.pt")
    vae = AutoencoderKL(**arch.VAE, scaling_factor=state["scale"])
    vae.load_state_dict(vae_state["model"])
    unet = UNet2DConditionModel(**arch.UNET)
    unet.load_state_dict(state["unet"])
    text = CLIPTextModel(CLIPTextConfig(**arch.text_encoder_config(len(tok), tok.bos_token_id, tok.eos_token_id)))
    text.load_state_dict(state["text"])
    chosen = (state.get("prefer") or "ema") if weights == "auto" else weights
    if chosen == "ema":
        with torch.no_grad():
            for p, e in zip(list(unet.parameters()) + list(text.parameters()), state["ema"]):
                p.copy_(e)
    pipe = StableDiffusionPipeline(vae=vae.half(), text_encoder=text, tokenizer=tok, unet=unet.half(),
                                   scheduler=arch.make_scheduler(), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(staging, safe_serialization=True)
    sources = list(dict.fromkeys([work, vae_from or work]))  # the U-Net's folder first, then the VAE's
    clip_state = next((c for c in (_load(f / "clip.pt") for f in sources) if c is not None), None)
    if clip_state is not None:
        config = CLIPConfig(text_config=arch.text_encoder_config(len(tok), tok.bos_token_id, tok.eos_token_id),
                            vision_config=arch.CLIP_VISION, projection_dim=64)
        clip = CLIPModel(config)
        clip.load_state_dict(clip_state["model"])
        clip.save_pretrained(staging / "clip", safe_serialization=True)
        tok.save_pretrained(staging / "clip")
        _clip_image_processor().save_pretrained(staging / "clip")
    (staging / "world.json").write_text(json.dumps(world_spec(), indent=1))
    (staging / "weights.json").write_text(json.dumps({"unet_and_text_encoder": chosen}) + "\n")
    earlier = _earlier_stage(state.get("recipe"))
    unet_stages = [*earlier["recipe"].get("unet", []), {**state.get("recipe", {}), "init_from": None}] \
        if earlier else [state.get("recipe")]
    recipe = {"vae": vae_state.get("recipe"), "unet": [r for r in unet_stages if r],
              "clip": clip_state.get("recipe") if clip_state else None}
    (staging / "recipe.json").write_text(json.dumps({k: v for k, v in recipe.items() if v}, indent=1) + "\n")
    write_training_log(staging, sources, earlier["log"] if earlier else None)
    _copy_samples(staging / "samples", work, earlier)
    timings = (earlier["timings"] if earlier else []) + [
        line for f in sources if (f / "timings.jsonl").is_file() for line in (f / "timings.jsonl").read_text().splitlines()]
    if timings:
        (staging / "timings.jsonl").write_text("\n".join(timings) + "\n")
    for keep in ("README.md", "evaluation.json", "figures"):  # the model card and its figures stay
        if (out / keep).exists():
            shutil.move(str(out / keep), str(staging / keep))
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out


def _copy_samples(target: Path, work: Path, earlier: dict | None) -> None:
    """The milestone samples of every stage, named by the step counted from the first stage."""
    offset = 0
    if earlier:
        if (earlier["folder"] / "samples").is_dir():
            shutil.copytree(earlier["folder"] / "samples", target)
        offset = max([r["step"] for r in earlier["log"].get("unet", [])] or [0])
    target.mkdir(exist_ok=True)
    for png in sorted((work / "samples").glob("step*.png")) if (work / "samples").is_dir() else []:
        shutil.copy(png, target / f"step{int(png.stem[4:]) + offset:05d}.png")


def _earlier_stage(recipe: dict | None) -> dict | None:
    """For a continuation run (``init_from``): the recipe, training log and timings of the stage it
    started from (an exported folder of ours, or a work folder); else ``None``."""
    folder = Path(recipe["init_from"]) if recipe and recipe.get("init_from") else None
    if folder is None:
        return None
    timings = (folder / "timings.jsonl").read_text().splitlines() if (folder / "timings.jsonl").is_file() else []
    timings = [t for t in timings if json.loads(t)["stage"] == "unet"]
    if (folder / "unet.pt").is_file():  # a work folder: its checkpoint and logs
        state = _load(folder / "unet.pt")
        log = {k: v for k, v in training_log([folder]).items() if k in ("unet", "milestones")}
        return {"recipe": {"unet": [state.get("recipe", {})]}, "log": log, "timings": timings, "folder": folder}
    if not (folder / "recipe.json").is_file():
        return None
    earlier = json.loads((folder / "recipe.json").read_text())
    if isinstance(earlier.get("unet"), dict):
        earlier["unet"] = [earlier["unet"]]
    log = json.loads((folder / "training_log.json").read_text()) if (folder / "training_log.json").is_file() else {}
    return {"recipe": earlier, "log": log, "timings": timings, "folder": folder}


def _clip_image_processor():
    """The preprocessing the toy CLIP was trained with: area-resize to 64 px, values in [-1, 1]."""
    from PIL import Image
    from transformers import CLIPImageProcessor

    side = arch.CLIP_VISION["image_size"]
    return CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                              image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=Image.BOX)


def training_log(sources: list[Path] | None = None) -> dict:
    """The training curves of every stage, thinned, and the milestone judgements; each stage's log
    is read from the first of ``sources`` (work folders, by default ``.toytrain``) that has one.

    A resumed run logs the steps after its checkpoint again; the last record of a step wins.
    """
    sources = sources or [WORK]
    logs = {}
    for name in ("vae", "unet", "clip"):
        if (found := next((f / f"{name}.jsonl" for f in sources if (f / f"{name}.jsonl").is_file()), None)):
            by_step = {r["step"]: r for r in map(json.loads, open(found))}
            logs[name] = [by_step[k] for k in sorted(by_step)]
    logs = _thin(logs)
    if (found := next((f / "milestones.jsonl" for f in sources if (f / "milestones.jsonl").is_file()), None)):
        latest = {(r["step"], r["weights"]): r for r in map(json.loads, open(found))}
        logs["milestones"] = [latest[k] for k in sorted(latest)]
    return logs


def write_training_log(folder: Path, sources: list[Path] | None = None, earlier: dict | None = None) -> Path:
    """:func:`training_log` as ``training_log.json`` in ``folder``. ``earlier``, the log of the
    stage a continuation started from, goes first: its U-Net rows and milestones keep their stage
    numbers (1 by default), this run's get the next, with steps counted on from the earlier end."""
    logs = training_log(sources)
    if earlier:
        stages = max([r.get("stage", 1) for r in earlier.get("unet", [])] or [0])
        offset = max([r["step"] for r in earlier.get("unet", [])] or [0])
        for name in ("unet", "milestones"):
            logs[name] = [{"stage": r.get("stage", 1), **r} for r in earlier.get(name, [])] + \
                         [{**r, "stage": stages + 1, "step": r["step"] + offset} for r in logs.get(name, [])]
    path = folder / "training_log.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(logs))
    tmp.replace(path)
    return path


def _thin(logs: dict[str, list[dict]], every: int = 10) -> dict[str, list[dict]]:
    """Training curves averaged over windows of ``every`` steps (the shipped log stays small)."""
    out = {}
    for name, rows in logs.items():
        keys = [k for k in rows[0] if k != "step"]
        # Each point: the mean over a window of steps, at the window's last step (counted from 1).
        out[name] = [{"step": rows[i:i + every][-1]["step"] + 1,
                      **{k: float(np.mean([r[k] for r in rows[i:i + every]])) for k in keys}}
                     for i in range(0, len(rows), every)]
    return out


# ----------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdprobe.toy.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", nargs="+", default=["vae", "clip", "unet", "ground", "export"],
                        choices=["vae", "clip", "unet", "ground", "export"])
    parser.add_argument("--vae-steps", type=int, default=3000)
    parser.add_argument("--unet-steps", type=int, default=10_000)
    parser.add_argument("--clip-steps", type=int, default=600)
    parser.add_argument("--ground-steps", type=int, default=2000, help="steps of the grounding stage")
    parser.add_argument("--batch", type=int, default=32, help="U-Net batch")
    parser.add_argument("--pool", type=int, default=24_000, help="training scenes encoded for the U-Net")
    parser.add_argument("--judge-images", type=int, default=32,
                        help="validation prompts per kind at milestones (0: no judging)")
    parser.add_argument("--unet-minutes", type=float, default=None,
                        help="a time budget for the U-Net stage: as many steps as fit (at most --unet-steps)")
    parser.add_argument("--milestones", type=float, nargs="*", default=None,
                        help="steps judged, or fractions of the run below 1 (default: a fixed list)")
    parser.add_argument("--grounding", type=float, default=0.0,
                        help="weight of the token grounding loss in the unet stage (the ground stage uses "
                             f"{GROUNDING_WEIGHT}; sdprobe.toy.grounding)")
    parser.add_argument("--pixels", type=float, default=0.0,
                        help=f"weight of the pixel grounding loss in the unet stage (the ground stage uses {PIXEL_WEIGHT})")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="start the U-Net stage from an exported pipeline folder (a continuation run)")
    parser.add_argument("--lr", type=float, default=1e-3, help="U-Net peak learning rate")
    parser.add_argument("--warmup", type=int, default=200, help="U-Net warm-up steps")
    parser.add_argument("--weights", choices=["auto", "ema", "raw"], default="auto",
                        help="what export ships: the EMA, the raw weights, or the one the last judgement preferred")
    parser.add_argument("--work", type=Path, default=WORK, help="checkpoints and logs")
    parser.add_argument("--vae-from", type=Path, default=None, help="a work folder whose VAE the U-Net uses")
    parser.add_argument("--out", type=Path, default=OUT, help="where export writes the pipeline")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=1, help="processes drawing the latent pool's scenes")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch threads (default: the cores this process may use; fewer when the machine is shared)")
    args = parser.parse_args(argv)
    if args.judge_images < 0:
        parser.error(f"--judge-images must be 0 or more, not {args.judge_images}")
    for name in ("vae_steps", "unet_steps", "clip_steps", "ground_steps", "batch", "pool", "threads", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, not {getattr(args, name)}")
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    unet_options = {} if args.milestones is None else {"milestones": tuple(args.milestones)}
    for stage in args.stage:
        start = time.time()
        if stage == "vae":
            train_vae(args.vae_steps, work=work)
        elif stage == "unet":
            train_unet(args.unet_steps, batch=args.batch, pool_size=args.pool, judge_images=args.judge_images,
                       work=work, vae_from=args.vae_from, device=args.device, workers=args.workers,
                       minutes=args.unet_minutes, grounding_weight=args.grounding, pixel_weight=args.pixels,
                       init_from=args.init_from,
                       lr=args.lr, warmup=args.warmup, **unet_options)
        elif stage == "ground":
            train_grounding(args.ground_steps, work=work, batch=args.batch, pool_size=args.pool,
                            judge_images=args.judge_images, device=args.device, workers=args.workers)
        elif stage == "clip":
            train_clip(args.clip_steps, work=work)
        else:  # the last U-Net stage that ran: the grounding stage's folder when it has a checkpoint
            last = work / "ground" if (work / "ground" / "unet.pt").is_file() else work
            export(args.out, last, args.vae_from or (work if last != work else None), args.weights)
        print(f"{stage}: {time.time() - start:.0f} s", flush=True)
        with open(work / "timings.jsonl", "a") as f:
            f.write(json.dumps({"stage": stage, "seconds": round(time.time() - start, 1), "threads": args.threads,
                                "device": args.device}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
