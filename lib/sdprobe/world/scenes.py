"""The toy world: procedurally drawn scenes with captions, per-object masks and boxes.

A scene is one of four backgrounds (field, river, snow, sky) with one to three flat-coloured
objects of five shapes (circle, square, triangle, star, dog) in six palette colours. Everything
is drawn from a seed, so a scene is its seed: ``sample_scene(seed)`` gives the same picture,
caption and masks on every machine. Generated images are judged by the same world through
:func:`segment`, which finds palette-coloured blobs and names their shape.

The world carries small analogues of the documents' prompts (:data:`DOCUMENT_ANALOGUES`):
a subject on a background ("a dog runs across the field"), counts ("three dogs"), two coloured
objects (DrawBench Colors: "a red square and a white dog"), one attribute changed with the rest
kept (:func:`edit_scene`), and a sequence of prompts about the same subject (:func:`story_prompts`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from sdprobe.images import to_array

__all__ = [
    "BACKGROUNDS",
    "background_phrase",
    "COUNT_WORDS",
    "DOCUMENT_ANALOGUES",
    "GRASS_ROW",
    "HALF_SIZES",
    "WORLD_VERSION",
    "background_array",
    "EVAL_SEEDS_FROM",
    "IMAGE_SIZE",
    "PALETTE",
    "PLURALS",
    "SHAPES",
    "Detection",
    "PromptSpec",
    "Scene",
    "ToyObject",
    "appearance",
    "background_of",
    "caption_corpus",
    "edit_scene",
    "make_scene",
    "parse_prompt",
    "sample_scene",
    "segment",
    "shape_mask",
    "story_prompts",
    "world_spec",
]

IMAGE_SIZE = 128
#: The world's generation: 2 draws every object at least five latent cells across (40 px) and no
#: texture finer than the latent grid; 1 drew objects 2 to 7 cells wide on 6-px grass rows.
WORLD_VERSION = 2
#: Height of a grass row (px): a 32-px period, twice the Nyquist period of the 8× latent grid.
GRASS_ROW = 16
#: Half the shorter side of each object's box (px), by the number of objects in the scene. The
#: shortest side is at least 41 px: five latent cells. Objects keep :data:`GAP` pixels apart and
#: :data:`MARGIN` pixels from the edge.
HALF_SIZES: dict[int, tuple[int, int]] = {1: (26, 40), 2: (22, 30), 3: (20, 24)}
GAP, MARGIN = 6, 3

#: Object colours (RGB). Chosen far from each other and from every background colour, so a
#: generated pixel can be named by its nearest colour.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "blue": (40, 80, 220),
    "yellow": (245, 215, 40),
    "white": (250, 250, 250),
    "black": (25, 25, 25),
    "purple": (150, 60, 200),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "dog")
PLURALS: dict[str, str] = {s: s + "s" for s in SHAPES}
COUNT_WORDS: dict[int, str] = {1: "a", 2: "two", 3: "three"}

#: Background name -> reference colours (RGB) its texture is made of.
BACKGROUNDS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "field": ((96, 160, 72), (84, 146, 62)),
    "river": ((96, 160, 72), (84, 146, 62), (70, 150, 170)),
    "snow": ((182, 196, 216), (198, 208, 224), (212, 220, 234)),
    "sky": ((120, 180, 235), (148, 198, 240), (175, 215, 245)),
}

_BG_PHRASES: dict[str, tuple[str, ...]] = {
    "field": ("on the field", "in the field"),
    "river": ("by the river", "near the river"),
    "snow": ("in the snow", "on the snow"),
    "sky": ("in the sky", "under the sky"),
}
_MOTIONS: dict[str, str] = {
    "field": "runs across the field",
    "river": "runs along the river",
    "snow": "runs through the snow",
    "sky": "jumps into the sky",
}

Kind = Literal["single", "pair", "count"]


# ----------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class ToyObject:
    """One object: its shape, palette colour, pixel box ``(x0, y0, x1, y1)`` (inclusive) and
    facing (``1`` right, ``-1`` left; only the dog shows it)."""

    shape: str
    colour: str
    box: tuple[int, int, int, int]
    facing: int = 1


@dataclass(frozen=True)
class Scene:
    """A scene and its ground truth; :meth:`image` and :meth:`masks` draw it."""

    background: str
    objects: tuple[ToyObject, ...]
    caption: str
    kind: Kind
    texture_seed: int = 0
    size: int = IMAGE_SIZE

    def masks(self) -> np.ndarray:
        """Per-object masks, bool ``(n_objects, size, size)``; objects never overlap."""
        return np.stack([shape_mask(o.shape, o.box, self.size, o.facing) for o in self.objects])

    def boxes(self) -> np.ndarray:
        """Per-object boxes, int ``(n_objects, 4)`` as ``x0, y0, x1, y1`` (inclusive)."""
        return np.array([o.box for o in self.objects], dtype=np.int64)

    def array(self) -> np.ndarray:
        """The picture, uint8 ``(size, size, 3)``."""
        img = background_array(self.background, self.size, self.texture_seed)
        for obj, mask in zip(self.objects, self.masks()):
            img[mask] = PALETTE[obj.colour]
        return img

    def image(self) -> Image.Image:
        """The picture as a PIL RGB image of ``size × size``."""
        return Image.fromarray(self.array())


def background_array(name: str, size: int = IMAGE_SIZE, texture_seed: int = 0) -> np.ndarray:
    """A background texture, uint8 ``(size, size, 3)``: grass rows, a river band, or a gradient.

    Every texture is coarser than the latent grid of an 8× VAE (its Nyquist period is 16 px):
    grass rows are :data:`GRASS_ROW` pixels high, the river is a band about 25 px wide, snow and
    sky are smooth vertical gradients.
    """
    if name not in BACKGROUNDS:
        raise ValueError(f"unknown background {name!r}; choose one of {sorted(BACKGROUNDS)}")
    cols = np.array(BACKGROUNDS[name], dtype=np.float32)
    y = np.arange(size, dtype=np.float32)[:, None] / size
    x = np.arange(size, dtype=np.float32)[None, :] / size
    img = np.empty((size, size, 3), dtype=np.float32)
    if name in ("field", "river"):
        stripes = (np.floor(y * size / GRASS_ROW) % 2).repeat(size, axis=1)  # rows of grass
        img[:] = np.where(stripes[..., None] > 0, cols[1], cols[0])
        if name == "river":
            centre = 0.4 + 0.2 * (texture_seed % 7) / 6
            edge = centre + 0.03 * np.sin(2 * np.pi * (x * 2 + texture_seed % 5 / 5))
            band = np.abs(y - edge) < 0.1
            img[band] = cols[2]
    else:  # vertical gradient from the first to the last colour through the middle one
        t = np.broadcast_to(y, (size, size))
        lo = np.where(t[..., None] < 0.5, cols[0], cols[1])
        hi = np.where(t[..., None] < 0.5, cols[1], cols[2])
        w = ((t * 2) % 1.0)[..., None]
        img[:] = lo * (1 - w) + hi * w
    return img.round().astype(np.uint8)


# ----------------------------------------------------------------------------- shapes


def _star(points: int = 5, inner: float = 0.45) -> list[tuple[float, float]]:
    out = []
    for k in range(points * 2):
        r = 1.0 if k % 2 == 0 else inner
        a = -np.pi / 2 + k * np.pi / points
        out.append((r * np.cos(a), r * np.sin(a)))
    xs, ys = zip(*out)
    # stretch to fill the unit box [-1, 1]^2 like the other shapes
    sx, cx = (max(xs) - min(xs)) / 2, (max(xs) + min(xs)) / 2
    sy, cy = (max(ys) - min(ys)) / 2, (max(ys) + min(ys)) / 2
    return [((px - cx) / sx, (py - cy) / sy) for px, py in out]


_STAR = _star()
# A dog facing right in the unit box: (kind, coordinates) with "e" ellipse boxes and "p" polygons.
_DOG: tuple[tuple[str, tuple[float, ...]], ...] = (
    ("e", (-0.75, -0.25, 0.55, 0.45)),  # body
    ("e", (0.3, -0.85, 1.0, -0.05)),  # head
    ("p", (0.45, -0.7, 0.6, -1.0, 0.75, -0.7)),  # ear
    ("p", (-0.65, 0.2, -0.45, 0.2, -0.45, 1.0, -0.65, 1.0)),  # legs
    ("p", (-0.3, 0.2, -0.1, 0.2, -0.1, 1.0, -0.3, 1.0)),
    ("p", (0.1, 0.2, 0.3, 0.2, 0.3, 1.0, 0.1, 1.0)),
    ("p", (0.3, 0.1, 0.5, 0.1, 0.5, 1.0, 0.3, 1.0)),
    ("p", (-0.7, -0.05, -1.0, -0.7, -0.85, -0.75, -0.55, -0.15)),  # tail
)
#: Height / width of each shape's box (the dog is wider than tall).
_ASPECT: dict[str, float] = {"circle": 1.0, "square": 1.0, "triangle": 1.0, "star": 1.0, "dog": 0.75}


def shape_mask(shape: str, box: tuple[int, int, int, int], size: int = IMAGE_SIZE, facing: int = 1) -> np.ndarray:
    """Bool ``(size, size)`` mask of ``shape`` drawn to fill the inclusive pixel ``box``."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose one of {list(SHAPES)}")
    x0, y0, x1, y1 = box
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2

    def pt(u: float, v: float) -> tuple[float, float]:
        return cx + facing * u * hw, cy + v * hh

    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if shape == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=1)
    elif shape == "square":
        draw.rectangle([x0, y0, x1, y1], fill=1)
    elif shape == "triangle":
        draw.polygon([pt(0, -1), pt(1, 1), pt(-1, 1)], fill=1)
    elif shape == "star":
        draw.polygon([pt(u, v) for u, v in _STAR], fill=1)
    else:
        for kind, c in _DOG:
            if kind == "e":
                (ax, ay), (bx, by) = pt(c[0], c[1]), pt(c[2], c[3])
                draw.ellipse([min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)], fill=1)
            else:
                draw.polygon([pt(c[i], c[i + 1]) for i in range(0, len(c), 2)], fill=1)
    return np.asarray(canvas, dtype=bool)


