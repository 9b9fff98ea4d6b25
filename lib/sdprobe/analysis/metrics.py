"""Metrics shared by the chapters: placement IoU, CLIP scores, judged error rates, similarities.

Every function states its units and what it does with the edge cases (empty masks, constant maps,
a single item). Models are always passed in — nothing is downloaded here:

* :func:`clip_score` / :func:`clip_image_similarity` take any ``transformers`` ``CLIPModel`` with
  its processor (or tokenizer and image processor): the toy model's tiny CLIP on toy, e.g.
  ``openai/clip-vit-base-patch16`` or torchmetrics' default ``openai/clip-vit-large-patch14`` on
  real runs. State which one a table used.
* :func:`placement_iou` takes a predicted mask or box, or a detector callable (an open-vocabulary
  detector such as OWLv2 for real models, the world's segmentation on toy).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from sdprobe.images import to_array

__all__ = [
    "AttentionAssignment",
    "ImageJudgement",
    "assignment_pairs",
    "attention_assignment_score",
    "background_mse",
    "box_iou",
    "clip_image_embeddings",
    "clip_image_similarity",
    "clip_score",
    "clip_text_embeddings",
    "colour_swap_rate",
    "detector_from_pipeline",
    "mask_iou",
    "mask_to_box",
    "mean_pairwise_similarity",
    "missing_object_rate",
    "pearson_r",
    "placement_iou",
]

BoxLike = Sequence[float]


# ----------------------------------------------------------------------------- IoU


def _check_box(box: BoxLike, name: str = "box") -> tuple[float, float, float, float]:
    if len(box) != 4:
        raise ValueError(f"{name} must be (x0, y0, x1, y1), got {tuple(box)}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 < x0 or y1 < y0:
        raise ValueError(f"{name} {tuple(box)} must be finite with x0 <= x1 and y0 <= y1")
    return x0, y0, x1, y1


def box_iou(a: BoxLike, b: BoxLike) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes in the same units.

    Two boxes of zero area have nothing to overlap: IoU 0.
    """
    ax0, ay0, ax1, ay1 = _check_box(a, "first box")
    bx0, by0, bx1, by1 = _check_box(b, "second box")
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def _as_mask(mask: Any, name: str) -> np.ndarray:
    m = mask.detach().cpu().numpy() if torch.is_tensor(mask) else np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [H, W] mask, got shape {m.shape}")
    return m.astype(bool)


def mask_iou(a: Any, b: Any) -> float:
    """IoU of two boolean masks ``[H, W]`` (numpy arrays or tensors), the library's one mask IoU.

    Two empty masks are identical and score 1.0; an empty and a non-empty mask score 0.0.
    """
    ma, mb = _as_mask(a, "first mask"), _as_mask(b, "second mask")
    if ma.shape != mb.shape:
        raise ValueError(f"masks differ in shape: {ma.shape} and {mb.shape}")
    union = np.logical_or(ma, mb).sum()
    return float(np.logical_and(ma, mb).sum() / union) if union else 1.0


def mask_to_box(mask: Any) -> tuple[int, int, int, int] | None:
    """The tight pixel box ``(x0, y0, x1, y1)`` (end exclusive) around a mask, or ``None`` if empty."""
    m = _as_mask(mask, "mask")
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def placement_iou(
    requested: BoxLike,
    *,
    mask: Any = None,
    box: BoxLike | None = None,
    detector: Callable[[Any, str], Sequence[BoxLike]] | None = None,
    image: Any = None,
    label: str | None = None,
) -> float:
    """IoU between the box an object was asked for and where it is, in pixel units.

    Give exactly one of ``mask`` (``[H, W]``, its tight box is compared: the object's extent),
    ``box``, or ``detector`` with ``image`` and ``label``. A detector returns candidate boxes for
    the label; as in open-vocabulary layout benchmarks (e.g. CoBench with OWLv2), the candidate
    with the best IoU against the request counts. A missing object (empty mask, no detection)
    scores 0.
    """
    given = [x is not None for x in (mask, box, detector)]
    if sum(given) != 1:
        raise ValueError("give exactly one of mask=, box= or detector= (with image= and label=)")
    _check_box(requested, "requested box")
    if mask is not None:
        found = mask_to_box(mask)
        return 0.0 if found is None else box_iou(requested, found)
    if box is not None:
        return box_iou(requested, box)
    if image is None or not label:
        raise ValueError("detector= needs image= and label=")
    candidates = list(detector(image, label))
    return max((box_iou(requested, c) for c in candidates), default=0.0)


def detector_from_pipeline(detect: Callable[..., Any], *, threshold: float = 0.1) -> Callable[[Any, str], list[tuple[float, float, float, float]]]:
    """Wrap a ``transformers`` zero-shot object detection pipeline (e.g. OWLv2 from local weights:
    ``pipeline("zero-shot-object-detection", model=folder)``) as a :func:`placement_iou` detector.

    The wrapped callable returns the pixel boxes scoring at least ``threshold`` for one label.
    """
    def detector(image: Any, label: str) -> list[tuple[float, float, float, float]]:
        found = detect(image, candidate_labels=[label])
        return [(d["box"]["xmin"], d["box"]["ymin"], d["box"]["xmax"], d["box"]["ymax"])
                for d in found if d["score"] >= threshold]

    return detector


