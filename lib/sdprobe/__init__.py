"""sdprobe: open up Stable Diffusion.

The thin library behind the book *Inside Stable Diffusion*: load any supported pipeline with
one call, name its U-Net layers the way the papers do, record what happens at every denoising
step, and (chapter by chapter) capture cross-attention, mask the text encoder, swap U-Net
features and transplant seedling noise.
"""

from . import _quiet

_quiet.install()

from . import metrics, scorers, transplant  # modules: sdprobe.transplant.transplant is the function

from .attention import AttentionTrace, WordNotInPromptError, trace_attention
from .conditioning import PromptTooLongError
from .layers import Layer, layer_map, resolve_layers, text_layers
from .models import ModelNotAvailableError, family_of, load_pipeline, model_label
from .swap import FeatureStore, StoreMismatchError, estimate_store_nbytes, record_features, swap_features
from .textmask import (
    MASK_KINDS, PromptEmbeds, PromptLayout,
    build_mask, encode_prompts, generate_per_prompt, mask_figure, prompt_layout,
)
from .trajectory import Trajectory, record_trajectory

__version__ = "0.1.0"

__all__ = [
    "AttentionTrace",
    "WordNotInPromptError",
    "trace_attention",
    "FeatureStore",
    "StoreMismatchError",
    "estimate_store_nbytes",
    "record_features",
    "swap_features",
    "MASK_KINDS",
    "PromptEmbeds",
    "PromptLayout",
    "PromptTooLongError",
    "build_mask",
    "encode_prompts",
    "generate_per_prompt",
    "mask_figure",
    "prompt_layout",
    "Layer",
    "ModelNotAvailableError",
    "Trajectory",
    "family_of",
    "layer_map",
    "load_pipeline",
    "model_label",
    "record_trajectory",
    "resolve_layers",
    "text_layers",
]