# ----------------------------------------------------------------------------- sampling


def _place(shapes: list[str], rng: np.random.Generator, size: int) -> list[tuple[int, int, int, int]]:
    """Non-overlapping boxes for ``shapes``, more than :data:`GAP` pixels apart.

    Sizes come from :data:`HALF_SIZES` (half the shorter side; the dog is wider than tall).
    Positions are drawn at random; crowded draws are retried with the size range narrowing towards
    its minimum, and a draw that still does not fit is laid out in rows (:func:`_rows`).
    """
    n = len(shapes)
    lo, hi = HALF_SIZES[n]
    for attempt in range(300):
        top = max(lo, hi - attempt // 30)
        extents = [_extent(shape, int(rng.integers(lo, top + 1))) for shape in shapes]
        boxes: list[tuple[int, int, int, int]] = []
        for hw, hh in extents:
            cx = int(rng.integers(MARGIN + hw, size - MARGIN - hw))
            cy = int(rng.integers(MARGIN + hh, size - MARGIN - hh))
            box = (cx - hw, cy - hh, cx + hw, cy + hh)
            if any(not (box[2] + GAP < b[0] or b[2] + GAP < box[0] or box[3] + GAP < b[1] or b[3] + GAP < box[1])
                   for b in boxes):
                break
            boxes.append(box)
        if len(boxes) == n:
            return boxes
    return _rows([_extent(shape, lo) for shape in shapes], rng, size)


def _extent(shape: str, half: int) -> tuple[int, int]:
    """Half-width and half-height of a shape whose shorter side is ``2 * half + 1`` pixels."""
    return int(round(half / _ASPECT[shape])), half


def _rows(extents: list[tuple[int, int]], rng: np.random.Generator, size: int) -> list[tuple[int, int, int, int]]:
    """Boxes of the given half-extents laid out in rows, the spare room spread at random.

    Tries the row splits (all in one row, one per row, two then one, one then two) in random order
    and takes the first that fits; at the minimum sizes of :data:`HALF_SIZES` one always does.
    """
    n, room, step = len(extents), size - 2 * MARGIN, GAP + 1
    splits = [s for s in ([n], [1] * n, [2, 1], [1, 2]) if sum(s) == n]
    for k in rng.permutation(len(splits)):
        rows, i = [], 0
        for count in splits[k]:
            rows.append(list(range(i, i + count)))
            i += count
        widths = [sum(2 * extents[j][0] + 1 for j in row) + step * (len(row) - 1) for row in rows]
        heights = [max(2 * extents[j][1] + 1 for j in row) for row in rows]
        spare_y = room - sum(heights) - step * (len(rows) - 1)
        if spare_y < 0 or max(widths) > room:
            continue
        boxes: dict[int, tuple[int, int, int, int]] = {}
        pads = _share(spare_y, len(rows) + 1, rng)
        y = MARGIN + pads[0]
        for row, width, height, pad_y in zip(rows, widths, heights, pads[1:]):
            x = MARGIN + int(rng.integers(0, room - width + 1))
            for j in row:
                hw, hh = extents[j]
                top = y + int(rng.integers(0, height - 2 * hh))
                boxes[j] = (x, top, x + 2 * hw, top + 2 * hh)
                x += 2 * hw + 1 + step
            y += height + step + pad_y
        return [boxes[j] for j in range(n)]
    raise RuntimeError(f"objects of half-extents {extents} do not fit in a {size}-pixel scene")


def _share(total: int, parts: int, rng: np.random.Generator) -> list[int]:
    """``total`` pixels split at random into ``parts`` non-negative whole parts."""
    cuts = np.sort(rng.integers(0, total + 1, parts - 1))
    return np.diff(np.concatenate([[0], cuts, [total]])).astype(int).tolist()


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def caption_for(kind: Kind, objects: list[tuple[str, str]], background: str, rng: np.random.Generator) -> str:
    """A caption from one of several templates; ``objects`` are ``(colour, shape)`` pairs."""
    where = _pick(rng, _BG_PHRASES[background])
    with_bg = rng.random() < 0.75
    tail = f" {where}" if with_bg else ""
    if kind == "single":
        colour, shape = objects[0]
        if shape == "dog" and rng.random() < 0.5:
            who = "a dog" if rng.random() < 0.15 else f"a {colour} dog"
            return f"{who} {_MOTIONS[background]}"
        if rng.random() < 0.1:  # colour left open
            return f"a {shape}{tail}"
        return f"a {colour} {shape}{tail}"
    if kind == "count":
        colour, shape = objects[0]
        n = COUNT_WORDS[len(objects)]
        if rng.random() < 0.1:
            return f"{n} {PLURALS[shape]}{tail}"
        return f"{n} {colour} {PLURALS[shape]}{tail}"
    (c1, s1), (c2, s2) = objects
    joiner = _pick(rng, ("and", "and", "next to"))
    return f"a {c1} {s1} {joiner} a {c2} {s2}{tail}"


def make_scene(
    background: str,
    objects: list[tuple[str, str]],
    *,
    seed: int = 0,
    caption: str | None = None,
    size: int = IMAGE_SIZE,
) -> Scene:
    """A scene with the given background and ``(colour, shape)`` objects, laid out from ``seed``.

    ``kind`` follows from the objects: one is ``"single"``, repeats of one kind ``"count"``,
    two different ``"pair"``. Without ``caption`` one is written from the templates.
    """
    if background not in BACKGROUNDS:
        raise ValueError(f"unknown background {background!r}; choose one of {sorted(BACKGROUNDS)}")
    if not 1 <= len(objects) <= 3:
        raise ValueError(f"a toy scene holds 1 to 3 objects, not {len(objects)}")
    for colour, shape in objects:
        if colour not in PALETTE:
            raise ValueError(f"unknown colour {colour!r}; choose one of {list(PALETTE)}")
        if shape not in SHAPES:
            raise ValueError(f"unknown shape {shape!r}; choose one of {list(SHAPES)}")
    if len(objects) == 1:
        kind: Kind = "single"
    elif len(set(objects)) == 1:
        kind = "count"
    elif len(objects) == 2:
        kind = "pair"
    else:
        raise ValueError("three objects must be one colour and shape (a count scene)")
    rng = np.random.default_rng([seed, 1])
    boxes = _place([s for _, s in objects], rng, size)
    facings = [int(rng.choice([-1, 1])) for _ in objects]
    text = caption if caption is not None else caption_for(kind, list(objects), background, rng)
    objs = tuple(ToyObject(s, c, b, f) for (c, s), b, f in zip(objects, boxes, facings))
    return Scene(background, objs, text, kind, texture_seed=int(rng.integers(1 << 16)), size=size)


#: Evaluation scenes are drawn from this seed on; training draws its scenes from 1,000,000 on.
EVAL_SEEDS_FROM = 500_000


def sample_scene(seed: int, kind: Kind | None = None, size: int = IMAGE_SIZE) -> Scene:
    """The scene of ``seed``: 40 % single objects, 30 % two different objects, 30 % counts."""
    rng = np.random.default_rng([seed, 0])
    colours, shapes = list(PALETTE), list(SHAPES)
    if kind is None:
        kind = ("single", "pair", "count")[int(rng.choice(3, p=[0.4, 0.3, 0.3]))]
    background = _pick(rng, list(BACKGROUNDS))
    if kind == "single":
        objects = [(_pick(rng, colours), _pick(rng, shapes))]
    elif kind == "count":
        objects = [(_pick(rng, colours), _pick(rng, shapes))] * int(rng.integers(2, 4))
    elif kind == "pair":
        s1, s2 = rng.choice(len(shapes), size=2, replace=False)
        c1, c2 = rng.choice(len(colours), size=2, replace=False)
        objects = [(colours[c1], shapes[s1]), (colours[c2], shapes[s2])]
    else:
        raise ValueError(f"kind must be 'single', 'pair', 'count' or None, not {kind!r}")
    return make_scene(background, objects, seed=seed, size=size)


def edit_scene(scene: Scene, index: int = 0, *, colour: str | None = None, shape: str | None = None,
               background: str | None = None) -> Scene:
    """The same scene with one attribute changed (004's clothing change), caption rewritten
    by substituting the word, layout and texture kept."""
    if not 0 <= index < len(scene.objects):
        raise IndexError(f"object index {index} out of range for {len(scene.objects)} objects")
    obj = scene.objects[index]
    caption = scene.caption
    objects = list(scene.objects)
    targets = range(len(objects)) if scene.kind == "count" else [index]  # a count edits every copy
    if colour is not None:
        if colour not in PALETTE:
            raise ValueError(f"unknown colour {colour!r}; choose one of {list(PALETTE)}")
        for i in targets:
            objects[i] = replace(objects[i], colour=colour)
        caption = re.sub(rf"\b{obj.colour}\b", colour, caption, count=1)
    if shape is not None:
        if shape not in SHAPES:
            raise ValueError(f"unknown shape {shape!r}; choose one of {list(SHAPES)}")
        for i in targets:
            objects[i] = replace(objects[i], shape=shape)
        caption = re.sub(rf"\b{obj.shape}(s?)\b", rf"{shape}\1", caption, count=1)
    bg = scene.background
    if background is not None:
        if background not in BACKGROUNDS:
            raise ValueError(f"unknown background {background!r}; choose one of {sorted(BACKGROUNDS)}")
        for old, new in zip(_BG_PHRASES[bg] + (_MOTIONS[bg],), _BG_PHRASES[background] + (_MOTIONS[background],)):
            caption = caption.replace(old, new)
        bg = background
    return replace(scene, objects=tuple(objects), caption=caption, background=bg)


def background_phrase(background: str) -> str:
    """How captions place an object on ``background`` ("on the field", "by the river", …)."""
    if background not in _BG_PHRASES:
        raise ValueError(f"background must be one of {list(_BG_PHRASES)}, got {background!r}")
    return _BG_PHRASES[background][0]


def story_prompts(colour: str = "white", shape: str = "dog") -> list[str]:
    """A sequence of prompts about the same subject (001's stories): it moves through the world."""
    if colour not in PALETTE or shape not in SHAPES:
        raise ValueError(f"colour must be one of {list(PALETTE)} and shape one of {list(SHAPES)}")
    if shape == "dog":
        return [f"a {colour} dog {_MOTIONS[bg]}" for bg in ("field", "river", "snow", "sky")]
    return [f"a {colour} {shape} {background_phrase(bg)}" for bg in ("field", "river", "snow", "sky")]


#: The documents' prompts and their toy-world analogues.
DOCUMENT_ANALOGUES: dict[str, list[str]] = {
    "a dog runs across the field": ["a dog runs across the field", "a black dog runs across the field"],
    "Three dogs": ["three dogs on the field", "three white dogs in the snow"],
    "a red car and a white sheep": ["a red square and a white dog", "a blue circle and a yellow star"],
    "clothing change (004)": ["a red dog on the field", "a blue dog on the field"],
    "story sequence (001)": story_prompts("white", "dog"),
}


def caption_corpus(n: int = 4000, start: int = 0) -> list[str]:
    """Captions of scenes ``start … start+n-1``: the text the tokenizer's merges are learned from."""
    return list(_captions(n, start)) + [p for ps in DOCUMENT_ANALOGUES.values() for p in ps]


@cache
def _captions(n: int, start: int) -> tuple[str, ...]:
    # Drawing thousands of scenes takes seconds; every training stage asks for the same ones.
    return tuple(sample_scene(s).caption for s in range(start, start + n))


def world_spec() -> dict:
    """The world's constants as JSON-ready data (shipped as ``world.json`` beside the model)."""
    return {
        "image_size": IMAGE_SIZE,
        "palette": {k: list(v) for k, v in PALETTE.items()},
        "shapes": list(SHAPES),
        "backgrounds": {k: [list(c) for c in v] for k, v in BACKGROUNDS.items()},
        "background_phrases": {k: list(v) for k, v in _BG_PHRASES.items()},
        "counts": {str(k): v for k, v in COUNT_WORDS.items()},
        "document_analogues": DOCUMENT_ANALOGUES,
    }


# ----------------------------------------------------------------------------- prompts


@dataclass(frozen=True)
class PromptSpec:
    """What a prompt asks for: ``(colour or None, shape, count)`` groups and a background."""

    groups: tuple[tuple[str | None, str, int], ...]
    background: str | None


_WORD_TO_SHAPE = {**{s: s for s in SHAPES}, **{p: s for s, p in PLURALS.items()}}
_COUNT_OF = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3}


