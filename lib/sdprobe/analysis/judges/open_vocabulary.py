"""A judge for real pictures: OWLv2 boxes, SAM masks and CLIP colours, after GenEval's protocol.

GenEval (Ghosh, Hajishirzi and Schmidt, NeurIPS 2023 Datasets and Benchmarks; its repository's
``evaluation/evaluate_images.py``) judges a picture against the objects its prompt names: a
detector finds each named class, a clause holds when at least ``count`` instances are found, and
an instance's colour is read by CLIP zero-shot on its box crop with everything outside its mask
filled grey. We keep that protocol and swap its closed-set detector (Mask2Former over the 80 COCO
classes) for open-vocabulary pieces, so any noun can be asked for:

* **boxes**: OWLv2 (Minderer, Gritsenko and Houlsby, NeurIPS 2023), one query per noun,
  ``"a photo of a {noun}"`` (the query form of the OWL-ViT papers' examples);
* **masks**: SAM (Kirillov et al., ICCV 2023) prompted with each kept box, one mask per box;
* **colours**: CLIP zero-shot over GenEval's ten colours with its three templates averaged into
  one classifier per noun, on the box crop with the outside of the mask filled ``#999999``;
* **background**: CLIP zero-shot over the prompt set's places on the whole picture (ours;
  GenEval asks for no background).

Every number the protocol uses is a parameter of :class:`OpenVocabularyJudge`, with where it comes
from: the detection thresholds 0.3, and 0.9 for counting prompts, and at most 16 instances per
noun are GenEval's (set for its Mask2Former, not re-calibrated for OWLv2); greedy non-maximum
suppression at IoU 0.5 is ours, because OWLv2 scores a box for every image patch and one object
gets several (Mask2Former's instances need none). Models are loaded once per process, from a
folder or a Hub id, safetensors only and never remote code, onto the pipeline's device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from PIL import Image

from sdprobe.analysis.judges.prompts import COLOURS, StructuredPrompt
from sdprobe.analysis.judges.readings import Found, Reading
from sdprobe.images import to_pil

__all__ = ["DEFAULT_CLIP", "DEFAULT_DETECTOR", "DEFAULT_SEGMENTER", "COLOUR_TEMPLATES", "OpenVocabularyJudge",
           "load_models"]

#: The judge models the paper presets name: OWLv2's base ensemble, SAM's base model, the CLIP that
#: GenEval and torchmetrics' CLIPScore use.
DEFAULT_DETECTOR = "google/owlv2-base-patch16-ensemble"
DEFAULT_SEGMENTER = "facebook/sam-vit-base"
DEFAULT_CLIP = "openai/clip-vit-large-patch14"
#: GenEval's colour templates (``evaluate_images.py``).
COLOUR_TEMPLATES = ("a photo of a {c} {noun}", "a photo of a {c}-colored {noun}", "a photo of a {c} object")
#: Our templates for a place (GenEval has none).
BACKGROUND_TEMPLATES = ("a photo of the {place}", "a picture taken at the {place}")
QUERY_TEMPLATE = "a photo of a {noun}"
GREY = (153, 153, 153)  # GenEval fills the outside of an object's mask with #999


@dataclass
class OpenVocabularyJudge:
    """Judge real pictures with a detector, a segmenter and a CLIP (see the module docstring).

    Attributes:
        detector, segmenter, clip: folders or Hub ids of an ``Owlv2ForObjectDetection``, a
            ``SamModel`` and a ``CLIPModel`` (``"toy"``: the toy model's CLIP).
        device: where they run (the pipeline's device).
        dtype: ``"auto"``: float16 on a GPU, float32 on the CPU; float16 on the CPU is refused.
        threshold: lowest detection score kept (GenEval: 0.3).
        counting_threshold: the same for prompts that ask for several of an object (GenEval: 0.9).
        max_instances: instances kept per noun, by score (GenEval: 16).
        nms_iou: boxes of one noun overlapping a better one by more than this are dropped (ours).
        batch: pictures per forward pass.
    """

    detector: str = DEFAULT_DETECTOR
    segmenter: str = DEFAULT_SEGMENTER
    clip: str = DEFAULT_CLIP
    device: str | torch.device = "cpu"
    dtype: str = "auto"
    threshold: float = 0.3
    counting_threshold: float = 0.9
    max_instances: int = 16
    nms_iou: float = 0.5
    batch: int = 8
    colours: tuple[str, ...] = COLOURS
    exact: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        for name in ("threshold", "counting_threshold", "nms_iou"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"{name} is a number in [0, 1], not {value!r}")
        for name in ("max_instances", "batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} is a whole number of at least 1, not {value!r}")
        self.device = torch.device(self.device)
        self._dtype = _judge_dtype(self.dtype, self.device)

    @property
    def name(self) -> str:
        return f"open-vocabulary (detector {self.detector}, segmenter {self.segmenter}, CLIP {self.clip})"

    # -- the one entry point -------------------------------------------------------------------

    @torch.no_grad()
    def read(self, images: Sequence[Any], prompts: Sequence[StructuredPrompt]) -> list[Reading]:
        """Read every picture against its prompt: per asked object the instances found (score
        order, thresholded, suppressed, at most ``max_instances``), each with its SAM mask and
        CLIP colour, and the place seen among the prompt's ``backgrounds``."""
        pictures, prompts = _pair(images, prompts)
        readings: list[Reading] = []
        for start in range(0, len(pictures), self.batch):
            chunk, asked = pictures[start:start + self.batch], prompts[start:start + self.batch]
            candidates = self.detect(chunk, list(dict.fromkeys(n for p in asked for n in p.nouns)), [p.nouns for p in asked])
            boxes = [self.keep(found, prompt) for found, prompt in zip(candidates, asked)]
            masks = self.segment(chunk, boxes)
            colours = self._colour(chunk, boxes, masks)
            places = self._places(chunk, asked)
            for k, (picture, prompt) in enumerate(zip(chunk, asked)):
                found = {noun: tuple(Found(noun, box, score, mask, colour)
                                     for (box, score), mask, colour in zip(boxes[k][noun], masks[k][noun], colours[k][noun]))
                         for noun in prompt.nouns}
                readings.append(Reading(prompt, tuple(found[o.noun] for o in prompt.objects), places[k],
                                        (picture.height, picture.width)))
        return readings

    def appearance(self, images: Sequence[Any], prompts: Sequence[StructuredPrompt], *,
                   readings: Sequence[Reading] | None = None) -> list[tuple]:
        """What each picture shows apart from its objects' kinds: the colours of the instances
        found of its prompt's nouns, and the place seen (what a seed can change); from
        ``readings`` of these pictures when given, else read now."""
        readings = self.read(images, prompts) if readings is None else readings
        return [(r.colours, r.background) for r in readings]

    # -- the protocol's steps ------------------------------------------------------------------

    def detect(self, pictures: Sequence[Image.Image], nouns: Sequence[str],
               asked: Sequence[Sequence[str]] | None = None) -> list[dict[str, list]]:
        """The detector's step: per picture, noun → every candidate ``(pixel box, score)``.

        OWLv2 predicts a box for every image patch; each box goes to the noun, among the
        picture's own (``asked[k]``, default all ``nouns``), that scores it highest, so a reading
        never depends on what else shares its batch. Boxes are clipped to the picture (OWLv2
        sees each picture padded to a square)."""
        model, processor = load_models("detector", self.detector, self.device, self._dtype)
        queries = [QUERY_TEMPLATE.format(noun=n) for n in nouns]
        inputs = processor(text=[queries] * len(pictures), images=list(pictures), return_tensors="pt")
        outputs = model(**_to(inputs, self.device, self._dtype))
        logits, centres = outputs.logits.float().cpu(), outputs.pred_boxes.float().cpu()  # [B, patches, Q], [B, patches, 4]
        candidates = []
        for k, picture in enumerate(pictures):
            own = list(asked[k]) if asked is not None else list(nouns)
            columns = [nouns.index(n) for n in own]
            best = logits[k][:, columns].max(dim=-1)
            scores, labels = torch.sigmoid(best.values).tolist(), best.indices.tolist()
            side = max(picture.size)
            cx, cy, w, h = centres[k].unbind(-1)
            corners = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1) * side
            per_noun: dict[str, list] = {noun: [] for noun in own}
            for corner, score, label in zip(corners.tolist(), scores, labels):
                box = _clip_box(corner, picture.width, picture.height)
                if box is not None:
                    per_noun[own[label]].append((box, float(score)))
            candidates.append(per_noun)
        return candidates

    def keep(self, candidates: dict[str, list], prompt: StructuredPrompt) -> dict[str, list]:
        """GenEval's matching for one picture: per noun of ``prompt``, the candidates scoring at
        least the threshold (the counting one when the prompt asks for several of something),
        best first, overlaps suppressed, at most ``max_instances``."""
        floor = self.counting_threshold if prompt.counting else self.threshold
        kept = {}
        for noun in prompt.nouns:
            scored = sorted((c for c in candidates.get(noun, []) if c[1] >= floor), key=lambda c: -c[1])
            kept[noun] = _suppress(scored, self.nms_iou)[:self.max_instances]
        return kept

    def segment(self, pictures: Sequence[Image.Image], boxes: list[dict[str, list]]) -> list[dict[str, list[np.ndarray]]]:
        """The segmenter's step: per picture, noun → one bool ``[H, W]`` SAM mask per kept box
        (pictures without boxes skip SAM; shorter box lists are padded within a batch)."""
        flat = [[box for noun in per for box, _ in per[noun]] for per in boxes]
        masks: list[list[np.ndarray]] = [[] for _ in pictures]
        todo = [k for k, b in enumerate(flat) if b]
        if todo:
            model, processor = load_models("segmenter", self.segmenter, self.device, self._dtype)
            most = max(len(flat[k]) for k in todo)
            padded = [[list(b) for b in flat[k]] + [list(flat[k][0])] * (most - len(flat[k])) for k in todo]
            inputs = processor(images=[pictures[k] for k in todo], input_boxes=padded, return_tensors="pt")
            outputs = model(**_to(inputs, self.device, self._dtype), multimask_output=False)
            found = processor.post_process_masks(outputs.pred_masks.float().cpu(), inputs["original_sizes"],
                                                 inputs["reshaped_input_sizes"])
            for k, m in zip(todo, found):
                masks[k] = [m[i, 0].numpy().astype(bool) for i in range(len(flat[k]))]
        out = []
        for per, picture_masks in zip(boxes, masks):
            it = iter(picture_masks)
            out.append({noun: [next(it) for _ in per[noun]] for noun in per})
        return out

    def _colour(self, pictures: list[Image.Image], boxes: list[dict[str, list]],
                masks: list[dict[str, list[np.ndarray]]]) -> list[dict[str, list[str]]]:
        """Per picture, noun → the colour CLIP reads for each instance."""
        jobs = [(k, noun, i) for k, per in enumerate(boxes) for noun in per for i in range(len(per[noun]))]
        read = self.colour_of([pictures[k] for k, _, _ in jobs], [boxes[k][noun][i][0] for k, noun, i in jobs],
                              [masks[k][noun][i] for k, noun, i in jobs], [noun for _, noun, _ in jobs])
        out: list[dict[str, list[str]]] = [{noun: [] for noun in per} for per in boxes]
        for (k, noun, _), colour in zip(jobs, read):
            out[k][noun].append(colour)
        return out

    @torch.no_grad()
    def colour_of(self, pictures: Sequence[Any], boxes: Sequence[tuple[int, int, int, int]],
                  masks: Sequence[np.ndarray], nouns: Sequence[str]) -> list[str]:
        """The protocol's attribute step: the colour of each instance (picture, pixel box, bool
        mask, noun), by CLIP zero-shot over :attr:`colours` with GenEval's three templates
        averaged into one classifier per noun, on the box crop with the outside of the mask grey."""
        if not len(pictures) == len(boxes) == len(masks) == len(nouns):
            raise ValueError(f"one box, mask and noun per picture: got {len(pictures)}, {len(boxes)}, {len(masks)}, "
                             f"{len(nouns)}")
        if not pictures:
            return []
        crops = [_grey_crop(to_pil(p), b, m) for p, b, m in zip(pictures, boxes, masks)]
        features = clip_image_features(self.clip, crops, self.device)
        out: list[str] = [""] * len(crops)
        for noun in dict.fromkeys(nouns):
            rows = [j for j, n in enumerate(nouns) if n == noun]
            classes = clip_text_classes(self.clip, [[t.format(c=c, noun=noun) for t in COLOUR_TEMPLATES]
                                                    for c in self.colours], self.device)
            for j, c in zip(rows, (features[rows] @ classes.T).argmax(dim=1).tolist()):
                out[j] = self.colours[c]
        return out

    def _places(self, pictures: list[Image.Image], prompts: list[StructuredPrompt]) -> list[str | None]:
        """The place CLIP sees in each picture among its prompt's ``backgrounds`` (None if there are none)."""
        out: list[str | None] = [None] * len(pictures)
        asked = [k for k, p in enumerate(prompts) if p.backgrounds]
        if not asked:
            return out
        features = clip_image_features(self.clip, [pictures[k] for k in asked], self.device)
        for row, k in enumerate(asked):
            places = prompts[k].backgrounds
            classes = clip_text_classes(self.clip, [[t.format(place=p) for t in BACKGROUND_TEMPLATES] for p in places],
                                        self.device)
            out[k] = places[int((features[row] @ classes.T).argmax())]
        return out


# ----------------------------------------------------------------------------- CLIP zero-shot


def clip_image_features(name: str, images: Sequence[Image.Image], device: torch.device) -> torch.Tensor:
    """Unit CLIP image embeddings ``[N, D]`` (float32, on ``device``)."""
    from sdprobe.analysis.metrics import clip_image_embeddings

    model, processor = load_models("clip", name, device, torch.float32)
    return clip_image_embeddings(model, list(images), processor=processor)


def clip_text_classes(name: str, prompts: Sequence[Sequence[str]], device: torch.device) -> torch.Tensor:
    """One unit classifier per class ``[K, D]``: the mean of its templates' unit text embeddings,
    renormalised (CLIP's prompt ensembling, as GenEval builds its colour classifier). Computed
    once per CLIP, device and set of templates."""
    return _classes(name, tuple(tuple(group) for group in prompts), str(device))


@lru_cache(maxsize=256)
def _classes(name: str, prompts: tuple[tuple[str, ...], ...], device: str) -> torch.Tensor:
    from sdprobe.analysis.metrics import clip_text_embeddings

    model, processor = load_models("clip", name, device, torch.float32)
    feats = clip_text_embeddings(model, [t for group in prompts for t in group], processor=processor)
    means = torch.stack([chunk.mean(dim=0) for chunk in torch.split(feats, [len(g) for g in prompts])])
    return torch.nn.functional.normalize(means, dim=-1)


# ----------------------------------------------------------------------------- models, once each

_LOADED: dict[tuple[str, str, str, torch.dtype], tuple[Any, Any]] = {}
_WHAT = {"detector": "detector (Owlv2ForObjectDetection)", "segmenter": "segmenter (SamModel)", "clip": "CLIP (CLIPModel)"}


def load_models(kind: str, name: str, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """The model and processor of a judge's ``kind`` (``"detector"``, ``"segmenter"``, ``"clip"``),
    loaded once per process for each name, device and dtype, in eval mode.

    ``name`` is a folder or a Hub id (``"toy"`` for a CLIP: the toy model's; ``"random:owlv2-tiny"``
    and ``"random:sam-tiny"``: :mod:`~sdprobe.analysis.judges.tiny`'s). Weights are read from
    safetensors only and no remote code runs; a Hub id is fetched only where the Hub is reachable
    (never with ``HF_HUB_OFFLINE=1``) and otherwise taken from the local cache.

    Raises:
        ModelNotAvailableError: the model cannot be had here, in one line naming it.
        ValueError: ``kind`` or ``name`` is not one the judges know.
    """
    if kind not in _WHAT:
        raise ValueError(f"a judge model is a {', '.join(_WHAT)}, not {kind!r}")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"the {_WHAT[kind]} is a folder or a Hub id, not {name!r}")
    device = torch.device(device)
    key = (kind, name, str(device), dtype)
    if key not in _LOADED:
        _LOADED[key] = _load(kind, name, device, dtype)
    return _LOADED[key]


def _load(kind: str, name: str, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers.utils import logging as hf_logging

    from sdprobe.models import ModelNotAvailableError
    from sdprobe.models.loading import model_folder

    if kind == "clip":
        from sdprobe.analysis.scorers import load_clip

        model, processor = load_clip(name)
        return model.to(device).eval(), processor
    if name.startswith("random:"):
        from sdprobe.analysis.judges.tiny import TINY, build

        if TINY.get(name.removeprefix("random:")) != kind:
            raise ValueError(f"{name!r} is not a random {_WHAT[kind]}; the random {kind}s: "
                             + ", ".join(f"random:{n}" for n, k in TINY.items() if k == kind))
        model, processor = build(name.removeprefix("random:"))
        return model.to(device, dtype).eval(), processor
    folder = model_folder(name, _WHAT[kind])
    hf_logging.disable_progress_bar()  # the loading bar would land in a notebook's stderr
    try:
        if kind == "detector":
            from transformers import AutoTokenizer, Owlv2ForObjectDetection, Owlv2ImageProcessorPil, Owlv2Processor

            model = Owlv2ForObjectDetection.from_pretrained(folder, use_safetensors=True, dtype=dtype)
            processor = Owlv2Processor(image_processor=Owlv2ImageProcessorPil.from_pretrained(folder),
                                       tokenizer=AutoTokenizer.from_pretrained(folder))
        else:
            from transformers import SamImageProcessorPil, SamModel, SamProcessor

            model = SamModel.from_pretrained(folder, use_safetensors=True, dtype=dtype)
            processor = SamProcessor(image_processor=SamImageProcessorPil.from_pretrained(folder))
    except (OSError, ValueError) as err:
        first = " ".join(str(err).split())[:300]
        raise ModelNotAvailableError(f"cannot load the {_WHAT[kind]} {name!r}: {first}") from None
    finally:
        hf_logging.enable_progress_bar()
    return model.to(device).eval(), processor


def _judge_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    from sdprobe.models import resolve_dtype

    chosen = resolve_dtype(dtype, device)
    if device.type == "cpu" and chosen != torch.float32:
        raise ValueError(f"the judge runs in float32 on the CPU (half precision is not supported there), not {dtype}; "
                         "use dtype='auto' or 'fp32'")
    return chosen


# ----------------------------------------------------------------------------- small pieces


def _pair(images: Sequence[Any], prompts: Sequence[StructuredPrompt]) -> tuple[list[Image.Image], list[StructuredPrompt]]:
    pictures, prompts = [to_pil(im) for im in images], list(prompts)
    if len(pictures) != len(prompts):
        raise ValueError(f"{len(pictures)} pictures but {len(prompts)} prompts: give one prompt per picture")
    bad = [p for p in prompts if not isinstance(p, StructuredPrompt)]
    if bad:
        raise TypeError(f"a judge reads StructuredPrompt objects (sdprobe.analysis.judges), not {type(bad[0]).__name__}")
    return pictures, prompts


def _to(inputs: Any, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Tensors of a processor's output on ``device``; floating ones in ``dtype``."""
    return {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) if torch.is_tensor(v) else v
            for k, v in inputs.items() if k not in ("original_sizes", "reshaped_input_sizes")}


def _clip_box(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int] | None:
    """A box in pixels, clipped to the picture (OWLv2's padded square reaches past it); None when
    nothing of it is left inside."""
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _box_iou(a: Sequence[int], b: Sequence[int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _suppress(scored: list[tuple[tuple[int, int, int, int], float]], iou: float) -> list:
    """Greedy non-maximum suppression over boxes sorted best first."""
    kept: list = []
    for box, score in scored:
        if all(_box_iou(box, other) <= iou for other, _ in kept):
            kept.append((box, score))
    return kept


def _grey_crop(picture: Image.Image, box: tuple[int, int, int, int], mask: np.ndarray) -> Image.Image:
    """The box's pixels, everything outside the mask grey (GenEval's input to the colour classifier)."""
    pixels = np.asarray(picture.convert("RGB")).copy()
    pixels[~mask] = GREY
    x0, y0, x1, y1 = box
    return Image.fromarray(pixels[y0:y1, x0:x1])
