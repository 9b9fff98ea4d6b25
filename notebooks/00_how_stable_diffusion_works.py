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
# # How Stable Diffusion works
#
# ```{glue} finding
# ```
#
# A widely shared explainer of 2022 told the story of Stable Diffusion in a dozen steps: diffusion
# adds a little noise to an image again and again; a network learns to undo one step of it; applied
# over and over, that network turns pure noise into a picture; the whole thing runs in a small
# *latent* space instead of on pixels; and a prompt steers every step through cross-attention.
# This chapter turns each of those steps into something you can run and look at.
#
# **What you will see.** A picture drowning in noise step by step, and the one-jump formula that
# gets there directly; the denoising loop as a player you can scrub, with the network's running
# guess of the final picture beside the noisy latent; how small the latent is, and what the
# autoencoder keeps; the prompt as tokens and the cross-attention layers that read it; and
# classifier-free guidance measured on 64 images per scale — how often the picture follows the
# prompt, and how much the seed still changes.
#
# Everything below goes through the same library calls whatever the model: change `model` in the
# parameters cell to `"CompVis/stable-diffusion-v1-4"` on a GPU and the same figures come from the
# real weights.
#
# :::{admonition} At a glance
# - **Objectives:** explain the forward (noising) process and its one-jump formula; follow the
#   denoising loop step by step, with the network's guess $\hat x_0$ beside the noisy latent;
#   say what the latent autoencoder and the cross-attention layers do; read what
#   classifier-free guidance gains and costs, with its uncertainty.
# - **Prerequisites:** none from earlier chapters (this is the first). Python at the level of
#   reading function calls; a little PyTorch (tensors and their shapes) and the idea of a
#   Gaussian help.
# - **Time:** reading about 25 min; running the whole notebook on a CPU (toy model, one core)
#   about 2 min.
# :::

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the Colab set-up code", "code_prompt_hide": "Hide the Colab set-up code"}
# Colab only: fetch the project and set it up beside Colab's own torch
# (skipped elsewhere).
import os
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run(
        "git clone -q --depth 1"
        " https://github.com/sdprobe/inside-stable-diffusion /content/isd"
        " && python /content/isd/lib/sdprobe/book/colab_setup.py",
        shell=True, check=True,
    )
    sys.path.insert(0, "/content/isd/lib")

# %% tags=["parameters"]
# model: "toy", "random:sd1", a local folder, or a Hub id
# such as "CompVis/stable-diffusion-v1-4"
model = "toy"
device = "auto"  # "auto" picks CUDA, then MPS, then the CPU
dtype = "auto"  # "auto": fp16 on a GPU, fp32 on the CPU
seed = 0
steps = 20
guidance = 7.5
height = 128
width = 128
scheduler = "dpm"  # DPM-Solver++ (2M); SD 1.x ships with "pndm"
prompt = "a red dog runs across the field"
other_prompt = "three yellow stars in the snow"
# training timesteps shown in the forward strip
noise_levels = [0, 50, 100, 250, 500, 750, 999]
show_at = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]  # fractions of the way through denoising
guidance_scales = [1.0, 7.5]  # the claims compare the first and the last scale
# the guidance slider of §5: one prompt, four seeds, redrawn at each of these scales
slider_scales = [1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0]
claim_seeds = 4  # seeds per prompt in the measurements (16 prompts each)
# judge: "auto" is the toy world's exact judge on toy, the open-vocabulary one
# (OWLv2, SAM, CLIP) elsewhere
judge = "auto"
# the open-vocabulary judge's models: "auto" (google/owlv2-base-patch16-ensemble,
# facebook/sam-vit-base, openai/clip-vit-large-patch14), a local folder or a Hub id
detector = "auto"
segmenter = "auto"
clip_model = "auto"

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the parameter check", "code_prompt_hide": "Hide the parameter check"}
import sdprobe
from sdprobe.book.notebook import (
    DEVICE, DTYPE, JUDGE, Choice, Float, Int, ListOf, Model, Size, Str,
    check_parameters,
)

