"""Chapter 04's measurements: one-colour edits kept in place by swapping U-Net features, over many pairs.

An *edit pair* is a prompt and the same prompt with the subject's colour changed ("a red dog on
the field" → "a blue dog on the field": toy-world pairs on the toy model, real subjects from
``data/prompts/colour_stories.yaml`` elsewhere), or a given pair with the edit it makes
(the paper's skirt turned into pants), drawn from one seed. Run A draws the
first prompt and records the U-Net's features; every *configuration* then draws the edited
prompt with some of A's features swapped in (Yamada's experiments ① whole, ② region,
③ threshold), and each result is judged against A: background MSE, did the subject take the
requested colour (or show the requested thing), and did it keep A's outline, as the toy world's
segmentation, rembg or a judge (:mod:`sdprobe.analysis.judges`) reads them. Configurations are
paired by edit pair; :func:`configurations` builds the chapter's from its parameters.

Pairs are drawn ``batch`` at a time: A's features for a batch are recorded once, every
configuration that covers those pairs reuses them, and the store is dropped before the next
batch, so memory stays that of one batch whatever the number of pairs.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from scipy import ndimage

from sdprobe.analysis.consistency import Reading, keep_region, read_image, subject_iou
from sdprobe.analysis.judges import Edit, ObjectClause, StructuredPrompt
from sdprobe.analysis.metrics import background_mse
from sdprobe.analysis.stats import mcnemar, mean_ci, paired_difference, rate, sign_test
from sdprobe.probes.swap import record_features, swap_features
from sdprobe.progress import progress_bar

__all__ = ["Configurations", "EditPair", "EditRuns", "EditScore", "FOREGROUNDS", "Setup", "Swap", "compare",
           "configurations", "edit_pairs", "parse_edit", "region_on_subject", "run_edits", "seeded_pairs",
           "six_against_ten", "summary"]

Mode = Literal["whole", "region", "threshold"]
#: The ways to find the subject and the foreground (the toy world's segmentation, rembg, a judge).
FOREGROUNDS = ("world", "rembg", "judge")


@dataclass(frozen=True)
class EditPair:
    """A source prompt, its edit, and the seed both start from.

    Attributes:
        colour: the colour the edit asks the subject for (None: it asks for none, or cannot say).
        subject: the noun of the subject whose place is kept (None: the largest object).
        edit: what the edit changes (a colour, or a noun B must show), for a judge to check.
    """

    source: str
    edited: str
    colour: str | None
    seed: int
    subject: str | None = None
    edit: Edit | None = None

    @property
    def checkable(self) -> bool:
        """Whether a judge can tell that the edit took."""
        return self.colour is not None or self.edit is not None and self.edit.attribute == "noun"


def parse_edit(text: str) -> Edit | None:
    """The chapter's ``edit`` parameter: ``""`` (none), ``"colour:blue"`` (B's subject turns
    blue) or ``"noun:pants"`` (B shows pants).

    Raises:
        ValueError: any other form, in one line.
    """
    if not text:
        return None
    kind, sep, value = text.partition(":")
    if not sep or kind not in ("colour", "noun") or not value.strip():
        raise ValueError(f"edit is '', 'colour:<colour>' or 'noun:<noun>', not {text!r}")
    return Edit(kind, "", value.strip())


def edit_pairs(n: int, *, seed: int = 0, shapes: Sequence[str] | None = None, world: str = "toy") -> list[EditPair]:
    """``n`` edit pairs, seeds ``seed + i``: a coloured subject on a background, recoloured; the
    toy world's shapes and places, or (``world="real"``) real subjects, GenEval's colours and the
    places of ``data/prompts/colour_stories.yaml`` ("a red car on the street")."""
    if n < 1:
        raise ValueError(f"need at least one edit pair, got n={n}")
    if world == "real":
        return _real_pairs(n, seed)
    if world != "toy":
        raise ValueError(f"world is 'toy' or 'real', not {world!r}")
    from sdprobe.world import BACKGROUNDS, PALETTE, SHAPES, background_phrase

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
        pairs.append(EditPair(f"a {before} {shape} {place}", f"a {after} {shape} {place}", after, seed + i, shape,
                              Edit("colour", before, after)))
    return pairs


def _real_pairs(n: int, seed: int) -> list[EditPair]:
    from sdprobe.experiments.stories import _real_vocabulary

    vocabulary = _real_vocabulary()
    subjects, colours, places = vocabulary["subjects"], vocabulary["colours"], list(vocabulary["places"].values())
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n):
        before, after = (colours[j] for j in rng.choice(len(colours), 2, replace=False))
        subject, place = subjects[rng.integers(len(subjects))], places[rng.integers(len(places))]
        pairs.append(EditPair(f"a {before} {subject} {place}", f"a {after} {subject} {place}", after, seed + i,
                              subject, Edit("colour", before, after)))
    return pairs


def seeded_pairs(source: str, edited: str, n: int, *, seed: int = 0, subject: str | None = None,
                 edit: Edit | None = None) -> list[EditPair]:
    """One prompt pair (the paper's, say) from ``n`` seeds ``seed + i``, with the subject whose
    place is kept and the edit it makes; both are read from ``edited`` when it is a toy-world
    prompt and none is given."""
    from sdprobe.world import PALETTE, parse_prompt

    if n < 1:
        raise ValueError(f"need at least one edit pair, got n={n}")
    colour = edit.after if edit is not None and edit.attribute == "colour" else None
    if edit is None:
        try:
            colour, shape, _ = parse_prompt(edited).groups[0]
            subject = subject or shape
        except ValueError:
            colour = None
        colour = colour if colour in PALETTE else None
    return [EditPair(source, edited, colour, seed + i, subject, edit) for i in range(n)]


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
        edited: the subject shows the requested colour, or B the requested thing (``None``: the
            pair's edit cannot be checked).
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


def _judge(source: Reading, edited: Reading, image_a: Image.Image, image_b: Image.Image, took: bool | None,
           min_iou: float) -> EditScore:
    union = source.foreground | edited.foreground
    mse = background_mse(image_a, image_b, union) if not union.all() else float("nan")
    iou = subject_iou(source, edited)
    return EditScore(mse, edited.colour, iou, took, iou >= min_iou)


def _read(images: Sequence[Image.Image], pairs: Sequence[EditPair], method: str, judge: Any,
          edited: bool) -> list[tuple[Reading, bool | None]]:
    """Each image's subject, colour and foreground, and (for B) whether the edit took."""
    if method != "judge":
        readings = [read_image(im, method) for im in images]
        return [(r, None if not edited or p.colour is None else r.colour == p.colour) for r, p in zip(readings, pairs)]
    asked = []
    for p in pairs:
        objects = [ObjectClause(p.subject or "object")]
        if edited and p.edit is not None and p.edit.attribute == "noun":
            objects.append(ObjectClause(p.edit.after))
        asked.append(StructuredPrompt(p.edited if edited else p.source, tuple(objects)))
    out = []
    for reading, pair in zip(judge.read(images, asked), pairs):
        subject = reading.largest(0)
        mask = subject.mask if subject is not None else np.zeros(reading.size, bool)
        foreground = reading.foreground
        grown = ndimage.binary_dilation(foreground, iterations=1) if foreground.any() else foreground
        seen = Reading(subject.colour if subject is not None else None, mask, grown)
        took = None
        if edited and pair.edit is not None and pair.edit.attribute == "noun":
            took = reading.present[1]
        elif edited and pair.colour is not None:
            took = seen.colour == pair.colour
        out.append((seen, took))
    return out


@torch.no_grad()
def run_edits(pipe: Any, pairs: Sequence[EditPair], setups: Mapping[str, Setup], *, region_scale: int = 1,
              region_max_foreground: float = 0.0, foreground: str = "world", judge: Any = None, min_iou: float = 0.5,
              batch: int = 16, **pipe_kwargs: Any) -> EditRuns:
    """Draw A and every configuration for ``pairs``, ``batch`` pairs a pipeline call, and judge.

    Args:
        setups: configuration name → :class:`Setup`; ``Setup()`` is plain B.
        region_scale: the keep-region's grid is the U-Net's lowest resolution times this.
        region_max_foreground: a grid cell is kept from A when at most this share of it is A's subject.
        foreground: how subjects and foregrounds are found (:data:`FOREGROUNDS`): ``"world"``
            (the toy world's segmentation), ``"rembg"``, or ``"judge"`` (``judge``'s masks of each
            pair's subject, and its reading of the edit).
        judge: a :mod:`~sdprobe.analysis.judges` judge, for ``foreground="judge"``.
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
    if foreground not in FOREGROUNDS:
        raise ValueError(f"foreground is one of {', '.join(FOREGROUNDS)}, not {foreground!r}")
    if foreground == "judge" and judge is None:
        raise ValueError("foreground='judge' needs judge= (sdprobe.analysis.judges.make_judge)")
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
            readings = [r for r, _ in _read(sources, chosen, foreground, judge, edited=False)]
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
                for i, im, src, reading, (seen, took) in zip(chunk, images, sources, readings,
                                                             _read(images, chosen, foreground, judge, edited=True)):
                    drawn[swaps][i] = (im, _judge(reading, seen, src, im, took, min_iou))
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
        raise ValueError(f"{a!r} and {b!r} share no pair with a {metric!r} (a verdict needs an edit a judge can check)")
    if isinstance(va[0], (bool, np.bool_)):
        return {"gain": paired_difference(va, vb), "p": mcnemar(va, vb), "test": "McNemar (exact)", "n": len(both)}
    keep = [i for i, (x, y) in enumerate(zip(va, vb)) if np.isfinite(x) and np.isfinite(y)]
    if len(keep) < 2:
        raise ValueError(f"{a!r} and {b!r} share {len(keep)} pair(s) with a finite {metric!r}; a paired comparison "
                         "needs at least two")
    va, vb = [va[i] for i in keep], [vb[i] for i in keep]
    return {"gain": paired_difference(va, vb), "p": sign_test(np.subtract(vb, va)), "test": "sign test", "n": len(keep)}


# ----------------------------------------------------------------------------- the chapter's configurations


@dataclass(frozen=True)
class Configurations:
    """Chapter 04's configurations, by family (:func:`configurations`).

    Attributes:
        headline: no swap and the paper's best ①, ② and ③, on every pair.
        singles: each text layer alone at every step (Fig. 3), on the sweep's pairs.
        table2, table3, table4: the sweeps of Tables 2 (layers, until), 3 (region bits) and 4
            (threshold), on the sweep's pairs.
        paper_bits: the paper's best region subset as bits over the study layers.
    """

    headline: dict[str, Setup]
    singles: dict[str, Setup]
    table2: dict[tuple[str, int], Setup]
    table3: dict[str, Setup]
    table4: dict[float, Setup]
    paper_bits: str

    @property
    def setups(self) -> dict[str, Setup]:
        """Every configuration under its run name (what :func:`run_edits` takes)."""
        return {**self.headline, **{f"single {k}": v for k, v in self.singles.items()},
                **{f"whole {k}": v for k, v in self.table2.items()}, **{f"region {k}": v for k, v in self.table3.items()},
                **{f"threshold {k:g}": v for k, v in self.table4.items()}}


def configurations(reference: Mapping[str, Any], *, steps: int, text_layers: Sequence[str], sweep_pairs: int,
                   anchor_layers: Sequence[str], anchor_until: int, study_layers: Sequence[str],
                   study_subsets: Sequence[str], threshold_layers: Sequence[str], thresholds: Sequence[float],
                   whole_layer_sets: Sequence[Sequence[str]], whole_until: Sequence[int]) -> Configurations:
    """The chapter's configurations from its parameters and the paper's best settings
    (``reference``: the chapter's reference file, whose ``table2``–``table4`` name them).

    Steps count as the paper's, 1..k (scheduler steps 0..k−1); the paper's steps out of 50 are
    scaled to ``steps``. ② and ③ start with the anchor (``anchor_layers`` whole until
    ``anchor_until``) and then swap a region or a threshold until the end. ``study_subsets`` are
    bit strings over ``study_layers`` (``["all"]``: every subset).
    """
    def upto(k: int) -> tuple[int, ...]:
        return tuple(range(k))

    later = tuple(range(anchor_until, steps))
    anchor = Swap(tuple(anchor_layers), upto(anchor_until))

    def region(bits: str, pairs: int | None = None) -> Setup:
        names = tuple(n for n, b in zip(study_layers, bits) if b == "1")
        return Setup((anchor, Swap(names, later, "region")) if names else (anchor,), pairs)

    def threshold(t: float, pairs: int | None = None) -> Setup:
        return Setup((anchor, Swap(tuple(threshold_layers), later, "threshold", t)), pairs)

    best2, best3, best4 = (reference[t]["best"] for t in ("table2", "table3", "table4"))
    paper_bits = "".join("1" if n in best3["layers"].split(", ") else "0" for n in study_layers)
    bits = (["".join(b) for b in itertools.product("01", repeat=len(study_layers))] if list(study_subsets) == ["all"]
            else list(study_subsets))
    headline = {
        "no swap": Setup(),
        "① whole": Setup((Swap(tuple(best2["layers"].split(", ")), upto(round(best2["until"] * steps / 50))),)),
        "② region": region(paper_bits),
        "③ threshold": threshold(best4["threshold"]),
    }
    return Configurations(
        headline=headline,
        singles={name: Setup((Swap((name,), tuple(range(steps))),), sweep_pairs) for name in text_layers},
        table2={(", ".join(names), k): Setup((Swap(tuple(names), upto(k)),), sweep_pairs)
                for names in whole_layer_sets for k in whole_until},
        table3={b: region(b, sweep_pairs) for b in bits},
        table4={t: threshold(t, sweep_pairs) for t in thresholds},
        paper_bits=paper_bits,
    )


def region_on_subject(runs: EditRuns, i: int, size: tuple[int, int]) -> float:
    """The share of the pixels pair ``i`` keeps from A, as a layer of ``size`` takes its region,
    that lie on A's subject (0 when the region keeps nothing)."""
    from sdprobe.probes.swap import region_at

    image = runs.foregrounds[i].shape
    pixels = region_at(region_at(runs.regions[i], size), image).numpy()
    return float((pixels & runs.foregrounds[i]).sum() / max(pixels.sum(), 1))


def six_against_ten(runs: EditRuns, text_layers: Sequence[str], six: Sequence[str], pairs: int) -> np.ndarray:
    """Per sweep pair, the mean pose IoU of ``six`` layers swapped alone minus that of the other
    text layers (Fig. 3's claim: the paper's six keep A's composition more). ``[pairs]``"""
    iou = np.array([[runs.scores[f"single {n}"][i].pose_iou for n in text_layers] for i in range(pairs)])
    inside = [k for k, n in enumerate(text_layers) if n in six]
    outside = [k for k, n in enumerate(text_layers) if n not in six]
    if not inside or not outside:
        raise ValueError(f"the six layers {list(six)} must split this U-Net's text layers {list(text_layers)} in two")
    return iou[:, inside].mean(1) - iou[:, outside].mean(1)
