"""Place objects by transplanting seedling noise (TAUE), with TKG-DM's chroma-key noise.

TAUE (Nagai, Morita, Kitada, Iyatomi, draft "潜在拡散モデルにおける生成対象の個別配置と生成による
画質改善の試み") generates every object on its own and plants it in a background latent:

1. **Chroma-key noise** (after TKG-DM, Morita et al., arXiv 2411.15580): shift the mean of latent
   channels 1 and 2 (0-based) so that their share of positive values rises by ``target``
   (0.07 for SD 1.5-class models, 0.11 for SDXL), and blend that shifted noise with the untouched
   noise through a Gaussian foreground mask centred on the object's box, so the object grows
   inside the box on a green back (:func:`chroma_key_noise`).
2. **Seedlings**: the intermediate latent after ``t_crop`` denoising steps of generating one object
   from that noise (:func:`make_seedlings`). Made once, reused for every background sample.
3. **Transplant**: denoise the background prompt for ``t_transplant`` steps, overwrite each box
   region of the latent with its seedling (rescaled by σ_bg/σ_seedling when ``t_transplant = 0``,
   as the draft writes), then continue with the full prompt (:func:`transplant_seedlings`).
4. **Region search**: where to put a box given a word's cross-attention map
   (:func:`sdprobe.analysis.heatmaps.search_region`).
5. **Attention Assignment Score**, which the draft leaves undefined; our definition is
   :func:`sdprobe.analysis.metrics.attention_assignment_score`.

Steps follow the library's convention (:mod:`sdprobe.probes.hooks`): ``t_crop = k`` and
``t_transplant = k`` mean "after ``k`` steps", the latent that step ``k`` would denoise (what
``callback_on_step_end`` sees at loop index ``k - 1``); ``t_transplant = 0`` is the starting noise
x_T. Everything runs through stock pipelines: ``latents=``, ``prompt_embeds=`` and
``callback_on_step_end``.
Boxes are ``(x0, y0, x1, y1)`` fractions of the image side, origin top-left. For example::

    layout = load_layout_prompts()[0]          # "A red car and a white sheep.", two boxes
    seeds = make_seedlings(pipe, layout.objects, t_crop=25, num_inference_steps=50)
    out = transplant_seedlings(pipe, seeds, prompt=layout.prompt, background_prompt=layout.background,
                               t_transplant=15, num_images=4)
    out.images                                 # four images, one car and one sheep planted each

To see a seedling's green-back object, finish its run: ``pipe(obj.prompt, latents=seeds.noise[k:k+1])``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from sdprobe.analysis.boxes import Box
from sdprobe.models import family_of, model_label, unet_fingerprint
from sdprobe.models.tokens import prompt_tokens, token_indices
from sdprobe.probes.hooks import execution_device, stop_after
from sdprobe.probes.transplant.chroma_key import chroma_key_noise, default_shift_target
from sdprobe.probes.transplant.layout import PlacedObject

__all__ = ["Seedlings", "TransplantResult", "make_seedlings", "paste_seedlings", "schedule_length",
           "seedling_provenance", "transplant_seedlings"]


def schedule_length(pipe, num_inference_steps: int) -> int:
    """How many denoising steps a call with ``num_inference_steps`` makes (PNDM makes one more)."""
    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)  # leave the pipe's own alone
    scheduler.set_timesteps(num_inference_steps)
    return len(scheduler.timesteps)


def seedling_provenance(pipe, num_inference_steps: int) -> dict[str, Any]:
    """What a seedling's latent depends on besides its noise: the model, its U-Net architecture,
    the scheduler and the timesteps of the schedule (JSON-ready)."""

    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)  # leave the pipe's own alone
    scheduler.set_timesteps(num_inference_steps)
    return {"model": model_label(pipe), "unet": unet_fingerprint(pipe.unet),
            "scheduler": type(pipe.scheduler).__name__,
            "timesteps": [round(float(t), 4) for t in scheduler.timesteps]}


def _check_step(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise ValueError(f"{name}={value!r} is outside the schedule: it must be an integer in [{low}, {high}]")


def _check_prompts(pipe, prompts: dict[str, str | None], words: Sequence[tuple[str, str]] = ()) -> None:
    """Every prompt fits the text encoder uncut (an over-long one is refused, never truncated), and
    every ``(word, prompt key)`` is a word of what the encoder sees for that prompt."""
    seen = {key: prompt_tokens(pipe, text, what=key.replace("_", " ")) for key, text in prompts.items() if text is not None}
    tokenizer = pipe.tokenizer if getattr(pipe, "tokenizer", None) is not None else pipe.tokenizer_2
    for word, key in words:
        token_indices(seen[key], word, tokenizer, what=key.replace("_", " "))


def _latent_shape(pipe, height: int | None, width: int | None) -> tuple[int, int, int, int]:
    """``(height, width, h, w)``: image size and latent size, defaulting to the U-Net's native size."""
    f = pipe.vae_scale_factor
    height = height or pipe.unet.config.sample_size * f
    width = width or pipe.unet.config.sample_size * f
    if height % f or width % f:
        raise ValueError(f"height and width must be multiples of {f}, got {height} × {width}")
    return height, width, height // f, width // f


