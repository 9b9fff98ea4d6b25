"""Write the toy model's card, ``data/models/toy/README.md``, from what training and evaluation
left in the model folder (recipe, training log, timings, evaluation) — every number in it is measured.

    python -m sdprobe.toy.card
"""

from __future__ import annotations

import json
from pathlib import Path

from sdprobe.paths import MODELS_DIR
from sdprobe.toy import architecture as arch
from sdprobe.toy.evaluate import GATES, TARGETS, bars_met, measured
from sdprobe.world import BACKGROUNDS, HALF_SIZES, PALETTE, SHAPES, WORLD_VERSION

__all__ = ["BAR_NAMES", "GENEVAL_TASKS", "bars_table", "geneval_categories", "geneval_comparison", "geneval_figure", "learning_curves",
           "loss_curves", "report_rows", "write_card"]

#: How the card and chapter 05 name each gate and target.
BAR_NAMES: dict[str, str] = {
    "vae": "VAE round trip, judged",
    "single": "one object, right shape and colour",
    "background": "the background the prompt names",
    "heatmap_iou": "heat map of the object word vs the object (IoU)",
    "pair": "two objects, both present in their colours",
    "count": "counts two and three",
}


def _params(module) -> str:
    return f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f} M"


def _read_json(path: Path, default=None):
    return json.loads(path.read_text()) if path.is_file() else default


def _interval(evaluation: dict, name: str) -> list[float] | None:
    if name == "vae":
        return evaluation["vae"].get("correct_ci")
    if name == "background":
        return evaluation["background"].get("correct_ci")
    if name == "heatmap_iou":
        return evaluation["kinds"]["single"].get("heatmap_iou_ci")
    return evaluation["kinds"][name].get("correct_ci")


def _count(evaluation: dict, name: str) -> int:
    if name in ("vae", "background"):
        return evaluation[name]["images"]
    if name == "heatmap_iou":
        return evaluation["kinds"]["single"]["heatmap_images"]
    return evaluation["kinds"][name]["images"]


def _fmt(name: str, value: float) -> str:
    return f"{value:.2f}" if name == "heatmap_iou" else f"{value:.0%}"


def bars_table(evaluation: dict) -> list[dict]:
    """One row per gate and target: what, measured value, 95 % interval, n, bar, met (JSON-ready)."""
    met = bars_met(evaluation)
    rows = []
    for name, bar in {**GATES, **TARGETS}.items():
        ci = _interval(evaluation, name)
        rows.append({"what": BAR_NAMES[name], "kind": "gate" if name in GATES else "target",
                     "measured": _fmt(name, measured(evaluation, name)),
                     "95 % interval": f"{_fmt(name, ci[0])}–{_fmt(name, ci[1])}" if ci else "—",
                     "n": _count(evaluation, name), "bar": f"≥ {_fmt(name, bar)}",
                     "met": "yes" if met[name] else "no"})
    return rows


def _stage_marks(ax, rows: list[dict]) -> None:
    """A dotted line where each U-Net stage after the first begins, named in the legend (a label
    on the plot would sit on a curve or the title)."""
    for before, after in zip(rows, rows[1:]):
        if after.get("stage", 1) != before.get("stage", 1):
            ax.axvline(before["step"], color="grey", linestyle=":", linewidth=1, label=f"stage {after['stage']} begins")


def learning_curves(log: dict, *, title: str = "Judged at milestones (EMA weights, 32–64 prompts per kind)"):
    """The milestone judgements over training: share correct per scene kind, and of backgrounds."""
    from sdprobe.book.plots import line_plot

    rows = [r for r in log.get("milestones", []) if r["weights"] == "ema"]
    series = {"one object": [r["single"] for r in rows], "two objects": [r["pair"] for r in rows],
              "counts": [r["count"] for r in rows], "background named": [r.get("single_background") for r in rows]}
    fig = line_plot([r["step"] for r in rows], series, xlabel="U-Net training step", ylabel="share correct",
                    title=title, size=(6.4, 3.0))
    ax = fig.axes[0]
    ax.set_ylim(0, 1.06)  # markers at 1.0 stay whole
    for line in ax.lines:
        line.set_marker("o")
        line.set_markersize(3)
    _stage_marks(ax, rows)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, frameon=False)  # off the curves
    fig.suptitle(ax.get_title())  # over the whole figure: the axes' own title, wider than the axes, was clipped
    ax.set_title("")
    return fig


