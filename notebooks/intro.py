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
# # Inside Stable Diffusion
#
# What happens inside a text-to-image diffusion model while it draws? This book opens one up and
# looks, one study at a time. Below, the toy model that ships with the book draws "a dog runs
# across the field": noise becomes a picture over twenty denoising steps, each panel the
# network's guess of the finished image at that step, and the last panel shows where the
# cross-attention of the word "dog" looked, summed over all steps.

# %% tags=["parameters", "remove-cell"]
# the landing picture's run
prompt = "a dog runs across the field"
seed = 0

# %% tags=["remove-input"]
import sdprobe
from sdprobe.book.notebook import Int, Str, check_parameters

P = check_parameters(globals(), {"prompt": Str(), "seed": Int(0, 2**31 - 1)})

import torch

from sdprobe.book import plots
from sdprobe.models import load_pipeline
from sdprobe.probes.attention import trace_attention
from sdprobe.probes.trajectory import record_trajectory

pipe = load_pipeline("toy", device="cpu", scheduler="dpm")
with trace_attention(pipe) as trace, record_trajectory(pipe) as traj:
    image = pipe(P.prompt, num_inference_steps=20,
                 generator=torch.Generator().manual_seed(P.seed)).images[0]
picks = [0, 2, 4, 8, 19]
plots.image_grid(
    [traj.decode(pipe, i, which="x0")[0] for i in picks]
    + [plots.heatmap_overlay(image, trace.word_heatmap("dog"))],
    [f"step {i} of 0–19" for i in picks] + ["where “dog” was attended"],
    cols=3, size=2.2, title=f"“{P.prompt}”, drawn by the toy model",
)

# %% [markdown]
# ## What this book is for
#
# Each chapter takes a published study of Stable Diffusion's inside (the five sources are
# Japanese papers and articles), rebuilds its experiment end to end, and reports what came out
# beside what the study said, claim by claim, with intervals and a verdict from a rule fixed
# before the run. It is written for three kinds of reader:
#
# * **readers** who want to *see* the denoising loop, the cross-attention, the text encoder and
#   the U-Net at work: every chapter runs on a laptop CPU, and its players and sliders work on
#   the page without a kernel;
# * **teachers**: every chapter has objectives, a time, exercises with hints and folded
#   solutions, and {doc}`../book/teaching` plans a 50-minute class;
# * **re-runners**: the same notebooks run the studies' own models (Colab, a GPU, or a batch
#   over presets), measuring the same claims with the same rules.
#
# The work is done by a small library, `sdprobe`, that every chapter shares; the
# {doc}`../book/api` maps its rooms.
#
# ## What the book found
#
# Every chapter ends with a reproduction report. The table counts their verdicts; the
# {doc}`findings` page lists every claim with its estimate, interval and rule, and the
# {doc}`../book/glossary` defines each verdict word.

# %% tags=["remove-input"]
from IPython.display import HTML

from sdprobe.book import findings
from sdprobe.paths import NOTEBOOKS_DIR

reports = findings.chapter_reports(NOTEBOOKS_DIR)
HTML(findings.verdict_counts(findings.findings_frame(reports)))