def parse_prompt(prompt: str) -> PromptSpec:
    """Read a toy-world prompt: ``"two red circles in the snow"`` -> ``((red, circle, 2),), snow``.

    Raises:
        ValueError: the prompt names no shape of the world.
    """
    words = re.findall(r"[a-z]+", prompt.lower())
    groups: list[tuple[str | None, str, int]] = []
    count, colour = 1, None
    for w in words:
        if w in _COUNT_OF:
            count, colour = _COUNT_OF[w], None
        elif w in PALETTE:
            colour = w
        elif w in _WORD_TO_SHAPE:
            groups.append((colour, _WORD_TO_SHAPE[w], count))
            count, colour = 1, None
    if not groups:
        raise ValueError(f"prompt {prompt!r} names none of the shapes {list(SHAPES)}")
    background = next((b for b in BACKGROUNDS if b in words), None)
    return PromptSpec(tuple(groups), background)


# ----------------------------------------------------------------------------- segmentation


@dataclass(frozen=True)
class Detection:
    """A palette-coloured blob found in an image: colour, best-matching shape, its template IoU,
    inclusive box and pixel area; ``mask`` is bool ``(H, W)``."""

    colour: str
    shape: str
    shape_iou: float
    box: tuple[int, int, int, int]
    area: int
    mask: np.ndarray = field(repr=False, compare=False)