# ----------------------------------------------------------------------------- CLIP


def _processors(processor: Any, tokenizer: Any, image_processor: Any) -> tuple[Any, Any]:
    tok = tokenizer or getattr(processor, "tokenizer", None)
    img = image_processor or getattr(processor, "image_processor", None)
    return tok, img


def _images_list(images: Any) -> list:
    if isinstance(images, (Image.Image, np.ndarray)) or torch.is_tensor(images):
        images = [images]
    images = list(images)
    if not images:
        raise ValueError("no images given")
    return images


@torch.no_grad()
def _image_features(model, image_processor, images: Any) -> torch.Tensor:
    if image_processor is None:
        raise ValueError("pass processor= (a CLIPProcessor) or image_processor=")
    pixels = image_processor(images=_images_list(images), return_tensors="pt")["pixel_values"]
    feats = model.get_image_features(pixel_values=pixels.to(model.device, model.dtype))
    feats = getattr(feats, "pooler_output", feats)
    return torch.nn.functional.normalize(feats.float(), dim=-1)


@torch.no_grad()
def _text_features(model, tokenizer, texts: Sequence[str]) -> torch.Tensor:
    if tokenizer is None:
        raise ValueError("pass processor= (a CLIPProcessor) or tokenizer=")
    limit = model.config.text_config.max_position_embeddings
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=limit, return_tensors="pt")
    feats = model.get_text_features(input_ids=enc["input_ids"].to(model.device),
                                    attention_mask=enc["attention_mask"].to(model.device))
    feats = getattr(feats, "pooler_output", feats)
    return torch.nn.functional.normalize(feats.float(), dim=-1)


def clip_image_embeddings(model, images: Any, *, processor: Any = None, image_processor: Any = None) -> torch.Tensor:
    """Unit CLIP image embeddings ``[N, D]``, float32 (on the model's device)."""
    return _image_features(model, _processors(processor, None, image_processor)[1], images)


def clip_text_embeddings(model, texts: Sequence[str], *, processor: Any = None, tokenizer: Any = None) -> torch.Tensor:
    """Unit CLIP text embeddings ``[N, D]``, float32; texts longer than CLIP's context are cut to it."""
    return _text_features(model, _processors(processor, tokenizer, None)[0], texts)


def clip_score(
    model,
    images: Any,
    texts: Sequence[str] | str,
    *,
    processor: Any = None,
    tokenizer: Any = None,
    image_processor: Any = None,
) -> torch.Tensor:
    """CLIP score per (image, text) pair: ``100 * max(cos(image, text), 0)``, as torchmetrics'
    ``CLIPScore`` defines it. ``[N]``.

    Args:
        model: a ``transformers`` ``CLIPModel``.
        images: ``N`` PIL images (or arrays the image processor accepts).
        texts: ``N`` texts, or one text for all images. Longer texts than the model's context
            are cut to it (CLIP itself cannot see further).
    """
    imgs = _images_list(images)
    texts = [texts] * len(imgs) if isinstance(texts, str) else list(texts)
    if len(texts) != len(imgs):
        raise ValueError(f"{len(imgs)} images but {len(texts)} texts")
    tok, improc = _processors(processor, tokenizer, image_processor)
    cos = (_image_features(model, improc, imgs) * _text_features(model, tok, texts)).sum(dim=-1)
    return 100 * cos.clamp_min(0)


def clip_image_similarity(
    model,
    images_a: Any,
    images_b: Any,
    *,
    processor: Any = None,
    image_processor: Any = None,
) -> torch.Tensor:
    """Cosine similarity of CLIP image embeddings per pair (CLIP-I), in ``[-1, 1]``. ``[N]``."""
    a, b = _images_list(images_a), _images_list(images_b)
    if len(a) != len(b):
        raise ValueError(f"{len(a)} images against {len(b)}")
    _, improc = _processors(processor, None, image_processor)
    return (_image_features(model, improc, a) * _image_features(model, improc, b)).sum(dim=-1)


# ----------------------------------------------------------------------------- judged error rates


@dataclass(frozen=True)
class ImageJudgement:
    """What a judge (a person, a detector, the toy world's segmentation) saw in one image.

    Attributes:
        requested: the colour asked for each object, e.g. ``("red", "white")``.
        present: whether each object is in the image.
        seen: the colour each object shows (``None`` where absent or undecided).
    """

    requested: tuple[str, ...]
    present: tuple[bool, ...]
    seen: tuple[str | None, ...]

    def __post_init__(self) -> None:
        if not (len(self.requested) == len(self.present) == len(self.seen)) or not self.requested:
            raise ValueError("requested, present and seen must list the same objects (at least one)")

    @property
    def missing(self) -> bool:
        return not all(self.present)

    @property
    def swapped(self) -> bool:
        """Some present object shows another object's requested colour instead of its own."""
        for k, (want, here, saw) in enumerate(zip(self.requested, self.present, self.seen)):
            others = {c for j, c in enumerate(self.requested) if j != k and c != want}
            if here and saw is not None and saw != want and saw in others:
                return True
        return False


