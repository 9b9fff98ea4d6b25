"""Tiny judge models with random weights, of the real classes: ``random:owlv2-tiny``, ``random:sam-tiny``.

They exercise the open-vocabulary judge's whole path offline and in seconds (the smoke presets,
the tests): an ``Owlv2ForObjectDetection`` and a ``SamModel`` a few hundred kilobytes in size,
built from a fixed seed with the toy CLIP's tokenizer. Their readings mean nothing. :func:`save`
writes one to a folder, the form a downloaded model takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["TINY", "build", "save"]

#: The tiny judges by name, and the role each plays.
TINY = {"owlv2-tiny": "detector", "sam-tiny": "segmenter"}
SIDE = 64  # the pictures' side inside the models


def build(name: str) -> tuple[Any, Any]:
    """The model (eval mode, float32, CPU) and processor of ``random:<name>``, the same weights on
    every call and machine.

    Raises:
        ValueError: not a name of :data:`TINY`.
    """
    if name not in TINY:
        raise ValueError(f"random judges are {', '.join(f'random:{n}' for n in TINY)}, not 'random:{name}'")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _owlv2() if name == "owlv2-tiny" else _sam()


def save(name: str, folder: Path | str) -> Path:
    """Write ``random:<name>`` to ``folder`` (safetensors weights, configs, processor) and return it."""
    model, processor = build(name)
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _owlv2() -> tuple[Any, Any]:
    from transformers import CLIPTokenizer, Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessorPil, Owlv2Processor

    from sdprobe.paths import MODELS_DIR

    # the toy CLIP's tokenizer: its start token is not id 0, which OWL-ViT would read as padding
    tokenizer = CLIPTokenizer.from_pretrained(MODELS_DIR / "toy" / "clip")
    tokenizer.model_max_length = 16  # OWLv2's query length
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=16, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=SIDE,
                  patch_size=16)
    model = Owlv2ForObjectDetection(Owlv2Config(text_config=text, vision_config=vision, projection_dim=32)).eval()
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessorPil(size={"height": SIDE, "width": SIDE}),
                               tokenizer=tokenizer)
    return model, processor


def _sam() -> tuple[Any, Any]:
    from transformers import SamConfig, SamImageProcessorPil, SamModel, SamProcessor

    config = SamConfig(
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=SIDE, patch_size=16,
                           output_channels=16, num_pos_feats=8, window_size=2, global_attn_indexes=[1], mlp_dim=64),
        prompt_encoder_config=dict(hidden_size=16, image_size=SIDE, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=16, mlp_dim=32, num_hidden_layers=1, num_attention_heads=2,
                                 iou_head_hidden_dim=16))
    processor = SamProcessor(image_processor=SamImageProcessorPil(size={"longest_edge": SIDE},
                                                                  pad_size={"height": SIDE, "width": SIDE}))
    return SamModel(config).eval(), processor