def loss_curves(log: dict):
    """The training losses of every stage, one panel each, on log scales."""
    from sdprobe.book.plots import new_figure, plain_log_ticks

    panels = [("vae", "l1", "VAE: weighted L1"), ("unet", "loss", "U-Net: Min-SNR noise loss"),
              ("unet", "grounding", "U-Net: grounding loss"), ("clip", "loss", "CLIP: contrastive loss")]
    panels = [(stage, key, label) for stage, key, label in panels
              if any(r.get(key) for r in log.get(stage, []))]
    cols = min(2, len(panels))  # two panels a row: readable at the book's column width
    rows_ = -(-len(panels) // cols)
    fig = new_figure(figsize=(3.6 * cols, 2.6 * rows_), layout="constrained")
    for ax, (stage, key, label) in zip(fig.subplots(rows_, cols, squeeze=False).ravel(), panels):
        rows = [r for r in log[stage] if r.get(key)]
        ax.plot([r["step"] for r in rows], [r[key] for r in rows], linewidth=1)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step", fontsize=9)
        ax.tick_params(labelsize=9)
        ax.set_yscale("log")
        plain_log_ticks(ax)
        ax.grid(alpha=0.3)
        if stage == "unet":
            _stage_marks(ax, log[stage])
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=9, loc="best", frameon=False)
    return fig


def _figures(folder: Path, log: dict) -> list[str]:
    figures = folder / "figures"
    figures.mkdir(exist_ok=True)
    for old in figures.glob("*.png"):
        old.unlink()
    made = []
    for name, fig in (("losses", loss_curves(log)), ("milestones", learning_curves(log) if log.get("milestones") else None)):
        if fig is not None:
            fig.savefig(figures / f"{name}.png", dpi=100, metadata={"Software": None})
            made.append(f"figures/{name}.png")
    return made


def _stages(recipe: dict) -> list[tuple[str, dict]]:
    """``(label, recipe)`` per training stage, in order; the U-Net may have several."""
    unet = recipe.get("unet") or []
    unet = [unet] if isinstance(unet, dict) else unet
    out = [(name, recipe[name]) for name in ("vae", "clip") if recipe.get(name)]
    return out + [(f"unet, stage {k + 1}" if len(unet) > 1 else "unet", r) for k, r in enumerate(unet)]


def _where(r: dict) -> str:
    return "GPU (one NVIDIA H200)" if str(r["device"]).startswith("cuda") else f"CPU, {r.get('threads', '?')} threads"


def _minutes(timings: list[dict], stage: str, device: str) -> str:
    runs = [t["seconds"] for t in timings if t["stage"] == stage and t.get("device", "cpu") == device]
    return f"{sum(runs) / 60:.0f} min" if runs else "an unrecorded time"


def _recipe_lines(recipe: dict, timings: list[dict]) -> list[str]:
    lines = ["| stage | where | steps | batch | wall time | settings |", "|---|---|---|---|---|---|"]
    for label, r in _stages(recipe):
        stage = label.split(",")[0]
        runs = [t for t in timings if t["stage"] == stage and t.get("device", "cpu") == r["device"]
                and t.get("threads", r.get("threads")) == r.get("threads")]
        wall = f"{sum(t['seconds'] for t in runs) / 60:.1f} min" if runs else "—"
        settings = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in r.items()
                             if k not in {"device", "threads", "steps", "batch", "init_from", "note"}
                             and v not in (None, 0, 0.0))
        if r.get("init_from"):
            settings += f", from the weights of {r['init_from']}"
        lines.append(f"| {label} | {_where(r)} | {r['steps']:,} | {r['batch']} | {wall} | {settings} |")
    notes = [f"*{label}*: {r['note']}" for label, r in _stages(recipe) if r.get("note")]
    return lines + (["", *notes] if notes else [])


