"""The ``unet`` and ``ground`` stages: the U-Net and the text encoder together on latents of a scene pool, with Min-SNR weights, an EMA and judged milestones."""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sdprobe.images import to_tensor
from sdprobe.progress import progress, progress_bar
from sdprobe.toy import architecture as arch
from sdprobe.toy.grounding import attention_maps, grounding_loss, pixel_loss
from sdprobe.toy.train.checkpoints import _load, _log, _lr, _save
from sdprobe.toy.train.data import (
    VALIDATION_SEEDS_FROM,
    WORK,
    render_scenes,
    seed_stream,
    step_generator,
    tokenizer,
)
from sdprobe.toy.train.samples import _milestone_samples
from sdprobe.toy.train.vae import _load_vae, latent_scale
from sdprobe.world import sample_scene


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
    ``minutes``, the run times its steps :data:`~sdprobe.toy.train.unet.CALIBRATION_STEPS` and then takes as many steps
    (at most ``steps``) as fit. ``grounding_weight`` and ``pixel_weight`` add the token and pixel
    grounding losses of :mod:`sdprobe.toy.grounding`; ``init_from`` starts a new run from the U-Net and text encoder
    of an earlier stage (an exported pipeline folder or a work folder) instead of random weights.
    ``scale_scenes`` held-out scenes set the latent scale (``latent_scale``).
    """
    from diffusers import DDPMScheduler

    if minutes is not None and warmup <= CALIBRATION_STEPS[1]:
        raise ValueError(f"a time budget needs a warm-up longer than {CALIBRATION_STEPS[1]} steps, not {warmup}")
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / "unet.pt"
    tok = tokenizer(work / "tokenizer")
    vae = _load_vae(vae_from or work, device)
    scale = latent_scale(vae, scale_scenes)
    torch.manual_seed(seed)
    unet, text, params, ema, opt = _models(tok, lr, device, init_from)
    start, total = _resume(ckpt, device, unet, text, opt, ema, steps)
    pool = latent_pool(vae, scale, tok, work, pool_size, device=device, workers=workers, shared=vae_from)
    recipe = dict(steps=total, batch=batch, device=str(device), threads=torch.get_num_threads(), pool=pool_size,
                  lr=lr, warmup=warmup, snr_gamma=snr_gamma, noise_offset=noise_offset, empty_captions=drop,
                  grounding_weight=grounding_weight, pixel_weight=pixel_weight,
                  init_from=str(init_from) if init_from else None)
    noise_sched = DDPMScheduler(**_scheduler_kwargs())
    alphas_cumprod = noise_sched.alphas_cumprod.to(device)

    def checkpoint(prefer: str | None) -> None:
        _save(ckpt, unet=unet.state_dict(), text=text.state_dict(), opt=opt.state_dict(), ema=ema, step=step,
              total=total, scale=scale, prefer=prefer, recipe=recipe)

    unet.train(); text.train()
    bar = progress_bar(desc="unet", initial=start, total=total)
    began = clock = time.perf_counter()
    step = start
    while step < total:
        picked, keep, latents, ids, noise, t = _draw(pool, step_generator(seed, step), batch, drop, noise_offset, device)
        noisy = noise_sched.add_noise(latents, noise, t)
        for g in opt.param_groups:
            g["lr"] = _lr(step, lr, warmup, total)
        grounded = bool(grounding_weight or pixel_weight)
        with attention_maps(unet) if grounded else nullcontext([]) as maps:
            pred = unet(noisy, t, text(ids).last_hidden_state).sample
        per_image = F.mse_loss(pred, noise, reduction="none").mean((1, 2, 3))
        loss = denoise = (min_snr_weights(alphas_cumprod, t, snr_gamma) * per_image).mean()
        grounding = pixels = torch.zeros(())
        if grounded:
            masks, tokens = pool["masks"][picked], pool["tokens"][picked]
            grounding = grounding_loss(maps, masks, tokens, keep) if grounding_weight else grounding
            pixels = pixel_loss(maps, masks, tokens, keep) if pixel_weight else pixels
            loss = denoise + grounding_weight * grounding + pixel_weight * pixels
        _update(opt, loss, params, ema, step)
        _log(work, "unet", {"step": step, "loss": denoise.item(), "mse": per_image.mean().item(),
                            "grounding": grounding.item(), "pixels": pixels.item()})
        step += 1
        if minutes is not None and step in CALIBRATION_STEPS:
            if step == CALIBRATION_STEPS[0]:
                clock = time.perf_counter()
            else:
                per_step = (time.perf_counter() - clock) / (CALIBRATION_STEPS[1] - CALIBRATION_STEPS[0])
                total = steps_in_budget(minutes, time.perf_counter() - began, per_step, step, steps)
                bar.total = recipe["steps"] = total
                print(f"unet: {per_step * 1000:.0f} ms a step; the budget holds {total} steps", flush=True)
        bar.update(1)
        if step % 50 == 0 or step == total:
            checkpoint(prefer=None)
        judged = {int(round(m * total)) if m < 1 else int(m) for m in milestones}
        if judge_images and (step in judged or step == total):
            prefer = _milestone(work, step, step == total, vae, unet, text, params, ema, tok, scale, judge_images,
                                judge_steps)
            if step == total:
                checkpoint(prefer=prefer)
            unet.train(); text.train()
    bar.close()


def steps_in_budget(minutes: float, elapsed: float, per_step: float, step: int, steps: int) -> int:
    """How many steps a run with a time budget takes in all: those done (``step``) and as many more
    as the ``minutes`` left after ``elapsed`` seconds hold at ``per_step`` seconds each, at most ``steps``."""
    left = minutes * 60 - elapsed
    return min(steps, step + max(0, int(left / per_step)))


def _models(tok, lr: float, device: str, init_from: Path | None) -> tuple:
    """A fresh U-Net and text encoder (or an earlier stage's, ``init_from``), their parameters, the
    EMA copies and the optimiser."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    unet = UNet2DConditionModel(**arch.UNET).to(device)
    text = CLIPTextModel(CLIPTextConfig(**arch.text_encoder_config(len(tok), tok.bos_token_id, tok.eos_token_id))).to(device)
    if init_from is not None:
        with torch.no_grad():
            _init_from(init_from, unet, text)
    params = list(unet.parameters()) + list(text.parameters())
    ema = [p.detach().clone() for p in params]
    # On a GPU the fused AdamW saves hundreds of kernel launches a step (the toy U-Net is launch-bound).
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2, fused=torch.device(device).type == "cuda")
    return unet, text, params, ema, opt


