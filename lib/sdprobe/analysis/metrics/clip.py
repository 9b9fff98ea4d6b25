"""CLIP scores: text-image alignment and image-image similarity, with any transformers CLIPModel passed in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image


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
