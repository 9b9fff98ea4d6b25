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
   as the draft writes), then continue with the full prompt (:func:`transplant`).
4. **Region search**: where to put a box given a word's cross-attention map, by correlating the
   map with a box-shaped kernel that is high at the centre and negative at the border
   (:func:`search_region`).
5. **Attention Assignment Score**, which the draft leaves undefined; our definition is in
   :func:`attention_assignment_score`.

Steps count denoising steps done: step 0 is the initial noise x_T, step ``k`` the latent after
``k`` scheduler calls (what ``callback_on_step_end`` sees at loop index ``k - 1``). Everything runs
through stock pipelines: ``latents=``, ``prompt_embeds=`` and ``callback_on_step_end``.
Boxes are ``(x0, y0, x1, y1)`` fractions of the image side, origin top-left.

    layout = load_layout_prompts()[0]          # "A red car and a white sheep.", two boxes
    seeds = make_seedlings(pipe, layout.objects, t_crop=25, num_inference_steps=50)
    out = transplant(pipe, seeds, prompt=layout.prompt, background_prompt=layout.background,
                     t_transplant=15, num_images=4)
    out.images                                 # four images, one car and one sheep planted each

To see a seedling's green-back object, finish its run: ``pipe(obj.prompt, latents=seeds.noise[k:k+1])``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml

from .models import family_of
from .paths import DATA_DIR

__all__ = [
    "SHIFT_TARGETS",
    "AttentionAssignment",
    "Box",
    "LayoutPrompt",
    "PlacedObject",
    "Seedlings",
    "TransplantResult",
    "assignment_pairs",
    "attention_assignment_score",
    "box_kernel",
    "chroma_key_noise",
    "default_shift_target",
    "foreground_mask",
    "load_layout_prompts",
    "make_seedlings",
    "paste_seedlings",
    "positive_share",
    "schedule_length",
    "search_region",
    "shift_channels",
    "transplant",
]

#: TKG-DM's target rise of the positive share of channels 1 and 2, per model family.
SHIFT_TARGETS: dict[str, float] = {"sd1": 0.07, "sd2": 0.07, "sdxl": 0.11}

#: Latent channels TKG-DM shifts (0-based; the paper's "channels 2 and 3"): positive on both is green.
CHROMA_CHANNELS: tuple[int, int] = (1, 2)


# ----------------------------------------------------------------------------- boxes


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in fractions of the image: ``0 <= x0 < x1 <= 1``, ``0 <= y0 < y1 <= 1``."""

    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        vals = (self.x0, self.y0, self.x1, self.y1)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals):
            raise ValueError(f"box coordinates must be finite numbers, got {vals}")
        if not (0 <= self.x0 < self.x1 <= 1 and 0 <= self.y0 < self.y1 <= 1):
            raise ValueError(
                f"box {vals} must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 "
                "(fractions of the image, origin top-left); it lies outside the image or is empty"
            )

    @classmethod
    def of(cls, box: Box | Sequence[float]) -> Box:
        """Accept a :class:`Box` or any ``(x0, y0, x1, y1)`` sequence."""
        if isinstance(box, Box):
            return box
        if len(box) != 4:
            raise ValueError(f"a box is (x0, y0, x1, y1); got {len(box)} numbers: {tuple(box)}")
        return cls(*(float(v) for v in box))

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    def cells(self, h: int, w: int) -> tuple[int, int, int, int]:
        """Rows and columns ``(r0, r1, c0, c1)`` the box covers on an ``h × w`` grid (end exclusive).

        Raises ``ValueError`` when the box is smaller than one cell along either side.
        """
        if self.height * h < 1 - 1e-9 or self.width * w < 1 - 1e-9:
            raise ValueError(
                f"box {self.as_tuple()} covers {self.width * w:.2f} × {self.height * h:.2f} cells of the "
                f"{h} × {w} latent; it must span at least one latent cell each way"
            )
        r0, r1 = round(self.y0 * h), round(self.y1 * h)
        c0, c1 = round(self.x0 * w), round(self.x1 * w)
        return r0, max(r1, r0 + 1), c0, max(c1, c0 + 1)

    def to_pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` in pixels of a ``width × height`` image."""
        return (round(self.x0 * width), round(self.y0 * height), round(self.x1 * width), round(self.y1 * height))

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)