def _reference_colours() -> tuple[np.ndarray, list[str | None]]:
    refs, names = [], []
    for name, rgb in PALETTE.items():
        refs.append(rgb)
        names.append(name)
    for cols in BACKGROUNDS.values():
        for rgb in cols:
            refs.append(rgb)
            names.append(None)
    return np.array(refs, dtype=np.float32), names


def colour_labels(image: Image.Image | np.ndarray) -> np.ndarray:
    """Index into :data:`PALETTE` of each pixel's nearest reference colour, ``-1`` where the
    nearest is a background colour; int ``(H, W)``."""
    arr = to_array(image).astype(np.float32)
    refs, names = _reference_colours()
    dist = ((arr[:, :, None, :] - refs[None, None]) ** 2).sum(-1)
    nearest = dist.argmin(-1)
    lut = np.array([i if n is not None else -1 for i, n in enumerate(names)])
    return lut[nearest]


#: Which texture each background reference colour belongs to (field and river share their grass).
_TEXTURE_OF: dict[tuple[int, int, int], str] = {
    **{c: "grass" for c in BACKGROUNDS["field"]}, BACKGROUNDS["river"][2]: "water",
    **{c: "snow" for c in BACKGROUNDS["snow"]}, **{c: "sky" for c in BACKGROUNDS["sky"]},
}
#: A river scene shows at least this share of its background pixels as water. The band covers
#: 20 % of the picture; the largest single object can hide most, never all, of it.
RIVER_MIN_WATER = 0.02


