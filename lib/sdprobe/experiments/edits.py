"""Chapter 04's measurements: one-colour edits kept in place by swapping U-Net features, over many pairs.

An *edit pair* is a toy-world prompt and the same prompt with the subject's colour changed
("a red dog on the field" → "a blue dog on the field"), drawn from one seed. Run A draws the
first prompt and records the U-Net's features; every *configuration* then draws the edited
prompt with some of A's features swapped in (Yamada's experiments ① whole, ② region,
③ threshold), and each result is judged against A: background MSE, did the subject take the
requested colour, and did it keep A's outline. Configurations are paired by edit pair.

Pairs are drawn ``batch`` at a time: A's features for a batch are recorded once, every
configuration that covers those pairs reuses them, and the store is dropped before the next
batch, so memory stays that of one batch whatever the number of pairs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from sdprobe.analysis.consistency import Reading, keep_region, read_image, subject_iou
from sdprobe.analysis.metrics import background_mse
from sdprobe.analysis.stats import mcnemar, mean_ci, paired_difference, rate, sign_test
from sdprobe.probes.swap import record_features, swap_features
from sdprobe.progress import progress_bar

__all__ = ["EditPair", "EditRuns", "EditScore", "Setup", "Swap", "compare", "edit_pairs", "run_edits", "seeded_pairs",
           "summary"]

Mode = Literal["whole", "region", "threshold"]


@dataclass(frozen=True)
class EditPair:
    """A source prompt, its edit, the colour the edit asks for (``None`` outside the toy world)
    and the seed both start from."""

    source: str
    edited: str
    colour: str | None
    seed: int


def edit_pairs(n: int, *, seed: int = 0, shapes: Sequence[str] | None = None) -> list[EditPair]:
    """``n`` toy-world edit pairs: a coloured shape on a background, recoloured (seeds ``seed + i``)."""
    from sdprobe.toy.world import BACKGROUNDS, PALETTE, SHAPES, background_phrase

    if n < 1:
        raise ValueError(f"need at least one edit pair, got n={n}")
    shapes = list(shapes or SHAPES)
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        raise ValueError(f"unknown toy-world shapes {unknown}; choose from {list(SHAPES)}")
    rng = np.random.default_rng(seed)
    colours, backgrounds = list(PALETTE), list(BACKGROUNDS)
    pairs = []
    for i in range(n):
        before, after = (colours[j] for j in rng.choice(len(colours), 2, replace=False))
        shape, place = shapes[rng.integers(len(shapes))], background_phrase(backgrounds[rng.integers(len(backgrounds))])
        pairs.append(EditPair(f"a {before} {shape} {place}", f"a {after} {shape} {place}", after, seed + i))
    return pairs


def seeded_pairs(source: str, edited: str, n: int, *, seed: int = 0) -> list[EditPair]:
    """One prompt pair (the paper's, say) from ``n`` seeds ``seed + i``; the colour is read when
    ``edited`` is a toy-world prompt."""
    from sdprobe.toy.world import PALETTE, parse_prompt

    if n < 1:
        raise ValueError(f"need at least one edit pair, got n={n}")
    try:
        colour = parse_prompt(edited).groups[0][0]
    except ValueError:
        colour = None
    colour = colour if colour in PALETTE else None
    return [EditPair(source, edited, colour, seed + i) for i in range(n)]


@dataclass(frozen=True)
class Swap:
    """One ``swap_features`` call of a configuration: A's ``layers`` at ``steps`` (from 0),
    whole, inside each pair's keep-region, or where ``|A − B| < threshold``."""

    layers: tuple[str, ...]
    steps: tuple[int, ...]
    mode: Mode = "whole"
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("whole", "region", "threshold"):
            raise ValueError(f"a swap's mode is 'whole', 'region' or 'threshold', not {self.mode!r}")
        if (self.mode == "threshold") != (self.threshold is not None):
            raise ValueError("a threshold swap needs a threshold, and only a threshold swap takes one")


@dataclass(frozen=True)
class Setup:
    """A configuration: its swaps (none: plain B) and how many pairs it runs on (the first
    ``pairs``; ``None``: all)."""

    swaps: tuple[Swap, ...] = ()
    pairs: int | None = None


@dataclass(frozen=True)
class EditScore:
    """One edited image judged against its A.

    Attributes:
        mse: background MSE in 0–255 units, over pixels outside both images' foregrounds (NaN
            when the foregrounds cover everything).
        colour: the colour the subject shows (``None``: no subject found, or not the toy world).
        pose_iou: IoU of the subject's outline with A's.
        edited: the subject shows the requested colour (``None``: the pair names no toy colour).
        kept: ``pose_iou`` reaches the run's ``min_iou``.
    """

    mse: float
    colour: str | None
    pose_iou: float
    edited: bool | None
    kept: bool

    @property
    def passed(self) -> bool | None:
        """True when the edit took and the pose stayed (the paper's two visual checks), ``None``
        when the pair names no toy colour."""
        return None if self.edited is None else self.edited and self.kept


@dataclass
class EditRuns:
    """Every configuration's edited images and scores, per pair (``None`` where it did not run)."""

    pairs: list[EditPair]
    sources: list[Image.Image] = field(default_factory=list)
    foregrounds: list[np.ndarray] = field(default_factory=list)  # A's foreground, bool [H, W] per pair
    regions: list[np.ndarray] = field(default_factory=list)  # each pair's keep-region grid
    images: dict[str, list[Image.Image | None]] = field(default_factory=dict)
    scores: dict[str, list[EditScore | None]] = field(default_factory=dict)

    def column(self, name: str) -> list[EditScore | None]:
        """The scores of configuration ``name`` for every pair (``None`` where it did not run)."""
        if name not in self.scores:
            raise KeyError(f"no configuration {name!r}; these ran: {', '.join(self.scores)}")
        return self.scores[name]

    def scored(self, name: str) -> list[EditScore]:
        """The scores of configuration ``name`` on the pairs it ran on, in pair order."""
        return [s for s in self.column(name) if s is not None]


def _chunks(n: int, counts: Iterable[int], batch: int) -> list[range]:
    """Pair ranges of at most ``batch`` whose ends include every configuration's pair count, so a
    configuration covers each chunk whole or not at all."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    cuts = sorted(set(range(0, n, batch)) | set(counts) | {n})
    return [range(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def _judge(source: Reading, edited: Reading, image_a: Image.Image, image_b: Image.Image, colour: str | None,
           min_iou: float) -> EditScore:
    union = source.foreground | edited.foreground
    mse = background_mse(image_a, image_b, union) if not union.all() else float("nan")
    iou = subject_iou(source, edited)
    return EditScore(mse, edited.colour, iou, None if colour is None else edited.colour == colour, iou >= min_iou)


@torch.no_grad()
def run_edits(pipe: Any, pairs: Sequence[EditPair], setups: Mapping[str, Setup], *, region_scale: int = 1,
              region_max_foreground: float = 0.0, foreground: str = "world", min_iou: float = 0.5,
              batch: int = 16, **pipe_kwargs: Any) -> EditRuns:
    """Draw A and every configuration for ``pairs``, ``batch`` pairs a pipeline call, and judge.

    Args:
        setups: configuration name → :class:`Setup`; ``Setup()`` is plain B.
        region_scale: the keep-region's grid is the U-Net's lowest resolution times this.
        region_max_foreground: a grid cell is kept from A when at most this share of it is A's subject.
        foreground: ``"world"`` (toy-world segmentation) or ``"rembg"`` for the background MSE.
        min_iou: the pose IoU at which the subject counts as kept in place.
        pipe_kwargs: ``num_inference_steps``, ``guidance_scale``, ``height``…

    Returns:
        :class:`EditRuns` with A's images, each pair's region, and every configuration's images and scores.
    """
    if not pairs:
        raise ValueError("run_edits needs at least one edit pair")
    bad = [name for name, s in setups.items() if s.pairs is not None and s.pairs < 1]
    if bad:
        raise ValueError(f"configurations {bad} run on fewer than one pair")
    if not 0.0 <= min_iou <= 1.0:
        raise ValueError(f"min_iou must be in [0, 1], got {min_iou}")
    count = {name: min(s.pairs or len(pairs), len(pairs)) for name, s in setups.items()}  # pairs each runs on
    # configurations with the same swaps are drawn once, on the most pairs any of them asks for
    distinct: dict[tuple[Swap, ...], int] = {}
    for name, s in setups.items():
        distinct[s.swaps] = max(distinct.get(s.swaps, 0), count[name])
    chunks = _chunks(len(pairs), distinct.values(), batch)
    drawn: dict[tuple[Swap, ...], list[tuple[Image.Image, EditScore] | None]] = {k: [None] * len(pairs) for k in distinct}
    runs = EditRuns(list(pairs))
    jobs = sum(1 + sum(1 for v in distinct.values() if v > c.start) for c in chunks)
    with progress_bar(total=jobs, desc="edit runs") as bar:
        for chunk in chunks:
            chosen = [pairs[i] for i in chunk]

            def draw(texts: list[str]) -> list[Image.Image]:
                gens = [torch.Generator("cpu").manual_seed(p.seed) for p in chosen]
                return pipe(texts, generator=gens, **pipe_kwargs).images

            active = [swaps for swaps, count in distinct.items() if count > chunk.start]
            layers = sorted({name for swaps in active for swap in swaps for name in swap.layers})  # only what this
            steps = sorted({t for swaps in active for swap in swaps for t in swap.steps})  # chunk's swaps read
            with record_features(pipe, layers, steps=steps or None) as store:
                sources = draw([p.source for p in chosen])
            bar.update()
            readings = [read_image(im, foreground) for im in sources]
            grid = tuple(side * region_scale for side in store.lowest_resolution)
            regions = [keep_region(r.foreground, grid, max_share=region_max_foreground) for r in readings]
            region_grids = torch.as_tensor(np.stack(regions))  # [N, gh, gw], one grid per image of the call
            runs.sources += sources
            runs.foregrounds += [r.foreground for r in readings]
            runs.regions += regions
            for swaps in active:
                with contextlib.ExitStack() as stack:
                    for swap in swaps:
                        extra = ({"region": region_grids} if swap.mode == "region" else
                                 {"threshold": swap.threshold} if swap.mode == "threshold" else {})
                        stack.enter_context(swap_features(pipe, store, list(swap.layers), steps=list(swap.steps),
                                                          **extra))
                    images = draw([p.edited for p in chosen])
                for i, im, src, reading, pair in zip(chunk, images, sources, readings, chosen):
                    drawn[swaps][i] = (im, _judge(reading, read_image(im, foreground), src, im, pair.colour, min_iou))
                bar.update()
            del store
    for name, s in setups.items():
        runs.images[name] = [d[0] if d and i < count[name] else None for i, d in enumerate(drawn[s.swaps])]
        runs.scores[name] = [d[1] if d and i < count[name] else None for i, d in enumerate(drawn[s.swaps])]
    return runs


def summary(runs: EditRuns, name: str) -> dict[str, Any]:
    """Configuration ``name`` over its pairs: ``"passed"``, ``"edited"``, ``"kept"`` (rates with
    exact intervals; ``passed`` and ``edited`` are ``None`` for pairs without a toy colour),
    ``"mse"`` and ``"pose_iou"`` (means with bootstrap intervals, none for one pair), ``"n"``."""
    scores = runs.scored(name)
    judged = scores[0].edited is not None if scores else False
    return {"passed": rate([s.passed for s in scores]) if judged else None,
            "edited": rate([s.edited for s in scores]) if judged else None,
            "kept": rate([s.kept for s in scores]), "mse": _mean([s.mse for s in scores if np.isfinite(s.mse)]),
            "pose_iou": _mean([s.pose_iou for s in scores]), "n": len(scores)}


def _mean(values: list[float]) -> dict[str, Any] | None:
    """A mean with its bootstrap interval; one value has no interval, none has no mean."""
    if len(values) > 1:
        return mean_ci(values)
    return {"mean": values[0], "ci": None, "n": 1} if values else None


def compare(runs: EditRuns, a: str, b: str, metric: str) -> dict[str, Any]:
    """Configuration ``b`` against ``a`` on the pairs both ran: ``metric`` is an
    :class:`EditScore` field or ``"passed"``.

    Returns:
        ``"gain"`` (mean of ``b − a`` over pairs, bootstrap interval), ``"p"`` and ``"test"``
        (exact McNemar for verdicts, exact sign test for numbers), ``"n"`` (pairs).
    """
    both = [(x, y) for x, y in zip(runs.column(a), runs.column(b)) if x is not None and y is not None]
    va = [getattr(x, metric) for x, _ in both]
    vb = [getattr(y, metric) for _, y in both]
    if not both or None in va + vb:
        raise ValueError(f"{a!r} and {b!r} share no pair with a {metric!r} (a verdict needs a toy-world colour)")
    if isinstance(va[0], (bool, np.bool_)):
        return {"gain": paired_difference(va, vb), "p": mcnemar(va, vb), "test": "McNemar (exact)", "n": len(both)}
    keep = [i for i, (x, y) in enumerate(zip(va, vb)) if np.isfinite(x) and np.isfinite(y)]
    va, vb = [va[i] for i in keep], [vb[i] for i in keep]
    return {"gain": paired_difference(va, vb), "p": sign_test(np.subtract(vb, va)), "test": "sign test", "n": len(keep)}