def write_card(folder: Path = MODELS_DIR / "toy") -> Path:
    """Compose the model card from the folder's artefacts; return its path."""
    from sdprobe.models import load_pipeline

    pipe = load_pipeline("toy", device="cpu")
    log = _read_json(folder / "training_log.json", {})
    evaluation = _read_json(folder / "evaluation.json")
    recipe = _read_json(folder / "recipe.json", {})
    reproduction = _read_json(folder / "reproduction.json")
    weights = _read_json(folder / "weights.json", {}).get("unet_and_text_encoder", "ema")
    timings = [json.loads(line) for line in (folder / "timings.jsonl").read_text().splitlines()] \
        if (folder / "timings.jsonl").is_file() else []
    size = sum(p.stat().st_size for p in folder.rglob("*.safetensors")) / 2**20
    figures = _figures(folder, log)
    where = "; ".join(f"{label} on {_where(r)}" for label, r in _stages(recipe))
    lines = [
        "# toy — a miniature Stable Diffusion trained on a generated world",
        "",
        "The embedded default model of *Inside Stable Diffusion*. Same classes as Stable Diffusion 1.x "
        "(`StableDiffusionPipeline`: `AutoencoderKL`, `UNet2DConditionModel`, `CLIPTextModel` + `CLIPTokenizer`, "
        "`PNDMScheduler`), trained from scratch by `python -m sdprobe.toy.train` (`make toy`). Load it offline with "
        "`sdprobe.load_pipeline(\"toy\")` or `StableDiffusionPipeline.from_pretrained(\"data/models/toy\")` "
        "(no dtype needed).",
        "",

        f"Trained in stages: {where or 'no recipe recorded'}. The shipped U-Net and text encoder are the "
        f"{weights.upper()} weights of the last stage (the judge's choice at its last milestone). A later stage "
        "starts from the weights an earlier one exported (`--init-from`). GPU arithmetic differs from the "
        "CPU's, so where a stage ran on the GPU, `make toy` does not rebuild these exact weights: it trains the "
        "CPU recipe described under *Reproduce*.",
        "",
    ]
    if reproduction:
        lines += _reproduction_lines(reproduction)
    lines += [
        "## The world",
        "",
        f"World version {WORLD_VERSION}. 128 × 128 scenes: a background ({', '.join(BACKGROUNDS)}) and one to three "
        f"flat-coloured objects ({', '.join(SHAPES)}; colours {', '.join(PALETTE)}, RGB values in `world.json`). "
        f"Every object is at least 41 px (five latent cells) on its shorter side: half-sizes {HALF_SIZES[1][0]}–"
        f"{HALF_SIZES[1][1]} px alone, {HALF_SIZES[2][0]}–{HALF_SIZES[2][1]} in pairs, {HALF_SIZES[3][0]}–"
        f"{HALF_SIZES[3][1]} in counts of three; no texture is finer than the latent grid (grass rows 16 px high, "
        "smooth gradients for snow and sky). Captions come from templates (\"a red circle on the field\", "
        "\"three blue squares in the snow\", \"a red square and a white dog\", \"a white dog runs across the field\"). "
        "Every scene has per-object masks and boxes and is drawn from its seed (`sdprobe.world`); training, "
        "milestone validation and the evaluation below use disjoint seeds.",
        "",
        "## Architecture",
        "",
        "| component | class | parameters | settings |",
        "|---|---|---|---|",
        f"| VAE | AutoencoderKL | {_params(pipe.vae)} | 8× downsampling, 4 latent channels, channels {arch.VAE['block_out_channels']}, scaling factor {pipe.vae.config.scaling_factor:.4f} |",
        f"| U-Net | UNet2DConditionModel | {_params(pipe.unet)} | SD 1.x layout (IN0–IN11, MID, OUT0–OUT11; 16 cross-attention blocks at 16, 8 and 4 cells), channels {arch.UNET['block_out_channels']} |",
        f"| text encoder | CLIPTextModel | {_params(pipe.text_encoder)} | width {arch.TEXT_WIDTH}, {arch.CLIP_TEXT['num_hidden_layers']} layers, 77 positions, trained with the U-Net |",
        f"| tokenizer | CLIPTokenizer | — | byte-level BPE learned from the captions, {len(pipe.tokenizer)} entries |",
        "| scheduler | PNDMScheduler | — | scaled-linear betas 0.00085–0.012, 1000 steps, epsilon prediction (DPM-Solver++, DDIM, Euler, LMS usable) |",
        "| CLIP (for scores) | CLIPModel in `clip/` | — | image 64 px, patch 8; trained contrastively on scenes and captions |",
        "",
        f"Weights: {size:.1f} MB of safetensors (U-Net and VAE in fp16, the text encoders in fp32; diffusers and "
        "transformers load all of them in fp32 by default).",
        "",
        "## Training",
        "",
        *_recipe_lines(recipe, timings),
        "",
        "The VAE's loss weighs object pixels 10× and a 2-pixel band around every outline 10× more, and adds an L1 "
        "between the image gradients of picture and reconstruction, which keeps corners and star points sharp. "
        "The U-Net and text encoder train together on a pool of encoded training scenes (a fresh sample of each "
        "scene's latent distribution at every use): epsilon prediction weighted by Min-SNR-5 (Hang et al. 2023), "
        "offset noise 0.1, 10 % empty captions for classifier-free guidance, AdamW with warm-up then cosine decay, "
        "and an exponential moving average of the weights (decay 1 − (1 + step)^−0.75, capped at 0.9999). "
        "Wall times add up the stage runs that completed.",
        "",
        *[f"![{Path(f).stem}]({f})" for f in figures],
        "",
        "## Quality, judged by the world's own segmentation",
        "",
        *_quality_lines(evaluation),
        "## Reproduce",
        "",
        "`make toy` runs every stage on the CPU (`python -m sdprobe.toy.train`, then `python -m sdprobe.toy.evaluate` "
        "and `python -m sdprobe.toy.card`). Every stage is deterministic from its seed and resumes from its last "
        "checkpoint in `.toytrain/`, drawing exactly what an uninterrupted run would. Its stages: the VAE and the "
        "CLIP as above; the U-Net's first stage for `--unet-steps` (10,000 by default) at batch 32 instead of the "
        "GPU's 256; the grounding stage as above (`--ground-steps`, 2,000 by default).",
        "",
        *([] if reproduction else [
            "No full `make toy` run on a CPU has been recorded for these weights yet (`python -m sdprobe.toy.card "
            "--reproduction FOLDER EVAL_JSON` records one). Measured here, on two cores: the VAE stage took "
            f"{_minutes(timings, 'vae', 'cpu')}, the CLIP {_minutes(timings, 'clip', 'cpu')}, and a grounding step "
            "1.3–1.6 s; a first-stage U-Net step at batch 32 takes 0.65–0.8 s, so the default schedule needs about "
            "four hours of two cores.",
            "",
        ]),
    ]
    path = folder / "README.md"
    path.write_text("\n".join(lines))
    return path