def background_of(image: Image.Image | np.ndarray) -> str | None:
    """Name the background of a toy-world image: ``field``, ``river``, ``snow`` or ``sky``.

    Each pixel whose nearest reference colour is a background colour votes for its texture
    (grass, water, snow, sky); grass and water together against snow and sky decide between the
    green and the pale worlds, then water (after a 3-pixel opening against stray blue-green
    edges) tells a river from a field and the majority tells snow from sky. ``None`` when no
    pixel shows a background colour.
    """
    arr = to_array(image).astype(np.float32)
    refs, names = _reference_colours()
    nearest = ((arr[:, :, None, :] - refs[None, None]) ** 2).sum(-1).argmin(-1)
    texture_names = ["grass", "water", "snow", "sky"]
    lut = np.array([texture_names.index(_TEXTURE_OF[tuple(int(v) for v in refs[i])]) if n is None else -1
                    for i, n in enumerate(names)])
    textures = lut[nearest]
    votes = {t: int((textures == k).sum()) for k, t in enumerate(texture_names)}
    total = sum(votes.values())
    if total == 0:
        return None
    if votes["grass"] + votes["water"] >= votes["snow"] + votes["sky"]:
        water = ndimage.binary_opening(textures == 1, structure=np.ones((3, 3), bool)).sum()
        return "river" if water >= RIVER_MIN_WATER * total else "field"
    return "snow" if votes["snow"] >= votes["sky"] else "sky"


