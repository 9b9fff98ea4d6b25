"""sdprobe: open up Stable Diffusion.

The thin library behind the book *Inside Stable Diffusion*. Its rooms:

* ``sdprobe.models``: load any supported pipeline with one call, name its U-Net layers the way the
  papers do, pass between pixels and latents, look words up among the prompt's tokens;
* ``sdprobe.probes``: what watches or changes a generation, all through one hook layer
  (:mod:`sdprobe.probes.hooks`): cross-attention traces, trajectories, text-encoder masks, U-Net
  feature swaps, the seedling transplant;
* ``sdprobe.analysis``: heat-map arithmetic, metrics, statistics, edit judges, scorers;
* ``sdprobe.book``: the chapters' plumbing: checked parameters, reports, figures, batch reruns;
* ``sdprobe.toy``: the embedded toy model's world, training and evaluation.

The names below are importable from ``sdprobe`` directly. ``import sdprobe`` loads neither
matplotlib nor pandas; the modules that draw or tabulate are imported when first used.

**Steps**, everywhere in the library: one step is one U-Net call, numbered from 0 within a
pipeline call (PNDM makes ``steps + 1`` of them, every other scheduler ``steps``); see
:mod:`sdprobe.probes.hooks`.
"""

from importlib import import_module
from typing import Any

from sdprobe import _quiet

_quiet.install()

from sdprobe.models import ModelNotAvailableError, family_of, load_pipeline, model_label  # noqa: E402
from sdprobe.models.layers import Layer, layer_map, resolve_layers, text_layers  # noqa: E402
from sdprobe.models.tokens import PromptTooLongError, WordNotInPromptError  # noqa: E402
from sdprobe.probes.attention import AttentionTrace, trace_attention  # noqa: E402
from sdprobe.probes.hooks import SecondCallError  # noqa: E402
from sdprobe.probes.swap import (  # noqa: E402
    FeatureStore, StoreMismatchError, estimate_store_nbytes, record_features, swap_features,
)
from sdprobe.probes.textmask import (  # noqa: E402
    MASK_KINDS, PromptEmbeds, PromptLayout, build_mask, encode_prompts, generate_per_prompt, prompt_layout,
)
from sdprobe.probes.trajectory import Trajectory, record_trajectory  # noqa: E402

__version__ = "0.2.0"

#: Names reached as ``sdprobe.<name>`` but loaded only when first used (they pull in matplotlib,
#: pandas or papermill): the modules of the rooms by their short names, and ``mask_figure``.
_LAZY = {
    "analysis": "sdprobe.analysis", "book": "sdprobe.book", "models": "sdprobe.models", "probes": "sdprobe.probes",
    "toy": "sdprobe.toy", "notebook": "sdprobe.book.notebook", "plots": "sdprobe.book.plots",
    "runs": "sdprobe.book.runs", "metrics": "sdprobe.analysis.metrics", "heatmaps": "sdprobe.analysis.heatmaps",
    "stats": "sdprobe.analysis.stats", "scorers": "sdprobe.analysis.scorers", "transplant": "sdprobe.probes.transplant",
    "attention": "sdprobe.probes.attention", "trajectory": "sdprobe.probes.trajectory", "swap": "sdprobe.probes.swap",
    "textmask": "sdprobe.probes.textmask",
}


def __getattr__(name: str) -> Any:
    if name == "mask_figure":
        return import_module("sdprobe.book.plots").mask_figure
    if name in _LAZY:
        return import_module(_LAZY[name])
    raise AttributeError(f"module 'sdprobe' has no attribute {name!r}")


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
    "mask_figure",
    "model_label",
    "prompt_layout",
    "record_features",
    "record_trajectory",
    "resolve_layers",
    "swap_features",
    "text_layers",
    "trace_attention",
]