def _draw_noise(pipe, n: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Unit Gaussian noise ``[n, C, h, w]`` drawn on the CPU, so a seed gives the same numbers anywhere."""
    g = torch.Generator("cpu").manual_seed(seed)
    return torch.randn(n, pipe.unet.config.in_channels, h, w, generator=g, dtype=torch.float32)


def _encode(pipe, prompts: list[str], negative_prompt: str | None, guidance_scale: float) -> dict[str, torch.Tensor]:
    """The prompt-embedding keyword arguments of ``pipe(...)`` for ``prompts`` (one image each)."""
    cfg = guidance_scale > 1
    negative = None if negative_prompt is None else [negative_prompt] * len(prompts)
    device = execution_device(pipe)
    if family_of(pipe) == "sdxl":
        pe, npe, pooled, npooled = pipe.encode_prompt(
            prompt=prompts, device=device, num_images_per_prompt=1,
            do_classifier_free_guidance=cfg, negative_prompt=negative,
        )
        out = {"prompt_embeds": pe, "pooled_prompt_embeds": pooled}
        if cfg:
            out.update(negative_prompt_embeds=npe, negative_pooled_prompt_embeds=npooled)
        return out
    pe, npe = pipe.encode_prompt(prompts, device, 1, cfg, negative_prompt=negative)
    return {"prompt_embeds": pe, **({"negative_prompt_embeds": npe} if cfg else {})}


def _loop_embeds(pipe, kwargs: dict[str, torch.Tensor], guidance_scale: float) -> dict[str, torch.Tensor]:
    """The embeddings as the denoising loop holds them: ``[negative; positive]`` under guidance."""
    def cat(neg: str, pos: str) -> torch.Tensor:
        return torch.cat([kwargs[neg], kwargs[pos]]) if guidance_scale > 1 else kwargs[pos]

    out = {"prompt_embeds": cat("negative_prompt_embeds", "prompt_embeds")}
    if family_of(pipe) == "sdxl":
        out["add_text_embeds"] = cat("negative_pooled_prompt_embeds", "pooled_prompt_embeds")
    return out


def _unet_tensor(pipe, x: torch.Tensor) -> torch.Tensor:
    return x.to(device=execution_device(pipe), dtype=pipe.unet.dtype)


# ----------------------------------------------------------------------------- seedlings


@dataclass
class Seedlings:
    """Seedling latents, one per object, made once and reused for every background.

    Attributes:
        latents: ``[n_objects, 4, h, w]`` (CPU, float32): each object's latent after ``t_crop``
            steps, in the pipeline's own sample scale at that step.
        noise: ``[n_objects, 4, h, w]``: the chroma-key starting noise they grew from.
        objects: the objects, in the same order.
        provenance: the model, U-Net architecture and schedule they grew under
            (:func:`seedling_provenance`); a transplant checks it against its own pipeline.
    """

    latents: torch.Tensor
    noise: torch.Tensor
    objects: tuple[PlacedObject, ...]
    t_crop: int
    num_inference_steps: int
    height: int
    width: int
    settings: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.objects)


def make_seedlings(
    pipe,
    objects: Sequence[PlacedObject],
    *,
    t_crop: int,
    num_inference_steps: int = 50,
    guidance_scale: float = 7.5,
    negative_prompt: str | None = None,
    target: float | None = None,
    sigma: float = 0.5,
    seed: int = 0,
    height: int | None = None,
    width: int | None = None,
) -> Seedlings:
    """Grow every object on a green back inside its box for ``t_crop`` steps, all in one batch.

    Each object starts from its own chroma-key noise (:func:`chroma_key_noise`, mask on its box);
    the pipeline runs with the objects' prompts as one batch and is stopped after step ``t_crop``
    (``callback_on_step_end`` takes the latent and stops the run: :func:`sdprobe.probes.hooks.stop_after`).

    Args:
        objects: the objects; their prompts should not mention green (TKG-DM).
        t_crop: steps to grow, in ``[1, L - 1]`` with ``L`` = :func:`schedule_length`.
        target: positive-share rise; ``None`` takes :func:`default_shift_target`.
    """
    objects = tuple(objects)
    if not objects or not all(isinstance(o, PlacedObject) for o in objects):
        raise ValueError("objects must be a non-empty sequence of PlacedObject")
    _check_prompts(pipe, {"negative_prompt": negative_prompt})
    for o in objects:
        _check_prompts(pipe, {"object_prompt": o.prompt}, [(o.word, "object_prompt")])
    length = schedule_length(pipe, num_inference_steps)
    _check_step("t_crop", t_crop, 1, length - 1)
    height, width, h, w = _latent_shape(pipe, height, width)
    for o in objects:
        o.box.cells(h, w)
    target = default_shift_target(pipe) if target is None else target
    base = _draw_noise(pipe, len(objects), h, w, seed)
    noise = torch.cat([chroma_key_noise(base[k : k + 1], [o.box], target=target, sigma=sigma) for k, o in enumerate(objects)])
    grabbed: dict[str, torch.Tensor] = {}
    with stop_after(pipe, t_crop) as stop:

        def grab(p, i: int, t, kw: dict[str, Any]) -> dict[str, Any]:
            if i + 1 == t_crop:
                grabbed["latents"] = kw["latents"].detach().float().cpu()
            return stop(p, i, t, kw)

        pipe(
            **_encode(pipe, [o.prompt for o in objects], negative_prompt, guidance_scale),
            latents=_unet_tensor(pipe, noise), num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale, height=height, width=width, output_type="latent",
            callback_on_step_end=grab, callback_on_step_end_tensor_inputs=["latents"],
        )
    return Seedlings(
        latents=grabbed["latents"], noise=noise, objects=objects, t_crop=t_crop,
        num_inference_steps=num_inference_steps, height=height, width=width,
        provenance=seedling_provenance(pipe, num_inference_steps),
        settings={"guidance_scale": guidance_scale, "negative_prompt": negative_prompt,
                  "target": target, "sigma": sigma, "seed": seed},
    )


# ----------------------------------------------------------------------------- transplant


def paste_seedlings(
    latents: torch.Tensor,
    seedlings: torch.Tensor,
    boxes: Sequence[Box | Sequence[float]],
    *,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Overwrite each box region of every sample with the same region of its seedling.

    Args:
        latents: ``[B, C, h, w]`` background latents.
        seedlings: ``[n, C, h, w]``, one per box; later boxes overwrite earlier ones where they overlap.
        scale: optional ``[B, n]`` factors multiplied into the pasted values.
    Returns:
        a new ``[B, C, h, w]`` tensor; outside the boxes it equals ``latents`` exactly.
    """
    if latents.dim() != 4 or seedlings.dim() != 4 or latents.shape[1:] != seedlings.shape[1:]:
        raise ValueError(
            f"latents [B, C, h, w] and seedlings [n, C, h, w] must agree in C, h, w; got "
            f"{tuple(latents.shape)} and {tuple(seedlings.shape)}"
        )
    if len(boxes) != seedlings.shape[0]:
        raise ValueError(f"{seedlings.shape[0]} seedlings but {len(boxes)} boxes")
    out = latents.clone()
    h, w = latents.shape[-2:]
    seed = seedlings.to(out)
    for k, box in enumerate(boxes):
        r0, r1, c0, c1 = Box.of(box).cells(h, w)
        patch = seed[k : k + 1, :, r0:r1, c0:c1].expand(out.shape[0], -1, -1, -1)
        if scale is not None:
            patch = patch * scale[:, k].to(out)[:, None, None, None]
        out[:, :, r0:r1, c0:c1] = patch
    return out


def _sigma_ratio(background: torch.Tensor, seedlings: torch.Tensor) -> torch.Tensor:
    """σ_bg / σ_seedling for every (background sample, seedling) pair: ``[B, n]``."""
    s_bg = background.float().flatten(1).std(dim=1)
    s_seed = seedlings.float().flatten(1).std(dim=1)
    return s_bg[:, None] / s_seed[None, :]


@dataclass
class TransplantResult:
    """What :func:`transplant_seedlings` made.

    Attributes:
        images: the pipeline's output (PIL images unless ``output_type`` says otherwise).
        noise: ``[B, 4, h, w]`` the background's starting noise.
        planted: ``[B, 4, h, w]`` the latent right after the transplant (step ``t_transplant``).
    """

    images: Any
    noise: torch.Tensor
    planted: torch.Tensor
    t_transplant: int


def transplant_seedlings(
    pipe,
    seedlings: Seedlings,
    *,
    prompt: str,
    background_prompt: str,
    t_transplant: int,
    num_images: int = 1,
    seed: int = 0,
    guidance_scale: float | None = None,
    negative_prompt: str | None = None,
    rescale: bool | None = None,
    output_type: str = "pil",
) -> TransplantResult:
    """Grow ``background_prompt`` for ``t_transplant`` steps, plant the seedlings, finish with ``prompt``.

    ``t_transplant = 0`` plants into the starting noise and runs the full prompt from there;
    otherwise one pipeline call runs with the background prompt's embeddings and, at step
    ``t_transplant``, a ``callback_on_step_end`` pastes the seedlings into their boxes and hands the
    loop the full prompt's embeddings. All ``num_images`` backgrounds share the same seedlings.

    Args:
        prompt: the full prompt; every object's ``word`` must occur in it.
        t_transplant: in ``[0, L - 1]`` with ``L`` = :func:`schedule_length`.
        rescale: multiply the seedlings by σ_bg/σ_seedling before pasting; ``None`` (the draft's
            choice) does so only when ``t_transplant = 0``.
        guidance_scale: ``None`` reuses the seedlings' setting.

    Under ``sdprobe.trace_attention`` the maps are read by the full prompt's words; before
    ``t_transplant`` the U-Net attended to the background prompt, so compare steps from
    ``t_transplant`` on.
    """
    if not isinstance(seedlings, Seedlings):
        raise TypeError("seedlings must come from make_seedlings()")
    _check_prompts(pipe, {"full_prompt": prompt, "background_prompt": background_prompt,
                          "negative_prompt": negative_prompt}, [(o.word, "full_prompt") for o in seedlings.objects])
    length = schedule_length(pipe, seedlings.num_inference_steps)
    _check_step("t_transplant", t_transplant, 0, length - 1)
    if isinstance(num_images, bool) or not isinstance(num_images, numbers.Integral) or num_images < 1:
        raise ValueError(f"num_images must be a whole number of at least 1, not {num_images!r}")
    height, width, h, w = _latent_shape(pipe, seedlings.height, seedlings.width)
    if seedlings.latents.shape[-2:] != (h, w):
        raise ValueError(f"the seedlings are {tuple(seedlings.latents.shape[-2:])} latents; this pipeline makes {(h, w)}")
    here = seedling_provenance(pipe, seedlings.num_inference_steps)
    differs = [k for k in here if seedlings.provenance.get(k) != here[k]]
    if differs:
        raise ValueError("the seedlings grew under another " + " and ".join(differs) + ": "
                         + "; ".join(f"{k} {seedlings.provenance.get(k)!r}, not {here[k]!r}" for k in differs)
                         + ". Make them again with this pipeline (make_seedlings).")
    guidance_scale = seedlings.settings["guidance_scale"] if guidance_scale is None else guidance_scale
    rescale = (t_transplant == 0) if rescale is None else rescale
    boxes = [o.box for o in seedlings.objects]
    noise = _draw_noise(pipe, num_images, h, w, seed)
    # a trace of this call reads its words from the embeddings the U-Net is given last: the full
    # prompt's (its maps are the full prompt's from t_transplant on)
    full = _encode(pipe, [prompt] * num_images, negative_prompt, guidance_scale)
    background = _encode(pipe, [background_prompt] * num_images, negative_prompt, guidance_scale) if t_transplant else {}
    planted: dict[str, torch.Tensor] = {}

    def plant(z: torch.Tensor) -> torch.Tensor:
        seeds = seedlings.latents
        scale = _sigma_ratio(z, seeds) if rescale else None
        out = paste_seedlings(z.float(), seeds.to(z.device), boxes, scale=scale).to(z.dtype)
        planted["latents"] = out.detach().float().cpu()
        return out

    common = dict(num_inference_steps=seedlings.num_inference_steps, guidance_scale=guidance_scale,
                  height=height, width=width, output_type=output_type)
    if t_transplant == 0:
        out = pipe(**full, latents=_unet_tensor(pipe, plant(noise)), **common)
        return TransplantResult(out.images, noise, planted["latents"], t_transplant)

    swap = _loop_embeds(pipe, full, guidance_scale)

    def at_transplant(p, i: int, t, kw: dict[str, Any]) -> dict[str, Any]:
        if i + 1 == t_transplant:
            kw["latents"] = plant(kw["latents"])
            kw.update({k: v.to(kw[k]) for k, v in swap.items()})
        return kw

    out = pipe(
        **background, latents=_unet_tensor(pipe, noise), callback_on_step_end=at_transplant,
        callback_on_step_end_tensor_inputs=["latents", *swap], **common,
    )
    return TransplantResult(out.images, noise, planted["latents"], t_transplant)