def _quality_lines(evaluation: dict | None) -> list[str]:
    if evaluation is None:
        return ["Not evaluated yet: run `python -m sdprobe.toy.evaluate`.", ""]
    pair = evaluation["kinds"]["pair"]
    rows = bars_table(evaluation)
    swap = "—" if pair.get("colour_swap_rate") is None else f"{pair['colour_swap_rate']:.0%}"
    missed = [r["what"] for r in rows if r["met"] == "no"]
    lines = [
        f"{evaluation['kinds']['single']['images']} held-out prompts per scene kind, {evaluation['steps']} "
        f"{evaluation.get('scheduler', 'DPMSolverMultistepScheduler')} steps, guidance {evaluation['guidance']}; "
        "`python -m sdprobe.toy.evaluate`. A gate or target is met when the measured value reaches its bar; the "
        "95 % intervals are exact binomial (Clopper–Pearson) for rates and a percentile bootstrap for the mean IoU.",
        "",
        "| what | kind | measured | 95 % interval | n | bar | met |",
        "|---|---|---|---|---|---|---|",
        *[f"| {r['what']} | {r['kind']} | {r['measured']} | {r['95 % interval']} | {r['n']} | {r['bar']} | {r['met']} |"
          for r in rows],
        "",
        f"Two-object prompts: an object is missing in {pair['missing_object_rate']:.0%} of images; among the "
        f"{pair['complete_images']} with both objects, the colours are swapped in {swap}. These are the failures "
        "chapter 03's transplant attacks. The heat-map IoU is measured on the "
        f"{evaluation['kinds']['single']['heatmap_images']} one-object images where the judge found the object.",
        "",
    ]
    if missed:
        lines += [f"Not met: {', '.join(missed)}. The learning curves above show where each stood during training.", ""]
    if any(r["met"] == "no" and "two objects" in r["what"] for r in rows):
        lines += [
            f"What limits two-object prompts is binding, not drawing: both shapes are there in "
            f"{pair['complete_images']} of {pair['images']} images, but their colours are exchanged in {swap} of "
            "those. The grounding stage pulls each colour word's attention inside its own object, and still the "
            "colours swap: the colour reaches the U-Net through the text encoder's mixed token states, and a "
            "three-layer text encoder of width 64 may not keep them apart. Not tested yet: a wider text encoder, "
            "more two-object scenes in training, a longer first stage.",
            "",
        ]
    return lines