P = check_parameters(globals(), {
    "model": Model(), "device": DEVICE, "dtype": DTYPE, "seed": Int(0, 2**63 - 1),
    "steps": Int(2, 1000), "guidance": Float(0.0, 50.0),
    "height": Size(), "width": Size(),
    "scheduler": Choice(("ddim", "pndm", "lms", "euler", "euler-a", "dpm", "ddpm")),
    "prompt": Str(), "other_prompt": Str(),
    "noise_levels": ListOf(Int(0, 999)), "show_at": ListOf(Float(0.0, 1.0)),
    "guidance_scales": ListOf(Float(0.0, 50.0), min_len=2), "claim_seeds": Int(2, 64),
    "slider_scales": ListOf(Float(0.0, 50.0), min_len=2, max_len=12, distinct=True),
    "judge": JUDGE, "detector": Str(), "segmenter": Str(), "clip_model": Str(),
})

# %% tags=["hide-input"] mystnb={"code_prompt_show": "Show the imports and set-up code", "code_prompt_hide": "Hide the imports and set-up code"}
import numpy as np
import pandas as pd
import torch

from sdprobe.analysis import stats
from sdprobe.analysis.claims import claim_row, load_reference
from sdprobe.book import plots
from sdprobe.experiments import denoising
from sdprobe.book.tables import (
    cross_attention_table, prompt_tokens, text_embedding_shapes,
)
from sdprobe.models.diffusion import add_noise, noise_schedule, unet_flops
from sdprobe.models.latents import (
    decode_latents, encode_images, images_to_tensor, latent_scale_factor,
)
from sdprobe.book.scenes import demo_scene
from sdprobe.probes.trajectory import record_trajectory, trajectory_gap
from sdprobe.analysis.judges import StructuredPrompt, load_prompt_set, make_judge
from sdprobe.book.tables import show_table
from sdprobe.models.tokens import check_prompt_length
from sdprobe.probes.hooks import execution_device
from sdprobe.toy.evaluate import open_prompts

pipe = sdprobe.load_pipeline(
    P.model, device=P.device, dtype=P.dtype, scheduler=P.scheduler,
)
MODEL = sdprobe.model_label(pipe)
JUDGE = make_judge(P.judge, model=P.model, detector=P.detector, segmenter=P.segmenter,
                   clip_model=P.clip_model, device=execution_device(pipe))
# the sixteen open prompts of the measurements: the toy world's on toy,
# their real counterparts elsewhere
OPEN = ([StructuredPrompt.toy(text) for text in open_prompts()] if P.model == "toy"
        else load_prompt_set("open_prompts"))
REF = load_reference("00_how_stable_diffusion_works")
for text in (P.prompt, P.other_prompt):  # an over-long prompt is refused, never cut
    check_prompt_length(pipe, text)


def generate(text: str):
    """One image from the shared seed, with its trajectory."""
    with record_trajectory(pipe) as traj:
        image = pipe(text, num_inference_steps=P.steps, guidance_scale=P.guidance,
                     height=P.height, width=P.width,
                     generator=torch.Generator("cpu").manual_seed(P.seed)).images[0]
    return image, traj


show_table(pd.DataFrame(
    {
        "the explainer (Stable Diffusion v1)": [
            "SD v1.x", "512 × 512", "64 × 64 × 4", "1000", "not stated",
            "CLIP ViT-L/14", "none (no measurements)",
        ],
        "this run": [
            MODEL, f"{P.height} × {P.width}",
            f"{P.height // 8} × {P.width // 8} × 4",
            str(pipe.scheduler.config.num_train_timesteps),
            f"{P.steps} ({type(pipe.scheduler).__name__})",
            type(pipe.text_encoder).__name__, JUDGE.name,
        ],
    },
    index=["model", "image", "latent", "training timesteps T", "sampling steps",
           "text encoder", "judge"],
))

# %% [markdown]
# Which model drew the figures of this page is printed in the table above and in every figure
# title. The default, `toy`, is this book's miniature Stable Diffusion (chapter 05): the same
# classes and U-Net layout as SD 1.x, trained on a small world of coloured shapes on four
# backgrounds, at 128 × 128 pixels. Every mechanism below runs exactly as it would on the real
# model; run the notebook with `model="CompVis/stable-diffusion-v1-4"` on a GPU to see it at scale.
#
# ## 1. Diffusion: adding a little noise, many times
#
# The forward process corrupts a clean image $x_0$ over $T = 1000$ steps. Each step mixes in a
# little Gaussian noise with variance $\beta_t$; because Gaussians add up, any step can be reached
# in one jump, $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon$, where
# $\bar\alpha_t = \prod_{s \le t}(1-\beta_s)$. Stable Diffusion's betas grow on a "scaled linear"
# schedule from 0.00085 to 0.012.