@dataclass(frozen=True)
class PlacedObject:
    """One object to place: its own prompt (``"a red car"``), its box, the noun that names it and,
    optionally, its attribute word (``"red"``, for :func:`attention_assignment_score`).

    ``word`` defaults to the prompt's last word; it must occur in the full prompt of :func:`transplant`.
    """

    prompt: str
    box: Box
    word: str = ""
    attribute: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "box", Box.of(self.box))
        if not self.prompt.strip():
            raise ValueError("an object's prompt is empty")
        if not self.word:
            object.__setattr__(self, "word", _words(self.prompt)[-1])
        _require_word(self.word, self.prompt, what="object prompt")
        if self.attribute:
            _require_word(self.attribute, self.prompt, what="object prompt")


@dataclass(frozen=True)
class LayoutPrompt:
    """A prompt with its objects placed in boxes, and the background prompt TAUE grows first."""

    prompt: str
    objects: tuple[PlacedObject, ...]
    background: str

    def __post_init__(self) -> None:
        for o in self.objects:
            _require_word(o.word, self.prompt, what="prompt")
            if o.attribute:
                _require_word(o.attribute, self.prompt, what="prompt")


def load_layout_prompts(path: str | Path | None = None, *, section: str = "prompts") -> list[LayoutPrompt]:
    """Read a layout prompt file such as ``data/prompts/drawbench_colors.yaml`` (the default).

    The file has ``background``, named ``boxes`` and ``prompts``, each a ``prompt`` with
    ``objects`` given as ``{noun, colour, box}`` (a box name or ``[x0, y0, x1, y1]``).
    ``section="toy"`` reads the toy world's analogue kept under ``toy:`` (its own ``background``
    and ``prompts``, the file's boxes).
    """
    path = Path(path) if path is not None else DATA_DIR / "prompts" / "drawbench_colors.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no layout prompt file at {path}")
    spec = yaml.safe_load(path.read_text())
    named = spec.get("boxes", {})
    if section != "prompts":
        if section not in spec or section == "boxes":
            options = ["prompts", *(k for k, v in spec.items() if isinstance(v, dict) and "prompts" in v)]
            raise ValueError(f"{path.name} has no section {section!r}; choose one of {options}")
        spec = spec[section]
    return [_layout_prompt(entry, named, spec.get("background", "")) for entry in spec["prompts"]]


def _layout_prompt(entry: dict[str, Any], named: dict[str, Any], background: str) -> LayoutPrompt:
    objects = []
    for o in entry["objects"]:
        box = o["box"]
        if isinstance(box, str):
            if box not in named:
                raise ValueError(f"box {box!r} of {entry['prompt']!r} is not one of the named boxes {sorted(named)}")
            box = named[box]
        colour = o.get("colour", "")
        text = f"a {colour} {o['noun']}" if colour else f"a {o['noun']}"
        objects.append(PlacedObject(text, Box.of(box), word=o["noun"], attribute=colour))
    return LayoutPrompt(entry["prompt"], tuple(objects), entry.get("background", background))


def _words(text: str) -> list[str]:
    return re.findall(r"[\w'-]+", text.lower())


def _require_word(word: str, prompt: str, *, what: str = "prompt") -> None:
    parts = _words(word)
    words = _words(prompt)
    n = len(parts)
    if not parts or not any(words[i : i + n] == parts for i in range(len(words) - n + 1)):
        raise ValueError(f"the word {word!r} is not in the {what} {prompt!r}; words there: {words}")


# ----------------------------------------------------------------------------- chroma-key noise


def default_shift_target(pipe) -> float:
    """TKG-DM's target for this pipeline's family: 0.11 for SDXL, 0.07 for SD 1.x/2.x and toy."""
    return SHIFT_TARGETS[family_of(pipe)]


def positive_share(noise: torch.Tensor) -> torch.Tensor:
    """Share of positive values per sample and channel: ``[B, C, h, w] -> [B, C]``."""
    return (noise > 0).float().mean(dim=(-2, -1))


