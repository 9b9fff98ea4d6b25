# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # How the toy model was made
#
# Every chapter of this book runs by default on `toy`, a Stable Diffusion in miniature that ships
# with the book. It is built from the same diffusers and transformers classes as Stable Diffusion
# 1.x (an `AutoencoderKL`, a `UNet2DConditionModel` with the same sixteen cross-attention blocks,
# a `CLIPTextModel` with a 77-token context, SD's noise schedule) and it was trained from scratch,
# on two CPU cores, on a world of simple scenes that we generate ourselves. This chapter shows
# that world, the model, how it was trained, and how well it draws what it is asked for, judged
# by the world's own ground truth.
#
# Retrain it with `make toy` (`python -m sdprobe.toy.train`): everything is drawn from seeds,
# so the run is reproducible, and checkpoints let an interrupted run resume.

# %%
# Colab only: fetch the project and set it up beside Colab's own torch (skipped elsewhere).
import os
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run("git clone -q --depth 1 https://github.com/sdprobe/inside-stable-diffusion /content/isd"
                   " && python /content/isd/lib/sdprobe/colab_setup.py", shell=True, check=True)
    sys.path.insert(0, "/content/isd/lib")

# %% tags=["parameters"]
model = "toy"  # the model judged in the last section; "toy" is the shipped one
seed = 0
world_samples = 12  # scenes shown from the world
vae_steps = 6  # the live training run below (the shipped model: 2000)
unet_steps = 6  # (the shipped model: see its training log)
sample_steps = 25  # denoising steps for the images judged below
judged_images = 4  # images per scene kind judged live (the model card used 40)

# %%
import sdprobe
from sdprobe.notebook import Int, Model, check_parameters

P = check_parameters(globals(), {
    "model": Model(), "seed": Int(0, 2**31 - 1), "world_samples": Int(1, 64), "vae_steps": Int(1, 100_000),
    "unet_steps": Int(1, 100_000), "sample_steps": Int(2, 1000), "judged_images": Int(1, 1000),
})

# %%
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from sdprobe import plots
from sdprobe.paths import MODELS_DIR
from sdprobe.toy import train
from sdprobe.toy.evaluate import TARGETS, evaluation_prompts, judge, targets_met
from sdprobe.toy.world import BACKGROUNDS, PALETTE, SHAPES, sample_scene

TOY = MODELS_DIR / "toy"

# %% [markdown]
# ## 1. The world
#
# A scene is a background (field, river, snow, sky) with one to three flat-coloured objects:
# five shapes, six palette colours, three kinds of scene (one object, two different objects, a
# count of the same object). Each scene is a seed: the same seed draws the same picture, caption,
# masks and boxes on every machine. Training never sees the same scene twice.

# %%
scenes = [sample_scene(P.seed + i) for i in range(P.world_samples)]
plots.image_grid([s.image() for s in scenes], [s.caption.replace(" and ", "\nand ") for s in scenes],
                 cols=min(6, len(scenes)), size=1.8, title="Fig. 1 — scenes of the toy world, with their captions")

# %%
pd.DataFrame({"values": [", ".join(SHAPES), ", ".join(PALETTE), ", ".join(BACKGROUNDS), "1, 2, 3"]},
             index=["shapes", "colours", "backgrounds", "objects per scene"])

# %% [markdown]
# Every scene comes with per-object masks, which is what makes this world useful: a generated
# image can be judged by finding palette-coloured blobs and naming their shapes, and a heat map
# can be compared with where an object really is.

# %%
scene = sample_scene(P.seed + 3, kind="pair")
plots.image_grid([scene.image(), *scene.masks()], ["scene", *[f"{o.colour} {o.shape}" for o in scene.objects]],
                 size=2.0, cmap="gray", title=f"Fig. 2 — ground truth: '{scene.caption}'")

# %% [markdown]
# ## 2. The model
#
# The tokenizer keeps CLIP's format (byte-level BPE, start and end tokens, 77 positions, padded
# with the end token as in SD 1.x) but learns its merges from the world's captions, so every word
# of the world is one token.

# %%
pipe = sdprobe.load_pipeline(P.model, device="cpu")
MODEL = sdprobe.model_label(pipe)
tok = pipe.tokenizer
print(f"vocabulary: {len(tok)} entries; context: {tok.model_max_length} tokens")
print(tok.convert_ids_to_tokens(tok("three white dogs in the snow").input_ids))

# %%
def parameters(module) -> str:
    return f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f} M"


pd.DataFrame({
    "class": [type(pipe.vae).__name__, type(pipe.unet).__name__, type(pipe.text_encoder).__name__,
              type(pipe.scheduler).__name__],
    "parameters": [parameters(pipe.vae), parameters(pipe.unet), parameters(pipe.text_encoder), "—"],
    "shape": [f"128×128×3 ↔ 16×16×4 (scaling {pipe.vae.config.scaling_factor:.3f})",
              f"channels {list(pipe.unet.config.block_out_channels)}, 2 resnets per level",
              f"width {pipe.text_encoder.config.hidden_size}, {pipe.text_encoder.config.num_hidden_layers} layers",
              f"{pipe.scheduler.config.beta_schedule}, {pipe.scheduler.config.num_train_timesteps} steps"],
}, index=["VAE", "U-Net", "text encoder", "scheduler"])

# %% [markdown]
# The U-Net is Stable Diffusion 1.x's U-Net with fewer channels, so the papers' block names mean
# the same thing here: the same sixteen text-conditioned blocks, at a quarter of the resolution.

# %%
print("text-conditioned blocks:", ", ".join(sdprobe.text_layers(pipe.unet)))

