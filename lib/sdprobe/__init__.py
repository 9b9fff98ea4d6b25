"""sdprobe: open up Stable Diffusion.

The thin library behind the book *Inside Stable Diffusion*. Its rooms:

* ``sdprobe.models``: load any supported pipeline with one call, name its U-Net layers the way the
  papers do, pass between pixels and latents, look words up among the prompt's tokens;
* ``sdprobe.probes``: what watches or changes a generation, all through one hook layer
  (:mod:`sdprobe.probes.hooks`): cross-attention traces, trajectories, text-encoder masks, U-Net
  feature swaps, the seedling transplant;
* ``sdprobe.world``: the toy world the embedded model was trained on, and its exact judge;
* ``sdprobe.analysis``: heat-map arithmetic, metrics, statistics, claims, judges, scorers;
* ``sdprobe.experiments``: each chapter's measurement, in batches, judged and tested;
* ``sdprobe.book``: the chapters' plumbing: checked parameters, reports, figures, batch reruns;
* ``sdprobe.toy``: the embedded toy model's architecture, training and evaluation.

The names below, the library's probes and models, are importable from ``sdprobe`` directly
(figures and tables stay in ``sdprobe.book``). ``import sdprobe`` loads neither matplotlib nor
pandas; the modules that draw or tabulate are imported when first used.

**Steps**, everywhere in the library: one step is one U-Net call, numbered from 0 within a
pipeline call (PNDM makes ``steps + 1`` of them, every other scheduler ``steps``); see
:mod:`sdprobe.probes.hooks`.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from sdprobe import _quiet

_quiet.install()

__version__ = "0.3.0"  # the one statement of the version; pyproject.toml reads it

#: Where each top-level name lives. Nothing is imported until a name is first used, so
#: ``import sdprobe.book.notebook`` (every chapter's first cell, every batch run) does not pay for
#: diffusers, and ``import sdprobe`` loads neither matplotlib nor pandas.
_NAMES = {
    "ModelNotAvailableError": "sdprobe.models", "family_of": "sdprobe.models", "load_pipeline": "sdprobe.models",
    "model_label": "sdprobe.models",
    "Layer": "sdprobe.models.layers", "layer_map": "sdprobe.models.layers", "resolve_layers": "sdprobe.models.layers",
    "text_layers": "sdprobe.models.layers",
    "PromptTooLongError": "sdprobe.models.tokens", "WordNotInPromptError": "sdprobe.models.tokens",
    "AttentionTrace": "sdprobe.probes.attention", "trace_attention": "sdprobe.probes.attention",
    "SecondCallError": "sdprobe.probes.hooks",
    "FeatureStore": "sdprobe.probes.swap", "StoreMismatchError": "sdprobe.probes.swap",
    "estimate_store_nbytes": "sdprobe.probes.swap", "record_features": "sdprobe.probes.swap",
    "swap_features": "sdprobe.probes.swap",
    "MASK_KINDS": "sdprobe.probes.textmask", "PromptEmbeds": "sdprobe.probes.textmask",
    "PromptLayout": "sdprobe.probes.textmask", "build_mask": "sdprobe.probes.textmask",
    "encode_prompts": "sdprobe.probes.textmask", "generate_per_prompt": "sdprobe.probes.textmask",
    "prompt_layout": "sdprobe.probes.textmask",
    "Trajectory": "sdprobe.probes.trajectory", "record_trajectory": "sdprobe.probes.trajectory",
}

#: The rooms, reachable as attributes (``sdprobe.analysis``); their modules load on first use.
_MODULES = {room: f"sdprobe.{room}" for room in ("models", "world", "analysis", "probes", "experiments", "book", "toy")}


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        value = getattr(import_module(_NAMES[name]), name)
    elif name in _MODULES:
        value = import_module(_MODULES[name])
    else:
        raise AttributeError(f"module 'sdprobe' has no attribute {name!r}")
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_NAMES, *_MODULES})


if TYPE_CHECKING:  # what editors and type checkers see
    from sdprobe.models import ModelNotAvailableError, family_of, load_pipeline, model_label
    from sdprobe.models.layers import Layer, layer_map, resolve_layers, text_layers
    from sdprobe.models.tokens import PromptTooLongError, WordNotInPromptError
    from sdprobe.probes.attention import AttentionTrace, trace_attention
    from sdprobe.probes.hooks import SecondCallError
    from sdprobe.probes.swap import (
        FeatureStore, StoreMismatchError, estimate_store_nbytes, record_features, swap_features,
    )
    from sdprobe.probes.textmask import (
        MASK_KINDS, PromptEmbeds, PromptLayout, build_mask, encode_prompts, generate_per_prompt, prompt_layout,
    )
    from sdprobe.probes.trajectory import Trajectory, record_trajectory


__all__ = [
    "AttentionTrace",
    "FeatureStore",
    "Layer",
    "MASK_KINDS",
    "ModelNotAvailableError",
    "PromptEmbeds",
    "PromptLayout",
    "PromptTooLongError",
    "SecondCallError",
    "StoreMismatchError",
    "Trajectory",
    "WordNotInPromptError",
    "build_mask",
    "encode_prompts",
    "estimate_store_nbytes",
    "family_of",
    "generate_per_prompt",
    "layer_map",
    "load_pipeline",
    "model_label",
    "prompt_layout",
    "record_features",
    "record_trajectory",
    "resolve_layers",
    "swap_features",
    "text_layers",
    "trace_attention",
]