def _resume(ckpt: Path, device: str, unet, text, opt, ema: list[torch.Tensor], steps: int) -> tuple[int, int]:
    """Load the checkpoint when there is one; the step to start from and the run's length."""
    if (state := _load(ckpt, device)) is None:
        return 0, steps
    unet.load_state_dict(state["unet"]); text.load_state_dict(state["text"]); opt.load_state_dict(state["opt"])
    for e, saved in zip(ema, state["ema"]):
        e.copy_(saved)
    return state["step"], state.get("total") or steps


def _draw(pool: dict, gen: torch.Generator, batch: int, drop: float, noise_offset: float, device: str) -> tuple:
    """One step's batch from the latent pool, every draw from the step's own generator: the pool
    rows picked, which captions are kept (the others empty, for guidance), the latents, the token
    ids, the offset noise and the timesteps."""
    pick = torch.randint(0, len(pool["ids"]), (batch,), generator=gen)
    keep = (torch.rand(batch, generator=gen) >= drop).to(device)
    picked = pick.to(device)
    mean, std = pool["mean"][picked], pool["std"][picked]
    latents = mean + std * torch.randn(mean.shape, generator=gen).to(device)
    ids = torch.where(keep[:, None], pool["ids"][picked], pool["empty"])
    noise = torch.randn(latents.shape, generator=gen)
    noise = (noise + noise_offset * torch.randn(batch, 4, 1, 1, generator=gen)).to(device)
    t = torch.randint(0, 1000, (batch,), generator=gen).to(device)
    return picked, keep, latents, ids, noise, t


def _update(opt, loss: torch.Tensor, params: list[torch.Tensor], ema: list[torch.Tensor], step: int) -> None:
    """One optimiser step with the gradient clipped at norm 1, then the EMA."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    with torch.no_grad():  # one fused update of all EMA tensors (as diffusers' EMAModel(foreach=True))
        torch._foreach_lerp_(ema, [p.detach() for p in params], 1.0 - ema_decay(step))


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