def shift_channels(
    noise: torch.Tensor,
    target: float,
    *,
    channels: Sequence[int] = CHROMA_CHANNELS,
    step: float = 0.01,
    max_shift: float = 5.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """TKG-DM's channel mean shift.

    For each sample and each of ``channels``, the smallest ``delta`` on a grid of ``step`` such
    that the share of positive values of ``noise + delta`` is at least its original share plus
    ``target`` (TKG-DM raises delta by 0.01 until this holds). Other channels are untouched and the
    standard deviation is unchanged.

    Args:
        noise: ``[B, C, h, w]`` Gaussian noise.
        target: rise of the positive share, in ``[0, 1)``.
    Returns:
        ``(shifted [B, C, h, w], delta [B, len(channels)])``.
    """
    if noise.dim() != 4:
        raise ValueError(f"noise must be [B, C, h, w], got shape {tuple(noise.shape)}")
    if not 0 <= target < 1:
        raise ValueError(f"target must lie in [0, 1), got {target}")
    bad = [c for c in channels if not 0 <= c < noise.shape[1]]
    if bad:
        raise ValueError(f"channels {bad} do not exist in a {noise.shape[1]}-channel latent")
    grid = torch.arange(0, max_shift + step / 2, step, dtype=torch.float64)
    vals = noise[:, list(channels)].detach().double().flatten(2).sort(dim=-1).values  # [B, k, n]
    n = vals.shape[-1]
    # share(delta) = #(x > -delta) / n, read off the sorted values for every delta at once
    below = torch.searchsorted(vals.contiguous(), (-grid).expand(*vals.shape[:2], -1).contiguous(), right=True)
    share = (n - below).double() / n  # [B, k, len(grid)]
    need = share[..., :1] + target
    ok = share >= need - 1e-12
    if not ok.any(dim=-1).all():
        raise ValueError(f"no shift up to {max_shift} raises the positive share by {target}")
    delta = grid[ok.double().argmax(dim=-1)].to(noise.dtype)  # first delta that reaches it
    out = noise.clone()
    out[:, list(channels)] += delta[..., None, None].to(noise.device)
    return out, delta


def foreground_mask(boxes: Sequence[Box | Sequence[float]], h: int, w: int, *, sigma: float = 0.5) -> torch.Tensor:
    """Gaussian foreground mask ``[h, w]`` in ``[0, 1]``, one bump per box (their maximum).

    Each bump is ``exp(-(((x - cx) / (bw / 2))^2 + ((y - cy) / (bh / 2))^2) / (2 sigma^2))`` with
    the box's centre and size, so a full-image box gives TKG-DM's ``exp(-(x^2 + y^2) / (2 * 0.5^2))``
    on ``[-1, 1]^2``. Computed directly at latent resolution (TKG-DM upsamples a coarser grid).
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if not boxes:
        raise ValueError("foreground_mask needs at least one box")
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    mask = torch.zeros(h, w)
    for b in map(Box.of, boxes):
        cy, cx = (b.y0 + b.y1) / 2, (b.x0 + b.x1) / 2
        dy = ((ys - cy) / (b.height / 2))[:, None]
        dx = ((xs - cx) / (b.width / 2))[None, :]
        mask = torch.maximum(mask, torch.exp(-(dx**2 + dy**2) / (2 * sigma**2)))
    return mask


def chroma_key_noise(
    noise: torch.Tensor,
    boxes: Sequence[Box | Sequence[float]],
    *,
    target: float,
    sigma: float = 0.5,
) -> torch.Tensor:
    """TKG-DM's initial noise: ``A * z + (1 - A) * shift(z)`` with ``A`` the foreground mask.

    Args:
        noise: ``[B, 4, h, w]`` Gaussian noise z_T.
        boxes: the object boxes (all samples share them).
        target: rise of the positive share of channels 1 and 2 (see :func:`default_shift_target`).
    Returns:
        ``[B, 4, h, w]``: untouched inside the boxes, shifted towards green outside.
    """
    shifted, _ = shift_channels(noise, target)
    a = foreground_mask(boxes, noise.shape[-2], noise.shape[-1], sigma=sigma).to(noise)
    return noise + (1 - a) * (shifted - noise)  # = a*z + (1-a)*z*, exact where z* = z


# ----------------------------------------------------------------------------- pipeline plumbing


def schedule_length(pipe, num_inference_steps: int) -> int:
    """How many denoising steps a call with ``num_inference_steps`` makes (PNDM makes one more)."""
    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)  # leave the pipe's own alone
    scheduler.set_timesteps(num_inference_steps)
    return len(scheduler.timesteps)


def _check_step(name: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}={value!r} is outside the schedule: it must be an integer in [{low}, {high}]")


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
    device = pipe._execution_device
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
    return x.to(device=pipe._execution_device, dtype=pipe.unet.dtype)


# ----------------------------------------------------------------------------- seedlings


@dataclass
class Seedlings:
    """Seedling latents, one per object, made once and reused for every background.

    Attributes:
        latents: ``[n_objects, 4, h, w]`` (CPU, float32): each object's latent after ``t_crop``
            steps, in the pipeline's own sample scale at that step.
        noise: ``[n_objects, 4, h, w]``: the chroma-key starting noise they grew from.
        objects: the objects, in the same order.
    """

    latents: torch.Tensor
    noise: torch.Tensor
    objects: tuple[PlacedObject, ...]
    t_crop: int
    num_inference_steps: int
    height: int
    width: int
    settings: dict[str, Any] = field(default_factory=dict)

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
    (``callback_on_step_end`` takes the latent and sets ``pipe._interrupt``, diffusers' documented
    way to end a run early).

    Args:
        objects: the objects; their prompts should not mention green (TKG-DM).
        t_crop: steps to grow, in ``[1, L - 1]`` with ``L`` = :func:`schedule_length`.
        target: positive-share rise; ``None`` takes :func:`default_shift_target`.
    """
    objects = tuple(objects)
    if not objects or not all(isinstance(o, PlacedObject) for o in objects):
        raise ValueError("objects must be a non-empty sequence of PlacedObject")
    length = schedule_length(pipe, num_inference_steps)
    _check_step("t_crop", t_crop, 1, length - 1)
    height, width, h, w = _latent_shape(pipe, height, width)
    for o in objects:
        o.box.cells(h, w)
    target = default_shift_target(pipe) if target is None else target
    base = _draw_noise(pipe, len(objects), h, w, seed)
    noise = torch.cat([chroma_key_noise(base[k : k + 1], [o.box], target=target, sigma=sigma) for k, o in enumerate(objects)])
    grabbed: dict[str, torch.Tensor] = {}

    def grab(p, i: int, t, kw: dict[str, Any]) -> dict[str, Any]:
        if i + 1 == t_crop:
            grabbed["latents"] = kw["latents"].detach().float().cpu()
            p._interrupt = True
        return kw

    try:
        pipe(
            **_encode(pipe, [o.prompt for o in objects], negative_prompt, guidance_scale),
            latents=_unet_tensor(pipe, noise), num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale, height=height, width=width, output_type="latent",
            callback_on_step_end=grab, callback_on_step_end_tensor_inputs=["latents"],
        )
    finally:
        pipe._interrupt = False  # the next call resets it too; leave no stopped pipeline behind
    return Seedlings(
        latents=grabbed["latents"], noise=noise, objects=objects, t_crop=t_crop,
        num_inference_steps=num_inference_steps, height=height, width=width,
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
    """What :func:`transplant` made.

    Attributes:
        images: the pipeline's output (PIL images unless ``output_type`` says otherwise).
        noise: ``[B, 4, h, w]`` the background's starting noise.
        planted: ``[B, 4, h, w]`` the latent right after the transplant (step ``t_transplant``).
    """

    images: Any
    noise: torch.Tensor
    planted: torch.Tensor
    t_transplant: int


def transplant(
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
    for o in seedlings.objects:
        _require_word(o.word, prompt, what="full prompt")
    length = schedule_length(pipe, seedlings.num_inference_steps)
    _check_step("t_transplant", t_transplant, 0, length - 1)
    if num_images < 1:
        raise ValueError(f"num_images must be at least 1, got {num_images}")
    height, width, h, w = _latent_shape(pipe, seedlings.height, seedlings.width)
    if seedlings.latents.shape[-2:] != (h, w):
        raise ValueError(f"the seedlings are {tuple(seedlings.latents.shape[-2:])} latents; this pipeline makes {(h, w)}")
    guidance_scale = seedlings.settings["guidance_scale"] if guidance_scale is None else guidance_scale
    rescale = (t_transplant == 0) if rescale is None else rescale
    boxes = [o.box for o in seedlings.objects]
    noise = _draw_noise(pipe, num_images, h, w, seed)
    # full prompt first: sdprobe.trace_attention keys its words on the first text-encoder run, so
    # a trace of this call reads the maps by the full prompt's words (meaningful from t_transplant on)
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


# ----------------------------------------------------------------------------- region search


def box_kernel(bh: int, bw: int) -> torch.Tensor:
    """The draft's search filter ``[bh, bw]``: box-shaped, highest at the centre, falling with
    distance and negative towards the border.

    ``k0 = 1 - 2 r^2`` with ``r`` the distance from the centre in half-box units (``r = 1`` at the
    middle of each edge), made zero-sum and scaled to a peak of 1. Zero-sum (our choice; the draft
    gives only the shape) means a flat map scores 0 everywhere, so only attention that is higher in
    the middle than at the border of the box can win, whatever the map's overall level.
    """
    if bh < 1 or bw < 1:
        raise ValueError(f"kernel size must be at least 1 × 1, got {bh} × {bw}")
    ys = ((torch.arange(bh, dtype=torch.float64) + 0.5) / bh - 0.5) * 2
    xs = ((torch.arange(bw, dtype=torch.float64) + 0.5) / bw - 0.5) * 2
    k = 1 - 2 * (ys[:, None] ** 2 + xs[None, :] ** 2)
    k = k - k.mean()
    peak = k.max()
    return (k / peak if peak > 0 else k).float()  # a 1 × 1 box has no border: all zeros


def _box_size(size: Box | Sequence[float]) -> tuple[float, float]:
    """``(width, height)`` fractions from a Box, an ``(x0, y0, x1, y1)`` box or a ``(width, height)`` pair."""
    if isinstance(size, Box) or len(size) == 4:
        b = Box.of(size)
        return b.width, b.height
    if len(size) != 2:
        raise ValueError(f"size must be a Box, (x0, y0, x1, y1) or (width, height); got {tuple(size)}")
    bw, bh = float(size[0]), float(size[1])
    if not (0 < bw <= 1 and 0 < bh <= 1):
        raise ValueError(f"box size must be fractions in (0, 1], got width {bw}, height {bh}")
    return bw, bh


def search_region(heatmap: torch.Tensor, size: Box | Sequence[float] | tuple[float, float]) -> Box:
    """Where a box of the given size best fits a word's cross-attention map (the draft's eq. 3).

    ``(i, j) = argmax_{i,j} sum_{m,n} A(i + m, j + n) * kernel(m, n)`` over every position where the
    box lies wholly inside the map, with :func:`box_kernel` the box-shaped filter; ties go to the
    first position in row-major order.

    Args:
        heatmap: ``[h, w]``, or ``[steps, h, w]`` (averaged over steps first).
        size: a :class:`Box` (only its width and height are used) or ``(width, height)`` fractions.
    Returns:
        the box of that size at the best position, in fractions of the image.
    """
    a = torch.as_tensor(heatmap, dtype=torch.float32)
    if a.dim() == 3:
        a = a.mean(dim=0)
    if a.dim() != 2:
        raise ValueError(f"heatmap must be [h, w] or [steps, h, w], got shape {tuple(a.shape)}")
    if not torch.isfinite(a).all():
        raise ValueError("heatmap holds NaN or infinite values")
    bw_f, bh_f = _box_size(size)
    h, w = a.shape
    bh, bw = round(bh_f * h), round(bw_f * w)
    if bh < 1 or bw < 1:
        raise ValueError(f"a {bw_f} × {bh_f} box is smaller than one cell of the {h} × {w} map")
    score = F.conv2d(a[None, None], box_kernel(bh, bw)[None, None])[0, 0]  # [h - bh + 1, w - bw + 1]
    i, j = divmod(int(score.flatten().argmax()), score.shape[1])
    return Box(j / w, i / h, (j + bw) / w, (i + bh) / h)


# ----------------------------------------------------------------------------- attention assignment


@dataclass
class AttentionAssignment:
    """Result of :func:`attention_assignment_score`.

    Attributes:
        score: the AAS, in ``[0, 1]``.
        per_pair: ``[n_pairs]`` each pair's overlap averaged over steps.
        per_step: ``[n_pairs, steps]`` the overlaps.
        margin: ``[n_pairs]`` own-noun overlap minus the largest overlap with another noun
            (``[-1, 1]``; negative means the attribute sits on the wrong object). NaN with one pair.
    """

    score: float
    per_pair: torch.Tensor
    per_step: torch.Tensor
    margin: torch.Tensor


def _as_distribution(m: torch.Tensor, name: str) -> torch.Tensor:
    """``[steps, h, w]`` maps → ``[steps, h*w]`` rows summing to 1 (all-zero rows stay zero)."""
    if (m < 0).any() or not torch.isfinite(m).all():
        raise ValueError(f"the attention map of {name!r} must be finite and non-negative")
    flat = m.flatten(1)
    total = flat.sum(dim=1, keepdim=True)
    return torch.where(total > 0, flat / total.clamp_min(1e-30), torch.zeros_like(flat))


def attention_assignment_score(
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> AttentionAssignment:
    """Attention Assignment Score (AAS) — our definition; the draft leaves the formula blank.

    The draft describes AAS as how well the cross-attention of an attribute word agrees with that
    of the object it belongs to during generation. We define, for attribute maps ``A_k`` and noun
    maps ``N_k`` (object ``k``, step ``s``), each normalised to sum to 1 over the cells:

        overlap_k(s) = sum_cells min(A_k(s), N_k(s))          (histogram intersection, in [0, 1])
        AAS          = mean_k mean_s overlap_k(s)

    1 means the attribute's attention lies exactly where its noun's does at every step; 0 means
    they never share a cell. A map that is zero everywhere at a step attends nowhere and scores 0
    there. ``margin`` also reports, per object, the own-noun overlap minus the largest overlap
    with another object's noun: the attribute-binding gap that colour swaps come from.

    Args:
        pairs: ``(attribute_map, noun_map)`` per object, each ``[h, w]`` or ``[steps, h, w]``,
            all of one shape, non-negative (e.g. ``trace.word_heatmap("red", step=i)`` stacked).
    """
    if not pairs:
        raise ValueError("attention_assignment_score needs at least one (attribute, noun) pair of maps")
    maps = []
    for k, pair in enumerate(pairs):
        if len(pair) != 2:
            raise ValueError(f"pair {k} must be (attribute_map, noun_map)")
        for m in pair:
            m = torch.as_tensor(m, dtype=torch.float32)
            maps.append(m[None] if m.dim() == 2 else m)
    shapes = {tuple(m.shape) for m in maps}
    if len(shapes) != 1 or maps[0].dim() != 3:
        raise ValueError(f"all maps must share one [h, w] or [steps, h, w] shape; got {sorted(shapes)}")
    dist = [_as_distribution(m, f"pair {k // 2} {'noun' if k % 2 else 'attribute'}") for k, m in enumerate(maps)]
    attrs, nouns = dist[0::2], dist[1::2]
    cross = torch.stack([torch.stack([torch.minimum(a, n).sum(dim=1) for n in nouns]) for a in attrs])  # [k, k, steps]
    overlap = torch.stack([cross[k, k] for k in range(len(attrs))])  # [k, steps]
    if len(attrs) > 1:
        others = cross.mean(dim=2).clone()
        others.fill_diagonal_(-math.inf)
        margin = overlap.mean(dim=1) - others.max(dim=1).values
    else:
        margin = torch.full((1,), math.nan)
    per_pair = overlap.mean(dim=1)
    return AttentionAssignment(float(per_pair.mean()), per_pair, overlap, margin)


def assignment_pairs(
    heatmap: Callable[..., torch.Tensor],
    objects: Sequence[PlacedObject],
    steps: Sequence[int],
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(attribute_maps, noun_maps)`` per object, each ``[steps, h, w]``, for
    :func:`attention_assignment_score`.

    Args:
        heatmap: ``heatmap(word, step=i) -> [h, w]``, e.g. ``trace.word_heatmap`` of
            ``sdprobe.trace_attention``.
        objects: objects with an ``attribute`` word.
        steps: the denoising steps to compare.
    """
    if not steps:
        raise ValueError("steps is empty: give the denoising steps to compare")
    missing = [o.prompt for o in objects if not o.attribute]
    if missing:
        raise ValueError(f"objects {missing} have no attribute word to compare with their noun")

    def stack(word: str) -> torch.Tensor:
        return torch.stack([torch.as_tensor(heatmap(word, step=i), dtype=torch.float32) for i in steps])

    return [(stack(o.attribute), stack(o.word)) for o in objects]
