"""Write the toy model's card, ``data/models/toy/README.md``, from what training and evaluation
left in the model folder (training log, timings, evaluation) — every number in it is measured.

    python -m sdprobe.toy.card
"""

from __future__ import annotations

import json
from pathlib import Path

from ..paths import MODELS_DIR
from ..plots import line_plot
from . import architecture as arch
from .evaluate import TARGETS, targets_met
from .world import BACKGROUNDS, PALETTE, SHAPES

__all__ = ["write_card"]


def _params(module) -> str:
    return f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f} M"


def _curves(folder: Path, log: dict) -> list[str]:
    figures = folder / "figures"
    figures.mkdir(exist_ok=True)
    names = []
    for stage, key in (("vae", "l1"), ("unet", "loss"), ("clip", "loss")):
        if stage not in log:
            continue
        rows = log[stage]
        fig = line_plot([r["step"] for r in rows], {key: [r[key] for r in rows]}, xlabel="step", ylabel=key,
                        title=f"{stage} training", size=(5.0, 2.6))
        fig.savefig(figures / f"{stage}.png", dpi=80, metadata={"Software": None})
        names.append(f"figures/{stage}.png")
    return names


def _at_least(share: float) -> str:
    return f"≥ {share * 100:.0f} %"


def _limits(evaluation: dict, steps: dict) -> list[str]:
    """Which targets the shipped model meets, and what limits it (as measured)."""
    kinds = evaluation["kinds"]
    names = {"single": "one object", "pair": "two coloured objects", "count": "counts", "heatmap_iou": "heat map"}
    missed = [names[target] for target, met in targets_met(evaluation).items() if not met]
    if not missed:
        return ["All four targets are met.", ""]
    pair = kinds["pair"]
    complete = round(pair["images"] * (1 - pair["missing_object_rate"]))
    return [
        f"Targets missed: {', '.join(missed)}. What limits the model, as far as we measured:",
        "",
        f"- **Shapes, in the VAE already.** Colours survive the autoencoder (four channels per norm group), "
        f"but the judge reads only {evaluation['vae']['correct']:.0%} of held-out scenes correctly after an "
        "encode–decode round trip: at 8× downsampling a 20-pixel star or triangle spans two or three latent "
        "cells and comes back rounded, and the judge then names it a circle. What the VAE loses, the U-Net "
        "cannot draw.",
        f"- **Shapes, in the U-Net.** After {steps.get('unet', '—')} steps of 32 scenes the U-Net draws blobs "
        "in the asked colours rather than crisp shapes (see the samples through training); one-object prompts "
        f"are judged correct in {kinds['single']['correct']:.0%} of images. With two objects the judge usually "
        f"cannot name one of the two shapes (missing-object rate {pair['missing_object_rate']:.0%}); the "
        f"colour-swap rate counts "
        f"only images with both objects present ({complete} of {pair['images']} here), so it says little.",
        f"- **Heat maps** come close: the object word's mask reaches a mean IoU of "
        f"{kinds['single']['heatmap_iou']:.2f} with the object the judge found (target {TARGETS['heatmap_iou']}).",
        "",
        "Next steps, in order: larger objects in the world (or 256-pixel scenes), so that a shape spans more "
        "latent cells while the VAE keeps SD's 8× downsampling; then a longer U-Net run.",
        "",
    ]