def classify_shape(mask: np.ndarray) -> tuple[str, float]:
    """Name the shape of one blob by the IoU of each shape template drawn into its box."""
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    best, best_iou = "circle", -1.0
    for shape in SHAPES:
        for facing in ((1, -1) if shape == "dog" else (1,)):
            t = shape_mask(shape, box, mask.shape[0], facing)
            iou = float((t & mask).sum() / max(1, (t | mask).sum()))
            if iou > best_iou:
                best, best_iou = shape, iou
    return best, best_iou


def segment(image: Image.Image | np.ndarray, min_area: int = 40) -> list[Detection]:
    """Find the objects in a (generated) toy-world image.

    Each pixel is named by its nearest palette or background colour; the connected regions of
    one palette colour (after a 1-pixel opening against speckle) with at least ``min_area``
    pixels are objects, and each gets the shape whose template fits its box best.
    """
    labels = colour_labels(image)
    found: list[Detection] = []
    for ci, colour in enumerate(PALETTE):
        region = ndimage.binary_opening(labels == ci, structure=np.ones((3, 3), bool))
        comp, n = ndimage.label(region)
        for k in range(1, n + 1):
            mask = comp == k
            area = int(mask.sum())
            if area < min_area:
                continue
            shape, iou = classify_shape(mask)
            ys, xs = np.nonzero(mask)
            box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
            found.append(Detection(colour, shape, iou, box, area, mask))
    return found


def appearance(image: Image.Image | np.ndarray) -> tuple[tuple[str, ...], str | None]:
    """What an image shows apart from shapes: the colours of the objects found and the background."""
    return tuple(sorted({d.colour for d in segment(image) if d.colour})), background_of(image)
