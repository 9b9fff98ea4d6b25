"""Train the toy model from scratch: ``python -m sdprobe.toy.train [--stage …]`` (``make toy``).

Stages, each deterministic from its seed and resumable from its checkpoint in ``.toytrain/``:

``vae``    an 8×-downsampling AutoencoderKL, on 64-pixel crops and then whole scenes, with object
           pixels weighted up (L1 + a small KL term, as in the latent diffusion paper's
           autoencoders but without the GAN);
``unet``   the U-Net and the CLIP text encoder together, on VAE latents of training scenes,
           with SD's epsilon objective and 10 % empty captions for classifier-free guidance;
``clip``   a small CLIP (contrastive image-text model) for the toy CLIP score, independent of
           the generator;
``export`` the diffusers pipeline into ``data/models/toy`` (fp16 safetensors), plus ``clip/``,
           ``world.json`` and the training log.

Scenes are drawn on the fly from seeds; no dataset is stored.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..paths import MODELS_DIR, REPO_ROOT
from ..progress import progress
from . import architecture as arch
from .tokenizer import build_tokenizer
from .world import caption_corpus, sample_scene, world_spec

__all__ = ["main", "train_clip", "train_unet", "train_vae", "export"]

WORK = REPO_ROOT / ".toytrain"
OUT = MODELS_DIR / "toy"
TRAIN_SEEDS_FROM = 1_000_000  # held-out evaluation seeds stay below this


# ----------------------------------------------------------------------------- data


def scene_batch(seeds: np.ndarray) -> tuple[torch.Tensor, list[str]]:
    """Images ``[B, 3, 128, 128]`` in ``[-1, 1]`` and captions of the scenes of ``seeds``."""
    scenes = [sample_scene(int(s)) for s in seeds]
    arrays = np.stack([s.array() for s in scenes]).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous(), [s.caption for s in scenes]


def object_masks(seeds: np.ndarray) -> torch.Tensor:
    """Where the objects of the scenes of ``seeds`` are: float ``[B, 1, 128, 128]``."""
    masks = np.stack([sample_scene(int(s)).masks().any(0) for s in seeds]).astype(np.float32)
    return torch.from_numpy(masks)[:, None]


def seed_stream(start: int, batch: int, step: int) -> np.ndarray:
    """The scene seeds of training step ``step``: fresh scenes every step."""
    base = TRAIN_SEEDS_FROM + start * 10_000_000 + step * batch
    return np.arange(base, base + batch)


# ----------------------------------------------------------------------------- checkpoints


def _save(path: Path, **state) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _load(path: Path):
    return torch.load(path, weights_only=False) if path.is_file() else None


def _log(work: Path, name: str, record: dict) -> None:
    with open(work / f"{name}.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def _lr(step: int, base: float, warmup: int, total: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


# ----------------------------------------------------------------------------- stages


def train_vae(steps: int = 2000, batch: int = 16, crop: int = 64, lr: float = 1e-3, seed: int = 0,
              full_from: int | None = None, object_weight: float = 10.0, work: Path = WORK) -> None:
    """The VAE: ``batch`` crops of ``crop`` pixels per step, then (from ``full_from``, by default 60 %
    of ``steps``) ``batch // 4`` whole scenes per step."""
    from diffusers import AutoencoderKL

    full_from = int(0.6 * steps) if full_from is None else full_from
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / "vae.pt"
    torch.manual_seed(seed)
    vae = AutoencoderKL(**arch.VAE)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    start = 0
    if (state := _load(ckpt)) is not None:
        vae.load_state_dict(state["model"]); opt.load_state_dict(state["opt"]); start = state["step"]
    gen = torch.Generator().manual_seed(seed + start)
    vae.train()
    for step in progress(range(start, steps), desc="vae", initial=start, total=steps):
        # Crops first (cheap); whole scenes last, so that the norm statistics match full images.
        # Object pixels weigh more throughout: they are few, and their colours are what the judge reads.
        size, count = (crop, batch) if step < full_from else (128, batch // 4)
        seeds = seed_stream(1, batch, step)[:count]
        images, _ = scene_batch(seeds)
        y, x = torch.randint(0, 128 - size + 1, (2,), generator=gen).tolist()
        images = images[:, :, y:y + size, x:x + size]
        weight = 1.0 + (object_weight - 1.0) * object_masks(seeds)[:, :, y:y + size, x:x + size]
        for g in opt.param_groups:
            g["lr"] = _lr(step, lr, 50, steps)
        dist = vae.encode(images).latent_dist
        recon = vae.decode(dist.sample(gen)).sample
        rec = ((recon - images).abs() * weight).mean() / weight.mean()
        kl = dist.kl().mean() / (4 * (size // 8) ** 2)
        loss = rec + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        _log(work, "vae", {"step": step, "l1": rec.item(), "kl": kl.item()})
        if (step + 1) % 50 == 0 or step + 1 == steps:
            _save(ckpt, model=vae.state_dict(), opt=opt.state_dict(), step=step + 1)


def _load_vae(work: Path = WORK):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(**arch.VAE)
    vae.load_state_dict(_load(work / "vae.pt")["model"])
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def latent_scale(vae, n: int = 256) -> float:
    """SD's ``scaling_factor``: one over the std of the latents of held-out scenes."""
    images, _ = scene_batch(np.arange(900_000, 900_000 + n))
    z = torch.cat([vae.encode(images[i:i + 32]).latent_dist.mean for i in range(0, n, 32)])
    return float(1.0 / z.std())


def tokenizer(folder: Path = WORK / "tokenizer"):
    """The toy tokenizer: merges learned from 3,000 captions (deterministic), files in ``folder``."""
    return build_tokenizer(caption_corpus(3000), folder)


def train_unet(steps: int = 5000, batch: int = 32, lr: float = 1e-3, seed: int = 0, drop: float = 0.1,
               work: Path = WORK, vae_from: Path = WORK, milestones: tuple[int, ...] = (100, 300, 1000, 2000, 3000),
               pool_size: int = 8000) -> None:
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / "unet.pt"
    tok = tokenizer(work / "tokenizer")
    vae = _load_vae(vae_from)
    scale = latent_scale(vae)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**arch.UNET)
    text = CLIPTextModel(CLIPTextConfig(**arch.text_encoder_config(len(tok), tok.bos_token_id, tok.eos_token_id)))
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    start = 0
    if (state := _load(ckpt)) is not None:
        unet.load_state_dict(state["unet"]); text.load_state_dict(state["text"]); opt.load_state_dict(state["opt"])
        start = state["step"]
    pool = _latent_pool(vae, scale, work, pool_size)
    noise_sched = DDPMScheduler(**{k: v for k, v in arch.SCHEDULER.items() if k not in {"skip_prk_steps", "set_alpha_to_one"}})
    gen = torch.Generator().manual_seed(seed + start)
    unet.train(); text.train()
    for step in progress(range(start, steps), desc="unet", initial=start, total=steps):
        pick = torch.randint(0, len(pool["captions"]), (batch,), generator=gen)
        keep = torch.rand(batch, generator=gen) >= drop
        captions = [pool["captions"][i] if k else "" for i, k in zip(pick.tolist(), keep.tolist())]
        mean, std = pool["mean"][pick], pool["std"][pick]
        latents = mean + std * torch.randn(mean.shape, generator=gen)
        ids = tok(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.randint(0, 1000, (batch,), generator=gen)
        noisy = noise_sched.add_noise(latents, noise, t)
        for g in opt.param_groups:
            g["lr"] = _lr(step, lr, 100, steps)
        pred = unet(noisy, t, text(ids).last_hidden_state).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        _log(work, "unet", {"step": step, "loss": loss.item()})
        if (step + 1) % 50 == 0 or step + 1 == steps:
            _save(ckpt, unet=unet.state_dict(), text=text.state_dict(), opt=opt.state_dict(), step=step + 1, scale=scale)
        if step + 1 in milestones or step + 1 == steps:
            _milestone_samples(work, step + 1, vae, unet, text, tok, scale)
            unet.train(); text.train()


@torch.no_grad()
def _latent_pool(vae, scale: float, work: Path, size: int, batch: int = 50) -> dict:
    """Scaled latent means and stds of ``size`` training scenes, encoded once (cached in ``work``).

    Encoding is the costliest part of a step on the CPU; drawing a fresh sample from each
    scene's latent distribution every time it is used keeps the pool from being memorised exactly.
    """
    path = work / f"latents-{size}.pt"
    if (cached := _load(path)) is not None:
        return cached
    seeds = seed_stream(2, size, 0)
    means, stds, captions = [], [], []
    for i in progress(range(0, size, batch), desc="encode"):
        images, caps = scene_batch(seeds[i:i + batch])
        dist = vae.encode(images).latent_dist
        means.append(dist.mean * scale)
        stds.append(dist.std * scale)
        captions += caps
    pool = {"mean": torch.cat(means), "std": torch.cat(stds), "captions": captions}
    _save(path, **pool)
    return pool


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
            _save(ckpt, model=model.state_dict(), opt=opt.state_dict(), step=step + 1)


SAMPLE_PROMPTS = ("a red circle on the field", "three blue squares in the snow",
                  "a white dog runs across the field", "a yellow star and a purple triangle")


@torch.no_grad()
def _milestone_samples(work: Path, step: int, vae, unet, text, tok, scale: float) -> None:
    """Draw the sample prompts with the weights of this step (the chapter shows them over training)."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline
    from PIL import Image

    vae.register_to_config(scaling_factor=scale)  # the pipeline decodes with the VAE's own factor
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text.eval(), tokenizer=tok, unet=unet.eval(),
                                   scheduler=PNDMScheduler(**arch.SCHEDULER), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(list(SAMPLE_PROMPTS), num_inference_steps=20,
                  generator=[torch.Generator().manual_seed(k) for k in range(len(SAMPLE_PROMPTS))]).images
    (work / "samples").mkdir(exist_ok=True)
    Image.fromarray(np.concatenate([np.asarray(im) for im in images], axis=1)).save(work / "samples" / f"step{step:05d}.png")


# ----------------------------------------------------------------------------- export


def export(out: Path = OUT) -> Path:
    """Write the diffusers pipeline (and the toy CLIP when trained) to ``out``; return it."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel

    state = _load(WORK / "unet.pt")
    if state is None:
        raise FileNotFoundError("no U-Net checkpoint in .toytrain/: run the vae and unet stages first")
    staging = out.with_name(out.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    tok = tokenizer(staging / "tokenizer")
    vae = AutoencoderKL(**arch.VAE, scaling_factor=state["scale"])
    vae.load_state_dict(_load(WORK / "vae.pt")["model"])
    unet = UNet2DConditionModel(**arch.UNET)
    unet.load_state_dict(state["unet"])
    text = CLIPTextModel(CLIPTextConfig(**arch.text_encoder_config(len(tok), tok.bos_token_id, tok.eos_token_id)))
    text.load_state_dict(state["text"])
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet,
                                   scheduler=PNDMScheduler(**arch.SCHEDULER), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.to(torch.float16).save_pretrained(staging, safe_serialization=True)
    if (clip_state := _load(WORK / "clip.pt")) is not None:
        config = CLIPConfig(text_config=arch.text_encoder_config(len(tok), tok.bos_token_id, tok.eos_token_id),
                            vision_config=arch.CLIP_VISION, projection_dim=64)
        clip = CLIPModel(config)
        clip.load_state_dict(clip_state["model"])
        clip.to(torch.float16).save_pretrained(staging / "clip", safe_serialization=True)
        tok.save_pretrained(staging / "clip")
        _clip_image_processor().save_pretrained(staging / "clip")
    (staging / "world.json").write_text(json.dumps(world_spec(), indent=1))
    write_training_log(staging)
    if (WORK / "samples").is_dir():
        shutil.copytree(WORK / "samples", staging / "samples")
    if (WORK / "timings.jsonl").is_file():
        shutil.copy(WORK / "timings.jsonl", staging / "timings.jsonl")
    for keep in ("README.md", "evaluation.json", "figures"):  # the model card and its figures stay
        if (out / keep).exists():
            shutil.move(str(out / keep), str(staging / keep))
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out


def _clip_image_processor():
    """The preprocessing the toy CLIP was trained with: area-resize to 64 px, values in [-1, 1]."""
    from PIL import Image
    from transformers import CLIPImageProcessor

    side = arch.CLIP_VISION["image_size"]
    return CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                              image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=Image.BOX)


def write_training_log(folder: Path) -> Path:
    """The training curves of every stage, thinned, as ``training_log.json`` in ``folder``.

    A resumed run logs the steps after its checkpoint again; the last record of a step wins.
    """
    logs = {}
    for name in ("vae", "unet", "clip"):
        if (WORK / f"{name}.jsonl").is_file():
            by_step = {r["step"]: r for r in map(json.loads, open(WORK / f"{name}.jsonl"))}
            logs[name] = [by_step[k] for k in sorted(by_step)]
    path = folder / "training_log.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_thin(logs)))
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
    parser.add_argument("--stage", nargs="+", default=["vae", "unet", "clip", "export"],
                        choices=["vae", "unet", "clip", "export"])
    parser.add_argument("--vae-steps", type=int, default=2000)
    parser.add_argument("--unet-steps", type=int, default=5000)
    parser.add_argument("--clip-steps", type=int, default=600)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids oversubscription)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    WORK.mkdir(exist_ok=True)
    for stage in args.stage:
        start = time.time()
        if stage == "vae":
            train_vae(args.vae_steps)
        elif stage == "unet":
            train_unet(args.unet_steps)
        elif stage == "clip":
            train_clip(args.clip_steps)
        else:
            export()
        print(f"{stage}: {time.time() - start:.0f} s", flush=True)
        with open(WORK / "timings.jsonl", "a") as f:
            f.write(json.dumps({"stage": stage, "seconds": round(time.time() - start, 1), "threads": args.threads}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
