"""Place objects by transplanting seedling noise (TAUE), with TKG-DM's chroma-key noise.

* :mod:`~sdprobe.probes.transplant.layout`: objects, their prompts and boxes;
* :mod:`~sdprobe.probes.transplant.chroma_key`: the green-back starting noise;
* :mod:`~sdprobe.probes.transplant.seedlings`: seedlings and the transplant itself.

Region search is :func:`sdprobe.analysis.heatmaps.search_region`; the Attention Assignment Score
is :func:`sdprobe.analysis.metrics.attention_assignment_score`.
"""

from sdprobe.probes.transplant.chroma_key import (
    CHROMA_CHANNELS, SHIFT_TARGETS, chroma_key_noise, default_shift_target, gaussian_box_mask, positive_share,
    shift_channels,
)
from sdprobe.probes.transplant.layout import Box, LayoutPrompt, PlacedObject, load_layout_prompts
from sdprobe.probes.transplant.seedlings import (
    Seedlings, TransplantResult, make_seedlings, paste_seedlings, schedule_length, seedling_provenance,
    transplant_seedlings,
)

__all__ = [
    "CHROMA_CHANNELS", "SHIFT_TARGETS", "Box", "LayoutPrompt", "PlacedObject", "Seedlings", "TransplantResult",
    "chroma_key_noise", "default_shift_target", "gaussian_box_mask", "load_layout_prompts", "make_seedlings",
    "paste_seedlings", "positive_share", "schedule_length", "seedling_provenance", "shift_channels",
    "transplant_seedlings",
]