# %%
scene = demo_scene(P.height)
strip = add_noise(pipe.scheduler, images_to_tensor(scene)[0], P.noise_levels,
                  generator=torch.Generator().manual_seed(P.seed))
plots.image_grid(
    list(strip), [f"t = {t}" for t in P.noise_levels], size=1.6,
    title="Fig. 1 — the forward process, left to right "
          "(pixel space, one shared noise draw)",
)

# %% tags=["hide-input"] mystnb={"code_prompt_show": "Show the code for Fig. 2", "code_prompt_hide": "Hide the code for Fig. 2"}
sched = noise_schedule(pipe.scheduler)
plots.line_plot(sched["t"],
                {"signal  √ᾱ_t": sched["signal"],
                 "noise  √(1−ᾱ_t)": sched["noise"]},
                xlabel="training timestep t", ylabel="weight in x_t",
                title="Fig. 2 — how much of x₀ survives at each step")

# %%
signal_left = {t: round(float(sched["signal"][t]), 3) for t in (250, 500, 750, 999)}
print("share of the image left: "
      + ", ".join(f"{left} at t = {t}" for t, left in signal_left.items()))
scene_latent = encode_images(pipe, scene)[0]
chains = denoising.forward_chains(scene_latent)
forward_error = denoising.forward_process_error(pipe.scheduler, scene_latent,
                                                seed=P.seed)
print(f"step-by-step noising against the one-jump formula, {chains} chains: "
      f"largest error {forward_error:.4f}")

# %% [markdown]
# By the last step only about 7 % of the original signal is left: $x_T$ is, for practical
# purposes, pure noise. That is where generation starts. The one-jump formula is not an
# approximation: noising a latent 1,000 times in a row, on 128 independent chains, lands on the
# same mean and variance as the formula, up to sampling noise (the line printed above).
#
# ## 2. Denoising: $f(f(\dots f(N, T)\dots, 2), 1)$
#
# The network learns the reverse of one step: given a noisy $x_t$ and $t$, predict the noise in it
# (or, for SD 2.x, the "velocity" $v$). A *scheduler* turns each prediction into the next, slightly
# cleaner latent, so the final latent really is $f$ applied again and again to pure noise $N$. In
# Stable Diffusion $f$ is a U-Net. Recording the loop shows both what the sampler holds at each
# step ($x_t$, top row) and the clean image the network predicts from it at that moment
# ($\hat x_0$, bottom row).

# %%
image, traj = generate(P.prompt)
picks = sorted({min(len(traj) - 1, round(f * (len(traj) - 1))) for f in P.show_at},
               reverse=False)
row_xt = [traj.decode(pipe, i)[0] for i in picks]
row_x0 = [traj.decode(pipe, i, which="x0")[0] for i in picks]
plots.image_grid(
    row_xt + row_x0,
    [f"x_t, into step {i}" for i in picks] + [f"x̂₀, at step {i}" for i in picks],
    cols=len(picks), size=1.7, keep_rows=True,
    title=f"Fig. 3 — denoising, right to left in the explainer's picture ({MODEL})",
)

# %% [markdown]
# The strip picks a few steps; the player below holds all of them. Drag the slider or press play,
# and watch the two panels meet: $x_t$ (left) carries visible noise until the last steps, while
# the network's guess $\hat x_0$ (right) shows the object and its colour after a few steps and
# then only sharpens.

# %% tags=["hide-input"] mystnb={"code_prompt_show": "Show the code for the player (Fig. 3b)", "code_prompt_hide": "Hide the code for the player (Fig. 3b)"}
plots.player(
    [[traj.decode(pipe, i)[0], traj.decode(pipe, i, which="x0")[0]]
     for i in range(len(traj))],
    ["x_t (what the sampler holds)", "x̂₀ (the network's guess)"],
    [f"step {i} ({i + 1} of {len(traj)})" for i in range(len(traj))],
    title=f"Fig. 3b — {P.prompt!r} ({MODEL})",
)

# %% tags=["hide-input"] mystnb={"code_prompt_show": "Show the code for Fig. 4", "code_prompt_hide": "Hide the code for Fig. 4"}
calls = len(traj) * (2 if P.guidance > 1 else 1)
change = [traj.step_difference(i, i + 1).mean().item() for i in range(len(traj))]
print(f"scheduler steps: {len(traj)}; U-Net evaluations: {calls} "
      "(two per step under classifier-free guidance)")