def write_card(folder: Path = MODELS_DIR / "toy") -> Path:
    """Compose the model card from the folder's artefacts; return its path."""
    from ..models import load_pipeline

    pipe = load_pipeline("toy", device="cpu")
    log = json.loads((folder / "training_log.json").read_text())
    evaluation = json.loads((folder / "evaluation.json").read_text())
    timings = [json.loads(line) for line in (folder / "timings.jsonl").read_text().splitlines()] \
        if (folder / "timings.jsonl").is_file() else []
    steps = {stage: rows[-1]["step"] for stage, rows in log.items() if rows}
    size = sum(p.stat().st_size for p in folder.rglob("*.safetensors")) / 2**20
    curves = _curves(folder, log)
    kinds = evaluation["kinds"]
    single = kinds["single"]
    lines = [
        "# toy — a miniature Stable Diffusion trained on a generated world",
        "",
        "The embedded default model of *Inside Stable Diffusion*. Same classes as Stable Diffusion 1.x "
        "(`StableDiffusionPipeline`: `AutoencoderKL`, `UNet2DConditionModel`, `CLIPTextModel` + "
        "`CLIPTokenizer`, `PNDMScheduler`), trained from scratch on CPU by `python -m sdprobe.toy.train` "
        "(`make toy`). Load it offline with `sdprobe.load_pipeline(\"toy\")` or "
        "`StableDiffusionPipeline.from_pretrained(\"data/models/toy\")`.",
        "",
        "## The world",
        "",
        f"128 × 128 scenes: a background ({', '.join(BACKGROUNDS)}) and one to three flat-coloured objects "
        f"({', '.join(SHAPES)}; colours {', '.join(PALETTE)}, RGB values in `world.json`). Captions come "
        "from templates (\"a red circle on the field\", \"three blue squares in the snow\", \"a red square and "
        "a white dog\", \"a white dog runs across the field\"). Every scene has per-object masks and boxes, "
        "and is drawn from its seed (`sdprobe.toy.world`); training draws fresh scenes, evaluation uses "
        "held-out seeds.",
        "",
        "## Architecture",
        "",
        "| component | class | parameters | settings |",
        "|---|---|---|---|",
        f"| VAE | AutoencoderKL | {_params(pipe.vae)} | 8× downsampling, 4 latent channels, channels {arch.VAE['block_out_channels']}, scaling factor {pipe.vae.config.scaling_factor:.4f} |",
        f"| U-Net | UNet2DConditionModel | {_params(pipe.unet)} | SD 1.x layout (IN0–IN11, MID, OUT0–OUT11; 16 cross-attention blocks at 16, 8 and 4 cells), channels {arch.UNET['block_out_channels']} |",
        f"| text encoder | CLIPTextModel | {_params(pipe.text_encoder)} | width {arch.TEXT_WIDTH}, {arch.CLIP_TEXT['num_hidden_layers']} layers, 77 positions, trained with the U-Net |",
        f"| tokenizer | CLIPTokenizer | — | byte-level BPE learned from the captions, {len(pipe.tokenizer)} entries |",
        "| scheduler | PNDMScheduler | — | scaled-linear betas 0.00085–0.012, 1000 steps, epsilon prediction (DDIM, Euler, LMS usable) |",
        "| CLIP (for scores) | CLIPModel in `clip/` | — | image 64 px, patch 8; trained contrastively on scenes and captions |",
        "",
        f"Weights: {size:.1f} MB of fp16 safetensors.",
        "",
        "## Training",
        "",
        "| stage | steps | wall time | threads |",
        "|---|---|---|---|",
    ]
    for stage in ("vae", "clip", "unet"):
        runs = [t for t in timings if t["stage"] == stage]
        if runs:
            threads = "/".join(sorted({str(t["threads"]) for t in runs}))
            lines.append(f"| {stage} | {steps.get(stage, '—')} | {sum(t['seconds'] for t in runs) / 60:.1f} min | {threads} |")
    lines += [
        "",
        "Wall times add up the stage runs that ran to completion on a two-core CPU machine shared with "
        "other work (parts of runs that were interrupted and then resumed from a checkpoint are not "
        "included). The VAE trains on 64-pixel crops first, then on whole scenes, with object pixels weighted "
        "10× throughout (they are few, and their colours are what the judge reads); its group norms have four "
        "channels per group, as in SD's VAE, since one channel per group erases the colour of flat regions. "
        "The U-Net and the text encoder train together on latents of 8,000 scenes (a fresh sample "
        "of each scene's latent distribution at every use), batch 32, AdamW, cosine schedule, 10 % empty "
        "captions for classifier-free guidance.",
        "",
        *[f"![{Path(c).stem} curve]({c})" for c in curves],
        "",
        "## Quality, judged by the world's own segmentation",
        "",
        f"{evaluation['kinds']['single']['images']} held-out prompts per kind, {evaluation['steps']} PNDM steps, "
        f"guidance {evaluation['guidance']}; `python -m sdprobe.toy.evaluate`.",
        "",
        "| prompts | correct | target | other |",
        "|---|---|---|---|",
        f"| one object | {kinds['single']['correct']:.0%} | {_at_least(TARGETS['single'])} | |",
        f"| two coloured objects | {kinds['pair']['correct']:.0%} | {_at_least(TARGETS['pair'])} | missing object {kinds['pair']['missing_object_rate']:.0%}, colour swap {kinds['pair']['colour_swap_rate']:.0%} |",
        f"| counts two and three | {kinds['count']['correct']:.0%} | {_at_least(TARGETS['count'])} | |",
        f"| VAE alone: held-out scenes encoded and decoded | {evaluation['vae']['correct']:.0%} | — | "
        f"{evaluation['vae']['images']} scenes of all three kinds; what the judge can read after the autoencoder |",
        f"| heat map of the object word (one-object prompts) | IoU {single['heatmap_iou']:.2f} | IoU ≥ {TARGETS['heatmap_iou']} | "
        f"{single['heatmap_iou_at_least_0.5']:.0%} of {single['heatmap_images']} images with the object found reach 0.5; "
        f"DAAM mask at threshold {single['heatmap_threshold']} against the object the judge found |",
        "",
        *_limits(evaluation, steps),
        "`python -m sdprobe.toy.train --vae-steps N --unet-steps N` resumes from the checkpoints.",
        "",
    ]
    path = folder / "README.md"
    path.write_text("\n".join(lines))
    return path


if __name__ == "__main__":
    print(write_card())