def _reproduction_lines(reproduction: dict) -> list[str]:
    """What `make toy` on a CPU produced when it was last run in full (its own evaluation)."""
    evaluation = reproduction["evaluation"]
    rows = bars_table(evaluation)
    met = sum(r["met"] == "yes" for r in rows if r["kind"] == "gate")
    return [
        f"`make toy` on a two-core CPU ({reproduction['where']}; {reproduction['hours']:.1f} h of wall time in all) "
        f"produced a model that meets {met} of the {len(GATES)} gates:",
        "",
        "| what | measured | 95 % interval | bar | met |",
        "|---|---|---|---|---|",
        *[f"| {r['what']} | {r['measured']} | {r['95 % interval']} | {r['bar']} | {r['met']} |" for r in rows],
        "",
    ]


def record_reproduction(folder: Path, evaluation: Path, into: Path = MODELS_DIR / "toy") -> Path:
    """Keep what a full ``make toy`` run on the CPU reached, beside the shipped model: its
    evaluation and its wall time (from ``folder``'s ``timings.jsonl``), as ``reproduction.json``."""
    timings = [json.loads(line) for line in (folder / "timings.jsonl").read_text().splitlines()]
    threads = sorted({t["threads"] for t in timings if t.get("device", "cpu") == "cpu" and t["stage"] != "export"})
    record = {"where": f"CPU, {'/'.join(map(str, threads))} threads",
              "hours": sum(t["seconds"] for t in timings if t["stage"] != "export") / 3600,
              "evaluation": json.loads(evaluation.read_text())}
    path = into / "reproduction.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def report_rows(evaluation: dict, model: str = "toy") -> list[dict]:
    """The gates and targets as reproduction-report rows (:func:`sdprobe.analysis.claims.claim_row`),
    each judged as every chapter judges a claim, on its 95 % interval: it holds when the whole
    interval lies above the bar. (The card's own rule, :func:`~sdprobe.toy.evaluate.bars_met`,
    reads the estimate: it decides whether training is done, not whether a claim is shown.)
    Then the book's claim of the toy against GenEval's real models (``binds_like_sd21``)."""
    from sdprobe.analysis.claims import claim_row, load_reference

    claims = {name: {"what": BAR_NAMES[name], "unit": "IoU" if name == "heatmap_iou" else "%",
                     "paper": f"none: a {'gate' if name in GATES else 'target'} this book set", "rule": {"above": bar}}
              for name, bar in {**GATES, **TARGETS}.items()}
    test = {name: "bootstrap" if name == "heatmap_iou" else "Clopper–Pearson" for name in claims}
    rows = [claim_row({"claims": claims}, name, ours=measured(evaluation, name), ci=_interval(evaluation, name),
                      n=_count(evaluation, name), test=f"interval: {test[name]}", model=model) for name in claims]
    reference = load_reference("05_training_the_toy_model")
    sd21 = dict(zip(reference["geneval"]["tasks"], reference["geneval"]["models"]["SD 2.1"]))["colour binding"]
    binding = geneval_categories(evaluation)["colour binding"]
    rows.append(claim_row(reference, "binds_like_sd21", ours=binding["rate"] - sd21, n=binding["n"],
                          ci=[v - sd21 for v in binding["ci"]], test="interval: Clopper–Pearson", model=model))
    return rows


#: GenEval's tasks as the toy world measures them, each a (scene kind, evaluation field). One object and
#: two objects count the shapes drawn in any colour; colours and colour binding also ask for the
#: named colours; counting asks for the number in its colour.
GENEVAL_TASKS = {"single object": ("single", "present"), "two objects": ("pair", "present"),
                 "counting": ("count", "correct"), "colours": ("single", "correct"),
                 "colour binding": ("pair", "correct")}


def geneval_categories(evaluation: dict) -> dict[str, dict]:
    """The toy's score on each of GenEval's tasks (:data:`GENEVAL_TASKS`), judged by the toy world's
    exact judge on held-out prompts: ``{task: {"rate", "ci", "n"}}`` (exact 95 % intervals).

    Raises:
        KeyError: the evaluation predates the ``present`` counts (rerun ``python -m sdprobe.toy.evaluate``).
    """
    out = {}
    for task, (kind, field) in GENEVAL_TASKS.items():
        row = evaluation["kinds"][kind]
        if field not in row:
            raise KeyError(f"the evaluation has no {field!r} for {kind!r}: rerun python -m sdprobe.toy.evaluate")
        out[task] = {"rate": row[field], "ci": row[f"{field}_ci"], "n": row["images"]}
    return out