# %% [markdown]
# ## 3. Training
#
# Three stages, as in Stable Diffusion: an autoencoder that compresses images 8× per side
# (trained on crops first, then whole scenes; L1 reconstruction, with object pixels weighted 10×,
# plus a small KL term), then the
# U-Net, with the text encoder trained alongside it, to predict the noise added to latents at a
# random timestep (10 % of captions are left empty, which is what classifier-free guidance needs);
# and, on the side, a small CLIP trained contrastively on scenes and captions, used only to
# score images. The curves below are the shipped model's.
#
# One lesson from building it: group normalisation needs several channels per group. Our first
# VAE had 16 channels in 16 groups at full resolution; each channel was then normalised on its
# own, which erases its mean over the image, and with it the colour of every flat region. That
# VAE turned red objects black and every background pale blue. Four channels per group, as in
# SD's own VAE (128 channels, 32 groups), fixed it.

# %%
log = json.loads((TOY / "training_log.json").read_text())
for stage, key, label in (("vae", "l1", "L1 reconstruction"), ("unet", "loss", "noise-prediction MSE"),
                          ("clip", "loss", "contrastive loss")):
    if stage in log:
        rows = log[stage]
        display(plots.line_plot([r["step"] for r in rows], {label: [r[key] for r in rows]}, xlabel="step",
                                ylabel=label, title=f"Fig. 3 — {stage} training ({label})", size=(5.5, 2.6)))

# %%
timings = [json.loads(line) for line in (TOY / "timings.jsonl").read_text().splitlines()] if (TOY / "timings.jsonl").is_file() else []
pd.DataFrame(timings).set_index("stage") if timings else "no timings shipped"

# %% [markdown]
# The same code, run for a handful of steps from scratch right here (the parameters
# `vae_steps` and `unet_steps`; the `paper` preset of this chapter repeats the full run):

# %%
with tempfile.TemporaryDirectory() as work:
    torch.manual_seed(P.seed)
    train.train_vae(steps=P.vae_steps, work=Path(work))
    train.train_unet(steps=P.unet_steps, work=Path(work), vae_from=Path(work), milestones=(), pool_size=64)
    live = {name: [json.loads(line) for line in (Path(work) / f"{name}.jsonl").read_text().splitlines()]
            for name in ("vae", "unet")}
print("VAE L1 by step:", [round(r["l1"], 3) for r in live["vae"]])
print("U-Net loss by step:", [round(r["loss"], 3) for r in live["unet"]])

# %% [markdown]
# What the model drew for four fixed prompts as training went on (20 PNDM steps, guidance 7.5):

# %%
strips = sorted((TOY / "samples").glob("step*.png"))
plots.image_grid([Image.open(p) for p in strips], [f"after {int(p.stem[4:])} steps" for p in strips], cols=1,
                 size=2.2 if strips else 1, title="Fig. 4 — " + " | ".join(train.SAMPLE_PROMPTS))

# %% [markdown]
# ## 4. How well it draws what it is asked for
#
# The judge parses the prompt, segments the image by palette colour and names each blob's
# shape. An image is *correct* when every requested object is there, in its colour, in the asked
# number. For two-object prompts we also count the attribute-binding failures that the seedling
# transplant chapter attacks: an object missing, or the two colours swapped. Prompts come from
# held-out seeds. The model card's table (40 images per kind):

# %%
card = json.loads((TOY / "evaluation.json").read_text())
pd.DataFrame(card["kinds"]).T

# %% [markdown]
# And a few judged live, to see the judge at work:

# %%
shown, titles = [], []
for kind in ("single", "pair", "count"):
    prompts = evaluation_prompts(kind, P.judged_images)
    images = pipe(prompts, num_inference_steps=P.sample_steps,
                  generator=[torch.Generator().manual_seed(P.seed + k) for k in range(len(prompts))]).images
    for image, prompt in zip(images, prompts):
        verdict = judge(image, prompt)
        shown.append(image)
        titles.append(("✓ " if verdict.correct else "✗ ") + prompt.replace(" and ", "\nand "))
plots.image_grid(shown, titles, cols=P.judged_images, size=1.9, title=f"Fig. 5 — judged samples ({MODEL})")

# %% [markdown]
# ## Reproduction report
#
# The targets the book set for its toy model, and what the shipped model reached.

# %%
kinds, met = card["kinds"], targets_met(card)
verdict = {True: "met", False: "not met"}
sdprobe.notebook.reproduction_report([
    {"what": "single object in the right colour", "paper": f"≥ {TARGETS['single']:.0%}", "ours": f"{kinds['single']['correct']:.0%}",
     "model": "toy", "verdict": verdict[met["single"]]},
    {"what": "two coloured objects both right", "paper": f"≥ {TARGETS['pair']:.0%}", "ours": f"{kinds['pair']['correct']:.0%}",
     "model": "toy", "verdict": verdict[met["pair"]]},
    {"what": "two-object failures", "paper": "report them",
     "ours": f"missing {kinds['pair']['missing_object_rate']:.0%}, colour swap {kinds['pair']['colour_swap_rate']:.0%}",
     "model": "toy", "verdict": "reported"},
    {"what": "counts two and three right", "paper": f"≥ {TARGETS['count']:.0%}", "ours": f"{kinds['count']['correct']:.0%}",
     "model": "toy", "verdict": verdict[met["count"]]},
    {"what": f"object word's heat map vs the object (threshold {kinds['single']['heatmap_threshold']})",
     "paper": f"IoU ≥ {TARGETS['heatmap_iou']}", "ours": f"IoU {kinds['single']['heatmap_iou']:.2f} (mean of {kinds['single']['heatmap_images']})",
     "model": "toy", "verdict": verdict[met["heatmap_iou"]]},
])