# %% [markdown]
# ## The chapters
#
# | chapter | study | the source: year, where, status, link | what is reproduced |
# |---|---|---|---|
# | {doc}`00_how_stable_diffusion_works` | the "Stable Diffusion, Explained" thread as relayed by GIGAZINE {cite}`gigazine2022explained` | 2022 (14 September); GIGAZINE, a Japanese web news site; a news article relaying AI Pub's 15-post Twitter thread; [the article](https://gigazine.net/news/20220914-stable-diffusion-illustrated/) | forward diffusion, the denoising loop, the latent space, text conditioning, classifier-free guidance |
# | {doc}`01_generation_process_heatmaps` | Shinozaki et al. {cite}`shinozaki_daam_process` | undated (not before 30 September 2023); meeting not named; a short abstract, apparently of a conference talk; no link given | the generation process beside DAAM heat maps {cite}`tang2023daam`, per step |
# | {doc}`02_hopping_mask_sequences` | Zhao et al. {cite}`zhao2023hopping` | 2023; NLP2023, the annual meeting of Japan's Association for Natural Language Processing; a conference paper; no link to the paper, authors' code at [KYuuto1006/sdm_hopping_mask](https://github.com/KYuuto1006/sdm_hopping_mask) | several sentences read by CLIP's text encoder as one sequence under a hopping mask; 32 stories judged for following their sentence and keeping the subject's colour |
# | {doc}`03_seedling_transplant` | Nagai et al. {cite}`nagai_taue_draft` | undated (not before November 2024); venue not named; an unfinished draft, whose Table 1 holds only zeros and whose AAS has no formula; no link given | objects grown on a chroma-key background and transplanted into the latent |
# | {doc}`04_unet_feature_swap` | Yamada {cite}`yamada_unet_swap` | undated (not before 2022); venue not named; a short paper (Hiroshima City University); no link given | U-Net features recorded in one run and swapped into another |
# | {doc}`05_training_the_toy_model` | this book's embedded model | — | the generated world, the miniature Stable Diffusion, its training and its measured quality |
#
# The {doc}`../book/bibliography` lists the five sources with their original Japanese titles, and for the
# undated ones it gives the clues their dates rest on. The
# {doc}`../book/glossary` defines the words the chapters use in a fixed sense, the verdict words of the
# reproduction reports among them, and {doc}`../book/teaching` plans a class around the book.
#
# The appendix holds the library's reference ({doc}`../book/api`), its speed and memory measurements
# ({doc}`../book/benchmarks`), how to rerun the paper presets on a cluster ({doc}`../book/cluster`) and the
# bibliography.
#
# ## Which model drew the figures
#
# No machine that builds this book can download Stable Diffusion's weights. Every chapter
# therefore runs by default on `toy`, a miniature Stable Diffusion that ships with the book: the
# same diffusers classes and the same U-Net layout as SD 1.x, trained from scratch on a generated
# world of coloured shapes ({doc}`05_training_the_toy_model` says how, and how well it
# draws what it is asked). **Unless a
# figure says otherwise, it was drawn by `toy`**, and every figure title and reproduction report
# names the model that produced it. Toy numbers test the mechanisms and the measurements; they are
# not the papers' numbers on the papers' models. A chapter's `paper` preset names the
# study's own model and settings; run it where the Hub is reachable to get the paper-scale
# figures from the same code.
#
# ## Running a chapter
#
# **On your own machine (CPU is enough).** Two commands set everything up on a fresh checkout:
#
# ```bash
# make book   # set up .venv, run every chapter on the toy model, build the HTML
# make test   # library tests, nbval over every chapter, page checks
# ```
#
# The book lands in `_build/html/index.html`.
#
# **On Colab with real weights.** Every chapter page has a launch button (the rocket icon at the
# top) that opens its notebook in Colab. The notebook's first cell installs the project only when
# it runs inside Colab. Change `model` in the parameters cell, for instance to
# `"CompVis/stable-diffusion-v1-4"`, and run all cells on a GPU runtime.
#
# **In batch, at paper scale.** Chapters are parameterised with [papermill](https://papermill.readthedocs.io):
# each has a `parameters` cell, checked as soon as it runs, and presets in `data/presets/`.
#
# ```bash
# papermill notebooks/00_how_stable_diffusion_works.ipynb out.ipynb \
#     -f data/presets/00_how_stable_diffusion_works/paper.yaml
# # into runs/, resumable, with one report table:
# make rerun NOTEBOOKS="00" PRESETS="default paper"
# ```
#
# `make rerun` executes every chosen notebook × preset (and any parameter grid a preset holds) into
# `runs/<notebook>/<preset>/<params>.ipynb`. An interrupted batch picks up where it stopped; a run
# that fails keeps its partial notebook and does not stop the others; the reproduction reports of
# all runs are gathered into `runs/report.csv` and `runs/report.md`.
#
# **Opening the notebooks by hand.** `make lab` opens JupyterLab on the project's kernel (the
# `.venv`, with the arithmetic the book is executed with), at the `notebooks/` folder. Pick the
# kernel "Inside Stable Diffusion (sdprobe)" when JupyterLab asks. Outputs you commit come from
# `make execute`, never from a notebook saved by hand.