def _judgements(judgements: Sequence[ImageJudgement]) -> list[ImageJudgement]:
    js = list(judgements)
    if not js:
        raise ValueError("no judgements given")
    if not all(isinstance(j, ImageJudgement) for j in js):
        raise TypeError("judgements must be ImageJudgement records")
    return js


def missing_object_rate(judgements: Sequence[ImageJudgement]) -> float:
    """Share of images in which at least one requested object is missing."""
    js = _judgements(judgements)
    return sum(j.missing for j in js) / len(js)


def colour_swap_rate(judgements: Sequence[ImageJudgement], *, among_complete: bool = True) -> float:
    """Share of images with a colour swap (see :attr:`ImageJudgement.swapped`).

    ``among_complete=True`` counts only images where every object is present (a swap needs both
    objects); with none such the rate is NaN. ``False`` divides by all images.
    """
    js = _judgements(judgements)
    pool = [j for j in js if not j.missing] if among_complete else js
    return sum(j.swapped for j in pool) / len(pool) if pool else math.nan


# ----------------------------------------------------------------------------- similarities


def mean_pairwise_similarity(items: Any, *, pairs: str = "all") -> float:
    """Mean cosine similarity between the items of a sequence ``[N, ...]`` (each flattened).

    ``pairs="all"`` averages over every ``i < j``; ``"consecutive"`` over ``(i, i + 1)``, i.e. along
    the sequence. Needs at least two items; an all-zero item has no direction and is an error.
    """
    if pairs not in {"all", "consecutive"}:
        raise ValueError(f"pairs must be 'all' or 'consecutive', not {pairs!r}")
    x = torch.stack([torch.as_tensor(np.asarray(i), dtype=torch.float64).flatten() for i in items]) \
        if not torch.is_tensor(items) else items.detach().double().flatten(1)
    if x.shape[0] < 2:
        raise ValueError(f"need at least two items to compare, got {x.shape[0]}")
    norms = x.norm(dim=1)
    if (norms == 0).any():
        raise ValueError(f"items {torch.nonzero(norms == 0).flatten().tolist()} are all zero; cosine similarity is undefined")
    x = x / norms[:, None]
    index = itertools.combinations(range(len(x)), 2) if pairs == "all" else zip(range(len(x) - 1), range(1, len(x)))
    sims = [float(x[i] @ x[j]) for i, j in index]
    return float(np.mean(sims))


def _pixels(image: Any, name: str) -> np.ndarray:
    a = np.asarray(to_array(image) if isinstance(image, Image.Image) else image, dtype=np.float64)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise ValueError(f"{name} must be [H, W] or [H, W, C] in 0-255 units, got shape {a.shape}")
    return a


def background_mse(image_a: Any, image_b: Any, foreground: Any = None) -> float:
    """Mean squared difference over background pixels, in 0–255 pixel units.

    The mean runs over the background pixels and their channels only (not over the whole image
    with the foreground zeroed, as PIE-Bench does on [0, 1] images); ``foreground`` is a boolean
    ``[H, W]`` mask, ``None`` compares every pixel. PIL images or ``[H, W, C]`` arrays in 0–255.
    """
    a, b = _pixels(image_a, "image_a"), _pixels(image_b, "image_b")
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} and {b.shape}")
    bg = np.ones(a.shape[:2], bool) if foreground is None else ~_as_mask(foreground, "foreground")
    if bg.shape != a.shape[:2]:
        raise ValueError(f"foreground mask {bg.shape} does not match the images {a.shape[:2]}")
    if not bg.any():
        raise ValueError("the foreground mask covers the whole image: there is no background to compare")
    return float(((a - b) ** 2)[bg].mean())


def pearson_r(a: Any, b: Any) -> float:
    """Pearson correlation of two maps of one shape (flattened). NaN if either is constant."""
    x = torch.as_tensor(np.asarray(a), dtype=torch.float64).flatten()
    y = torch.as_tensor(np.asarray(b), dtype=torch.float64).flatten()
    if tuple(np.shape(a)) != tuple(np.shape(b)):
        raise ValueError(f"maps differ in shape: {tuple(np.shape(a))} and {tuple(np.shape(b))}")
    if x.numel() < 2:
        raise ValueError("need at least two values to correlate")
    x, y = x - x.mean(), y - y.mean()
    denom = x.norm() * y.norm()
    return float((x @ y) / denom) if denom > 0 else math.nan


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
    maps ``N_k`` (object ``k``, step ``s``), each normalised to sum to 1 over the cells::

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
    objects: Sequence[Any],
    steps: Sequence[int],
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(attribute_maps, noun_maps)`` per object, each ``[steps, h, w]``, for
    :func:`attention_assignment_score`.

    Args:
        heatmap: ``heatmap(word, step=i) -> [h, w]``, e.g. ``trace.word_heatmap`` of
            ``sdprobe.trace_attention``.
        objects: objects with a ``word`` and an ``attribute`` word (``PlacedObject`` of the transplant).
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
