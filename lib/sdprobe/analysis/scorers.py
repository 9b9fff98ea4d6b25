"""The models that score generated images: a CLIP for CLIP scores, a detector for placement IoU.

Both are named the way chapters name models: ``"toy"`` for the embedded miniature's own (the toy
CLIP in ``data/models/toy/clip``; the toy world's segmentation as detector), or a local folder /
Hub id for real runs (e.g. ``openai/clip-vit-large-patch14``, torchmetrics' CLIPScore default;
``google/owlv2-base-patch16-ensemble``, the open-vocabulary detector layout benchmarks use).
Nothing is downloaded unless the Hub is reachable and the id is not cached.

    clip, processor = load_clip("toy")
    sdprobe.analysis.metrics.clip_score(clip, images, prompt, processor=processor)
    detect = load_detector("toy")
    sdprobe.analysis.metrics.placement_iou(box_px, detector=detect, image=image, label="dog")
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sdprobe.models import ModelNotAvailableError
from sdprobe.paths import MODELS_DIR

__all__ = ["load_clip", "load_detector", "toy_detector"]

Detector = Callable[[Any, str], list[tuple[float, float, float, float]]]


def _toy_folder(sub: str) -> Path:
    folder = MODELS_DIR / "toy" / sub
    if not (folder / "config.json").is_file():
        raise ModelNotAvailableError(f"the toy model's {sub!r} is missing from {folder}; train the toy model first (make toy)")
    return folder


def load_clip(name: str = "toy") -> tuple[Any, Any]:
    """A ``transformers`` ``CLIPModel`` (eval mode, float32) and its ``CLIPProcessor``.

    Args:
        name: ``"toy"``, a local folder or a Hub id.

    A folder without an image-processor config (the toy export saves only model and tokenizer)
    gets the processor the toy CLIP was trained with: images resized to the vision tower's size
    and scaled to ``[-1, 1]`` (mean 0.5, std 0.5).
    """
    from transformers import CLIPImageProcessor, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer
    from transformers.utils import logging as hf_logging

    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be 'toy', a folder or a Hub id, got {name!r}")
    from sdprobe.models.loading import model_folder

    path = _toy_folder("clip") if name == "toy" else model_folder(name, "CLIP")
    hf_logging.disable_progress_bar()  # the loading bar would land in a notebook's stderr
    try:
        model = CLIPModel.from_pretrained(path, use_safetensors=True).float().eval()
        configs = ("preprocessor_config.json", "processor_config.json")
        if Path(path).is_dir() and not any((Path(path) / c).is_file() for c in configs):
            side = model.config.vision_config.image_size
            images = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                                        image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=Image.Resampling.BOX)
            processor = CLIPProcessor(image_processor=images, tokenizer=CLIPTokenizer.from_pretrained(path))
        else:  # the PIL image processor: the default one needs torchvision, which we do not install
            processor = CLIPProcessor(image_processor=CLIPImageProcessorPil.from_pretrained(path),
                                      tokenizer=CLIPTokenizer.from_pretrained(path))
    except (OSError, ValueError) as err:
        first = " ".join(str(err).split())[:300]
        raise ModelNotAvailableError(f"cannot load the CLIP {name!r} from {path}: {first}") from None
    finally:
        hf_logging.enable_progress_bar()
    return model, processor


def toy_detector(image: Image.Image | np.ndarray, label: str) -> list[tuple[float, float, float, float]]:
    """The toy world's segmentation as a detector: pixel boxes ``(x0, y0, x1, y1)``, end exclusive,
    of every blob whose shape is ``label`` (``"dog"``, ``"red dog"``: the last word is the shape;
    a colour word before it keeps only blobs of that colour)."""
    from sdprobe.world import PALETTE, SHAPES, segment

    words = label.lower().split()
    if not words or words[-1] not in SHAPES:
        raise ValueError(f"the toy detector finds shapes {list(SHAPES)}; got label {label!r}")
    colour = words[-2] if len(words) > 1 and words[-2] in PALETTE else None
    return [(d.box[0], d.box[1], d.box[2] + 1, d.box[3] + 1) for d in segment(image)
            if d.shape == words[-1] and (colour is None or d.colour == colour)]


def load_detector(name: str = "toy", *, threshold: float = 0.1) -> Detector:
    """A detector ``detector(image, label) -> [pixel boxes]`` for :func:`sdprobe.analysis.metrics.placement_iou`.

    Args:
        name: ``"toy"`` (:func:`toy_detector`), or a folder / Hub id of a ``transformers``
            zero-shot object detection model such as OWLv2.
        threshold: lowest detection score kept (zero-shot detectors only).
    """
    if name == "toy":
        return toy_detector
    from transformers import pipeline

    from sdprobe.analysis.metrics import detector_from_pipeline

    try:
        detect = pipeline("zero-shot-object-detection", model=name)
    except OSError as err:
        raise ModelNotAvailableError(f"cannot load a zero-shot detector from {name!r}: {err}") from None
    return detector_from_pipeline(detect, threshold=threshold)