plots.line_plot(np.arange(len(traj)), {"mean |x_t+1 − x_t|": change},
                xlabel="denoising step (from 0)", ylabel="latent change",
                title="Fig. 4 — how much each application of f changes the latent")

# %% [markdown]
# One image shows the mechanism; a claim about it needs many. The rest of the chapter measures on
# one batch: 16 prompts that leave colour and background open ("a star", "two dogs", …), each
# drawn from 4 seeds at each guidance scale of §5, 64 images per scale, in batches of 32. Within
# a scale, prompts that share a seed share their starting noise. For this section: does the
# predicted clean image $\hat x_0$ converge on the picture finally drawn? We count the images
# whose last $\hat x_0$ lies within 10 % of the first one's distance from the final latent.

# %%
LOW, HIGH = P.guidance_scales[0], P.guidance_scales[-1]
sweep = denoising.guidance_sweep(pipe, OPEN, P.guidance_scales, seeds=P.claim_seeds,
                                 seed=P.seed, steps=P.steps, height=P.height,
                                 width=P.width, batch=32, judge=JUDGE, record=[HIGH])
settled = stats.rate(denoising.x0_settled(sweep.trajectories[HIGH]))
print(f"x̂0 converged in {settled['k']} of {settled['n']} images at s = {HIGH:g} "
      f"(95 % interval {settled['ci'][0]:.0%}–{settled['ci'][1]:.0%})")

# %% [markdown]
# ## 3. The latent space: encoder $\mathcal{E}$ and decoder $\mathcal{D}$
#
# Running a U-Net on 512 × 512 × 3 pixels a hundred times per image is slow. Stable Diffusion's
# key move is to run diffusion on a compressed representation instead: a variational autoencoder
# maps an image $x$ to $z = \mathcal{E}(x)$ with 8× fewer rows and columns and 4 channels, and maps
# latents back with $\mathcal{D}$. Noise is added to, and removed from, $z$.

# %%
z = encode_images(pipe, scene)
recon = decode_latents(pipe, z)[0]
factor = latent_scale_factor(pipe)
pixels, latents = 3 * P.height * P.width, z[0].numel()
err = np.asarray(recon, dtype=np.float64) - np.asarray(scene, dtype=np.float64)
psnr = 10 * np.log10(255.0**2 / np.mean(err**2))
image_shape = tuple(images_to_tensor(scene).shape[1:])
print(f"image {image_shape} -> latent {tuple(z.shape[1:])}: "
      f"{factor}x smaller per side, {pixels / latents:.0f}x fewer numbers; "
      f"reconstruction PSNR {psnr:.1f} dB")
plots.image_grid([scene, recon], ["x", "D(E(x))"], size=2.2,
                 title=f"Fig. 5 — through the VAE and back ({MODEL})")

# %% tags=["hide-input"] mystnb={"code_prompt_show": "Show the code for Fig. 6", "code_prompt_hide": "Hide the code for Fig. 6"}
plots.latent_channels(z[0], title="Fig. 6 — the four channels of z = E(x)")

