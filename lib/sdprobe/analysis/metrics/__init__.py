"""Metrics shared by the chapters: placement IoU, CLIP scores, judged error rates, similarities.

Every function states its units and what it does with the edge cases (empty masks, constant maps,
a single item). Models are always passed in — nothing is downloaded here:

* :func:`clip_score` / :func:`clip_image_similarity` take any ``transformers`` ``CLIPModel`` with
  its processor (or tokenizer and image processor): the toy model's tiny CLIP on toy, e.g.
  ``openai/clip-vit-base-patch16`` or torchmetrics' default ``openai/clip-vit-large-patch14`` on
  real runs. State which one a table used.
* :func:`placement_iou` takes a predicted mask or box, or a detector callable (an open-vocabulary
  detector such as OWLv2 for real models, the world's segmentation on toy).

The metrics live in one module per family (``overlap``, ``clip``, ``rates``, ``similarity``,
``assignment``) and are imported from here.
"""

from sdprobe.analysis.metrics.assignment import (
    AttentionAssignment,
    assignment_pairs,
    attention_assignment_score,
)
from sdprobe.analysis.metrics.clip import (
    clip_image_embeddings,
    clip_image_similarity,
    clip_score,
    clip_text_embeddings,
)
from sdprobe.analysis.metrics.overlap import (
    box_iou,
    detector_from_pipeline,
    mask_iou,
    mask_to_box,
    per_object_iou,
    placement_iou,
)
from sdprobe.analysis.metrics.rates import (
    ImageJudgement,
    colour_swap_rate,
    missing_object_rate,
)
from sdprobe.analysis.metrics.similarity import (
    background_mse,
    mean_pairwise_similarity,
    pearson_r,
)

__all__ = [
    "AttentionAssignment",
    "ImageJudgement",
    "assignment_pairs",
    "attention_assignment_score",
    "background_mse",
    "box_iou",
    "clip_image_embeddings",
    "clip_image_similarity",
    "clip_score",
    "clip_text_embeddings",
    "colour_swap_rate",
    "detector_from_pipeline",
    "mask_iou",
    "mask_to_box",
    "per_object_iou",
    "mean_pairwise_similarity",
    "missing_object_rate",
    "pearson_r",
    "placement_iou",
]