def geneval_comparison(evaluation: dict) -> tuple[list[dict], str]:
    """The toy beside GenEval's published models, task by task, and the sentence the numbers support.

    Each task is placed by a rule stated here: a published model whose score lies inside the toy's
    95 % interval is one the toy draws *as well as*; if none does, the toy is *below*, *above* or
    *between* them. Returns the table's rows (task, toy, one column per model, placement) and the
    sentence.
    """
    from sdprobe.analysis.claims import load_reference
    from sdprobe.formatting import format_estimate

    table = load_reference("05_training_the_toy_model")["geneval"]
    published = {m: dict(zip(table["tasks"], scores)) for m, scores in table["models"].items()}
    rows, phrases = [], []
    for task, toy in geneval_categories(evaluation).items():
        lo, hi = toy["ci"]
        scores = {m: published[m][task] for m in published}
        inside = [m for m, v in scores.items() if lo <= v <= hi]
        if inside:
            place = f"as well as {_names(inside)}"
        elif hi < min(scores.values()):
            place = "below all three"
        elif lo > max(scores.values()):
            place = "above all three"
        else:
            under = max((v, m) for m, v in scores.items() if v < lo)[1]
            over = min((v, m) for m, v in scores.items() if v > hi)[1]
            place = f"between {under} and {over}"
        rows.append({"task": task, "toy (95 % CI)": format_estimate(toy["rate"], "%", toy["ci"]), "n": toy["n"],
                     **{m: f"{v:.0%}" for m, v in scores.items()}, "the toy draws it": place})
        phrases.append(f"{place} on {task}")
    sentence = "On GenEval's tasks the toy scores " + _names(phrases) + "."
    return rows, sentence


def geneval_figure(evaluation: dict, *, title: str = "The toy beside GenEval's published models"):
    """The toy's score on each GenEval task with its 95 % interval, beside the three published
    models' scores (seaborn; one marker per model)."""
    import pandas as pd
    import seaborn as sns

    from sdprobe.analysis.claims import load_reference
    from sdprobe.book.plots import MAX_WIDTH, new_figure

    table = load_reference("05_training_the_toy_model")["geneval"]
    published = pd.DataFrame([{"task": t, "model": m, "score": 100 * v}
                              for m, scores in table["models"].items() for t, v in zip(table["tasks"], scores)])
    toy = geneval_categories(evaluation)
    fig = new_figure(figsize=(MAX_WIDTH, 3.2), layout="constrained")
    ax = fig.subplots()
    with sns.axes_style("whitegrid"):
        sns.stripplot(published, x="task", y="score", hue="model", ax=ax, jitter=False, dodge=True, size=7,
                      marker="D", palette="colorblind", order=table["tasks"])
        x = [k + 0.42 for k in range(len(table["tasks"]))]  # beside the three published markers
        rates = [100 * toy[t]["rate"] for t in table["tasks"]]
        lows = [100 * (toy[t]["rate"] - toy[t]["ci"][0]) for t in table["tasks"]]
        highs = [100 * (toy[t]["ci"][1] - toy[t]["rate"]) for t in table["tasks"]]
        ax.errorbar(x, rates, yerr=[lows, highs], fmt="o", color="black", capsize=4, markersize=7,
                    label="toy (95 % interval)", zorder=5)
    ax.set_xlim(-0.6, len(table["tasks"]) - 0.2)
    ax.set_ylim(0, 104)
    ax.set_ylabel("images judged correct (%)", fontsize=9)
    ax.set_xlabel("")
    ax.tick_params(labelsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=9, loc="lower left", frameon=False, ncols=2)
    ax.set_title(title, fontsize=10)
    return fig


def _names(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sdprobe.toy.card", description="Write the toy model's card.")
    parser.add_argument("--reproduction", nargs=2, type=Path, metavar=("MODEL_FOLDER", "EVALUATION_JSON"),
                        help="first record what a CPU `make toy` run reached (its exported folder and evaluation)")
    args = parser.parse_args(argv)
    if args.reproduction:
        print(record_reproduction(*args.reproduction))
    print(write_card())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