# %%
flops_latent = unet_flops(pipe, P.height // factor, P.width // factor)
flops_pixel = unet_flops(pipe, P.height, P.width)
print(f"one U-Net call: {flops_latent / 1e9:.3g} GFLOP on the latent grid, "
      f"{flops_pixel / 1e9:.3g} GFLOP on a pixel-sized grid "
      f"({flops_pixel / flops_latent:.0f}x more)")

# %% [markdown]
# ## 4. The prompt enters through cross-attention
#
# The denoiser is really $f(x, t, y)$ with a *context* $y$. For text, $y$ is the prompt run through
# CLIP's text encoder: 77 token positions, each a vector. Inside the U-Net, cross-attention layers
# let every position of the image features (the queries) read from those 77 vectors (keys and
# values). The explainer names two ways to inject context, concatenation and cross-attention; text
# takes the second path, while the timestep is added to the features, and image-shaped contexts
# (an inpainting mask, say) are concatenated to the latent.

# %%
show_table(prompt_tokens(pipe, P.prompt))

# %%
for encoder, shape in text_embedding_shapes(pipe, P.prompt).items():
    n_prompts, positions, numbers = shape
    print(f"{encoder} hands the U-Net a {n_prompts} × {positions} × {numbers} "
          f"embedding: for {n_prompts} prompt, {positions} token positions "
          f"of {numbers} numbers each")
show_table(cross_attention_table(pipe))

# %% [markdown]
# Every chapter names the U-Net's blocks as the papers do, `IN0`…`IN11`, `MID` and
# `OUT0`…`OUT11` (the original LDM code's order; `sdprobe.models.layers` maps them to diffusers'
# modules). Fig. 6b draws them: the encoder halves the feature map three times, the decoder
# doubles it back and concatenates the encoder's features of the same size (the skip
# connections), and the 16 orange blocks are those whose cross-attention reads the prompt. The
# toy has SD 1.x's layout with narrower features; each row gives both.

# %% tags=["hide-input"] mystnb={"code_prompt_show": "Show the code for Fig. 6b", "code_prompt_hide": "Hide the code for Fig. 6b"}
import json

from sdprobe.models.layers import layer_map
from sdprobe.paths import CONFIGS_DIR

sd1 = json.loads((CONFIGS_DIR / "sd1" / "unet.json").read_text())
def blocks(cfg) -> list:
    return [(b.name, b.scale, b.is_text) for b in layer_map(cfg).values()]


layouts = {"SD 1.x (512²)": sd1}
if blocks(pipe.unet) == blocks(sd1):  # the same layout as SD 1.x: show its sizes too
    layouts[MODEL] = dict(pipe.unet.config)
plots.unet_diagram(layouts,
                   title="Fig. 6b — the U-Net's blocks under the papers' names")

# %% [markdown]
# Same seed, same starting noise, two prompts: the trajectories start identical and part ways as
# the text pulls each towards its own picture. Fig. 8 follows the latents $x_t$ after each step.
# (The predicted $\hat x_0$ would mislead here: early on it divides the noise estimate's differences
# by $\sqrt{\bar\alpha_t}$, a few hundredths, so it differs most at the very first step.)

# %%
other, traj_other = generate(P.other_prompt)
gap = trajectory_gap(traj, traj_other, which="latent")
half = int(np.argmax(gap >= gap[-1] / 2))
plots.image_grid([image, other], [P.prompt, P.other_prompt], size=2.4,
                 title=f"Fig. 7 — one noise, two prompts ({MODEL})")

# %% tags=["hide-input"] mystnb={"code_prompt_show": "Show the code for Fig. 8", "code_prompt_hide": "Hide the code for Fig. 8"}
print(f"the two latents are half as far apart as at the end after step {half} "
      f"(steps 0–{len(traj) - 1})")
plots.line_plot(np.arange(len(gap)),
                {"mean |x_t(prompt A) − x_t(prompt B)|, after the step": gap},
                xlabel="denoising step (from 0)", ylabel="gap",
                title="Fig. 8 — where the two prompts part ways",
                marks={"half": half})

# %% [markdown]
# That is one seed and one pair of prompts. Over the batch, each prompt is paired with the next
# one drawn from the same noise (64 pairs at the highest scale), and the step at which their
# latents are half as far apart as at the end is read as a fraction of the run:

# %%
parting = denoising.parting_steps(sweep.trajectories[HIGH], len(sweep.prompts),
                                  P.claim_seeds) / (P.steps - 1)
parted = stats.mean_ci(parting)
print(f"half-way apart at {parted['mean']:.0%} of the run on average (95 % interval "
      f"{parted['ci'][0]:.0%}–{parted['ci'][1]:.0%}; earliest {parting.min():.0%}, "
      f"latest {parting.max():.0%}; {len(parting)} pairs)")

# %% [markdown]
# Over the 64 pairs the two latents are half-way apart a little before the middle of the run,
# and in every pair within the first 55 % of it: the prompt is at work from the early steps, when
# the image's layout and colours are still being decided, not only in the late ones that add
# detail.

# %% [markdown]
# ## 5. Classifier-free guidance
#
# At every step the U-Net runs twice, with the prompt and with an empty prompt, and the sampler
# extrapolates from the second towards the first: $\hat\varepsilon = \varepsilon_\varnothing + s\,
# (\varepsilon_y - \varepsilon_\varnothing)$. The scale $s$ trades variety for faithfulness to the
# prompt; $s = 1$ is the plain conditional model.
#
# The explainer's claim has two halves, and we measure both on the 64 images per scale drawn above:
# *faithfulness*, the share of images the toy world's judge passes (the asked shape, in the asked
# number), and *variety*, the share of seed pairs of one prompt whose pictures differ in the
# colours or background the judge sees. All 16 prompts leave colour and background open, so a
# model that keeps its variety draws them differently from seed to seed. (A pixel distance
# between seeds would mislead here: guidance raises contrast, and contrast alone makes
# pixel distances grow.)

# %%
faith = denoising.faithfulness_gain(sweep, LOW, HIGH)
varied = denoising.variety_loss(sweep, LOW, HIGH)
shown = [sweep.images[s][k] for s in (LOW, HIGH) for k in range(P.claim_seeds)]
plots.image_grid(
    shown,
    [f"s = {s:g}, seed {P.seed + k}"
     for s in (LOW, HIGH) for k in range(P.claim_seeds)],
    cols=P.claim_seeds, size=1.7,
    title=f"Fig. 9 — “{sweep.prompts[0]}”, four seeds, "
          f"at two guidance scales ({MODEL})",
)

# %% tags=["hide-input"] mystnb={"code_prompt_show": "Show the code for Fig. 10", "code_prompt_hide": "Hide the code for Fig. 10"}
panels = {"faithfulness: images the judge passes": {
    f"s = {s:g}": (faith[k]["rate"], *faith[k]["ci"])
    for s, k in ((LOW, "low"), (HIGH, "high"))}}
panels["variety: seed pairs that differ in colours or background"] = {
    f"s = {s:g}": (m["mean"], *m["ci"])
    for s, m in ((LOW, stats.mean_ci(varied["low"])),
                 (HIGH, stats.mean_ci(varied["high"])))}
plots.interval_plot(
    panels,
    title=f"Fig. 10 — guidance over {sweep.n} images per scale "
          f"(16 prompts × {P.claim_seeds} seeds), 95 % intervals ({MODEL})",
)

# %% [markdown]
# Drag the slider to see the same four seeds of Fig. 9's prompt drawn at every scale of the
# parameter `slider_scales` (1 to 15 by default). The pictures were drawn when the chapter was
# executed, so the slider works on the page without a kernel.

# %% tags=["hide-input"] mystnb={"code_prompt_show": "Show the code for the guidance slider", "code_prompt_hide": "Hide the code for the guidance slider"}
scales = sorted(P.slider_scales)
dragged = denoising.guidance_sweep(pipe, [sweep.prompts[0]], scales, seeds=4,
                                   seed=P.seed, steps=P.steps, height=P.height,
                                   width=P.width, batch=32)
plots.slider([dragged.images[s] for s in dragged.scales],
             [f"seed {P.seed + k}" for k in range(4)], dragged.scales,
             name="guidance scale s", size=1.6,
             title=f"Fig. 11 — “{sweep.prompts[0]}” at every guidance scale ({MODEL})")

# %% [markdown]
# Notice in Fig. 9 what guidance does to an open prompt: at $s = 1$ the four seeds draw circles
# in three colours, blue, black, purple and blue again (the last one black along its lower
# part); at $s = 7.5$ three of the four are black, the colour the toy model settles on when none
# is asked, and only the purple circle of seed 2 keeps its colour. Fig. 10 puts numbers on it
# over all 16 prompts: variety falls clearly (the intervals do not overlap), while faithfulness rises by about as many points but with an
# interval that still includes no change. On this model and at this sample size, guidance
# demonstrably costs variety; that it buys faithfulness is likely but not shown — the report's
# verdicts below follow from these numbers by the rules stated there.

# %% [markdown]
# ## 6. Other contexts
#
# The explainer closes on the flexibility of the context mechanism: swap the label for a masked
# image or a segmentation map and the same machinery inpaints or synthesises from a layout. Where
# each appears in this book or in diffusers:
#
# | context $y$ | how it is injected | where to see it |
# |---|---|---|
# | text prompt | cross-attention (keys/values from CLIP) | this chapter; heat maps of the attention in chapter 01 |
# | several prompts read as one sequence | cross-attention, text encoder under a custom mask | chapter 02 (hopping mask) |
# | masked image + mask (inpainting) | concatenation: 4 + 1 + 4 input channels | `StableDiffusionInpaintPipeline` |
# | a starting image (image-to-image) | the initial latent: $\mathcal{E}(x)$ noised to step $t$ | `StableDiffusionImg2ImgPipeline` |
# | boxes / layout | extra attention tokens (GLIGEN) or placed noise | `StableDiffusionGLIGENPipeline`; chapter 03 (seedling transplant) |
# | edges, depth, segmentation maps | a side network adding features to the U-Net (ControlNet) | `StableDiffusionControlNetPipeline` |
# | another run's U-Net features | features replaced inside the U-Net | chapter 04 (feature swap) |
#
# ## Reproduction report
#
# The explainer makes no measurements; its claims are mechanisms. Each row below is a measurement
# on this run, with the rule from `data/reference/00_how_stable_diffusion_works.yaml` that turns
# it into a verdict. Intervals: exact binomial for rates, bootstrap (10,000 resamples) for means
# and differences, over images, pairs or prompts as the row says.

# %% [markdown]
# **On a real model.** Every claim below is measured by the same cells on any model. The guidance
# sweep then draws sixteen real open prompts (`data/prompts/open_prompts.yaml`: five COCO classes,
# one to three of each, and the dog on the field), and the open-vocabulary judge reads every
# picture: OWLv2 {cite}`minderer2023owlv2` finds the noun, SAM {cite}`kirillov2023sam` masks what it
# found, and CLIP names the colours and the place, following GenEval's protocol
# {cite}`ghosh2023geneval`. A picture passes when the noun is found as many times as asked; two
# seeds differ when the colours found or the place differ.
# Read such a judge's verdicts with its makers' caveat: GenEval's automatic verdicts agree with
# human annotators on 83 % of images {cite}`ghosh2023geneval`, with a closed-set detector, and our
# open-vocabulary variant has not been checked against people. Its colour step, run with the
# toy CLIP on the toy world's true masks, is measured in the toy model's chapter; CLIP-based
# colour reading is weakest on small objects and on colours a model draws faintly.
# On a GPU, one command gives this report for Stable Diffusion v1.4:
# `make rerun NOTEBOOKS=00 PRESETS=paper ONLINE=1` (or the Colab button, with the paper preset's values).

# %% tags=["hide-input"] mystnb={"code_prompt_show": "Show the code for the reproduction report", "code_prompt_hide": "Hide the code for the reproduction report"}
rows = [
    claim_row(REF, "forward_closed_form", ours=forward_error, n=chains, model=MODEL),
    claim_row(REF, "pure_noise", ours=float(sched["signal"][-1]), n=1, model=MODEL),
    claim_row(REF, "latent_compression", ours=pixels / latents, n=1, model=MODEL),
    claim_row(REF, "x0_converges", ours=settled["rate"], ci=settled["ci"],
              n=settled["n"], model=MODEL),
    claim_row(REF, "prompts_part_early", ours=parted["mean"], ci=parted["ci"],
              n=parted["n"], model=MODEL),
    claim_row(REF, "guidance_faithful", ours=faith["gain"]["mean"],
              ci=faith["gain"]["ci"], n=faith["n"], test="McNemar (exact)",
              p=faith["p"], model=MODEL),
    claim_row(REF, "guidance_less_varied", ours=varied["loss"]["mean"],
              ci=varied["loss"]["ci"], n=sweep.n,
              test=f"sign test over {varied['prompts']} prompts", p=varied["p"],
              model=MODEL),
]
sdprobe.book.notebook.reproduction_report(rows)

# %% [markdown]
# ## Try it yourself
#
# Each exercise changes the parameters cell (or `papermill … -p name value`) and reruns the
# chapter, about 2 min on one CPU core with the defaults; on a GPU, set `model` to a real
# checkpoint and compare.
#
# **1. When is the count decided?** Set `prompt = "three blue squares in the snow"` and step
# through the player of §2. At which step does $\hat x_0$ first show three squares? Is the
# colour settled before or after the count?
#
# :::{dropdown} Hint
# Watch only the right-hand panel of the player (Fig. 3b), the network's guess $\hat x_0$:
# count the separate shapes in each frame, and separately note the first frame from which
# their colour stops changing.
# :::
#
# :::{admonition} Solution
# :class: dropdown
# In the parameters cell, set `prompt = "three blue squares in the snow"` (any string passes
# the check; the set-up cell only refuses a prompt too long for the text encoder) and run the
# chapter again. Fig. 3 shows a few steps; the player (Fig. 3b) shows all of them. Write down
# two step numbers: the first frame of $\hat x_0$ with three separate squares that stay three
# to the end, and the first frame after which their colour no longer changes. If the first
# number is smaller, the count was decided before the colour; if larger, after. The answer is
# for this seed only: change `seed` and repeat to see whether the order holds. The toy model
# miscounts at times (it can draw more or fewer shapes than asked), so check the last frame
# too.
# :::
#
# **2. A weaker guide.** Set `guidance_scales = [1.0, 3.0, 7.5]`. Does judged correctness rise
# steadily with the scale, and does the share of seed pairs that differ fall steadily?
#
# :::{dropdown} Hint
# Figs. 9 and 10 and the report compare only the first and the last scale of the list, so the
# middle scale appears in no figure. The sweep does draw and judge it: read its numbers from
# `sweep` in a cell of your own.
# :::
#
# :::{admonition} Solution
# :class: dropdown
# Set `guidance_scales = [1.0, 3.0, 7.5]` (a list of at least two numbers from 0 to 50 passes
# the check); the sweep then draws 64 images at each of the three scales, one set more than
# by default. After the guidance cells, add and run:
#
# ```python
# for s in sweep.scales:
#     passed = stats.rate(sweep.correct[s])
#     differ = stats.mean_ci(denoising.variety(sweep, s))
#     print(f"s = {s:g}: the judge passes {passed['k']} of {passed['n']} images "
#           f"({passed['ci'][0]:.0%}–{passed['ci'][1]:.0%}); seed pairs that differ: "
#           f"{differ['mean']:.0%} ({differ['ci'][0]:.0%}–{differ['ci'][1]:.0%})")
# ```
#
# "Steadily" means the value at $s = 3$ lies between those at 1 and 7.5 for both measures.
# Read the intervals before the means: with 64 images per scale the faithfulness intervals of
# Fig. 10 already overlap between 1 and 7.5, so a middle value that is out of order but
# inside the others' intervals does not show a bend; it only shows that 64 images cannot
# tell.
# :::
#
# **3. Another sampler.** Set `scheduler = "ddim"` and `steps = 10`. How does Fig. 4's curve of
# per-step change move, and does the final picture still draw the prompt?
#
# :::{dropdown} Hint
# With half the steps, each step has to remove about twice as much noise. Compare the shape of
# Fig. 4 (where its largest values sit, how fast it falls) with the committed curve, and look
# at the last $\hat x_0$ of Fig. 3 and at Fig. 7's left image for the final picture.
# :::
#
# :::{admonition} Solution
# :class: dropdown
# Set `scheduler = "ddim"` (one of `"ddim"`, `"pndm"`, `"lms"`, `"euler"`, `"euler-a"`,
# `"dpm"`, `"ddpm"`) and `steps = 10` (from 2 to 1000) in the parameters cell. Fig. 4 then has
# 10 points instead of 20: note at which step it peaks and how many steps it takes to fall
# near zero, against the committed DPM-Solver++ curve. For the final picture, check by eye
# that the last frame shows a red dog on a field. The measurements of §§2, 4 and 5 run at
# 10 steps too: Fig. 10 then tells whether the judge still passes as many of the 64 images
# per scale (compare the intervals with the committed ones).
# :::
#
# **4. Noise you can see.** In Fig. 1 the dog's outline is still faintly there at $t = 750$ and
# gone at $t = 999$. Set `noise_levels = [0, 250, 500, 750, 850, 900, 950, 999]`. At which level
# can you no longer tell the dog from the field by eye, and how much signal does Fig. 2's curve
# leave there?
#
# :::{dropdown} Hint
# Fig. 1 draws one panel per level, in the order of the list. The signal weight at a level is
# Fig. 2's blue curve, $\sqrt{\bar\alpha_t}$, at that timestep.
# :::
#
# :::{admonition} Solution
# :class: dropdown
# Set `noise_levels = [0, 250, 500, 750, 850, 900, 950, 999]` (whole numbers from 0 to 999
# pass the check). Find the first panel of Fig. 1 in which you cannot make out the dog's
# outline, then read the signal left at that level exactly with
# `print(round(float(sched["signal"][t]), 3))` for that `t` in a new cell after Fig. 2, or
# read it off Fig. 2's blue curve. The committed run prints 0.237 at $t = 750$ and 0.068 at
# $t = 999$, so the answer lies between those two values.
# :::
