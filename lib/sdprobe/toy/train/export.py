"""The ``export`` stage: the diffusers pipeline into ``data/models/toy``, with its CLIP, world and training log."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from sdprobe.toy import architecture as arch
from sdprobe.toy.train.checkpoints import _load
from sdprobe.toy.train.data import OUT, WORK, tokenizer
from sdprobe.world import world_spec


def export(out: Path = OUT, work: Path = WORK, vae_from: Path | None = None, weights: str = "auto") -> Path:
    """Write the diffusers pipeline (and the toy CLIP when trained) to ``out``; return it.

    ``weights`` picks the U-Net and text encoder: ``"ema"``, ``"raw"``, or ``"auto"`` for the one
    the last milestone's judge preferred. The U-Net and VAE are stored in fp16 (diffusers loads
    them in fp32 unless told otherwise); the text encoders, a few hundred kB, in fp32, so that a
    stock ``from_pretrained`` without a dtype gives one dtype throughout.
    """
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel

    state = _load(work / "unet.pt")
    if state is None:
        raise FileNotFoundError(f"no U-Net checkpoint in {work}: run the vae and unet stages first")
    staging = out.with_name(out.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    tok = tokenizer(staging / "tokenizer")
    vae_state = _load((vae_from or work) / "vae.pt")
    vae = AutoencoderKL(**arch.VAE, scaling_factor=state["scale"])
    vae.load_state_dict(vae_state["model"])
    unet = UNet2DConditionModel(**arch.UNET)
    unet.load_state_dict(state["unet"])
    text = CLIPTextModel(CLIPTextConfig(**arch.text_encoder_config(len(tok), tok.bos_token_id, tok.eos_token_id)))
    text.load_state_dict(state["text"])
    chosen = (state.get("prefer") or "ema") if weights == "auto" else weights
    if chosen == "ema":
        with torch.no_grad():
            for p, e in zip(list(unet.parameters()) + list(text.parameters()), state["ema"]):
                p.copy_(e)
    pipe = StableDiffusionPipeline(vae=vae.half(), text_encoder=text, tokenizer=tok, unet=unet.half(),
                                   scheduler=arch.make_scheduler(), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(staging, safe_serialization=True)
    sources = list(dict.fromkeys([work, vae_from or work]))  # the U-Net's folder first, then the VAE's
    clip_state = next((c for c in (_load(f / "clip.pt") for f in sources) if c is not None), None)
    if clip_state is not None:
        config = CLIPConfig(text_config=arch.text_encoder_config(len(tok), tok.bos_token_id, tok.eos_token_id),
                            vision_config=arch.CLIP_VISION, projection_dim=64)
        clip = CLIPModel(config)
        clip.load_state_dict(clip_state["model"])
        clip.save_pretrained(staging / "clip", safe_serialization=True)
        tok.save_pretrained(staging / "clip")
        _clip_image_processor().save_pretrained(staging / "clip")
    (staging / "world.json").write_text(json.dumps(world_spec(), indent=1))
    (staging / "weights.json").write_text(json.dumps({"unet_and_text_encoder": chosen}) + "\n")
    earlier = _earlier_stage(state.get("recipe"))
    unet_stages = [*earlier["recipe"].get("unet", []), {**state.get("recipe", {}), "init_from": None}] \
        if earlier else [state.get("recipe")]
    recipe = {"vae": vae_state.get("recipe"), "unet": [r for r in unet_stages if r],
              "clip": clip_state.get("recipe") if clip_state else None}
    (staging / "recipe.json").write_text(json.dumps({k: v for k, v in recipe.items() if v}, indent=1) + "\n")
    write_training_log(staging, sources, earlier["log"] if earlier else None)
    _copy_samples(staging / "samples", work, earlier)
    timings = (earlier["timings"] if earlier else []) + [
        line for f in sources if (f / "timings.jsonl").is_file() for line in (f / "timings.jsonl").read_text().splitlines()]
    if timings:
        (staging / "timings.jsonl").write_text("\n".join(timings) + "\n")
    for keep in ("README.md", "evaluation.json", "figures"):  # the model card and its figures stay
        if (out / keep).exists():
            shutil.move(str(out / keep), str(staging / keep))
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return out


def _copy_samples(target: Path, work: Path, earlier: dict | None) -> None:
    """The milestone samples of every stage, named by the step counted from the first stage."""
    offset = 0
    if earlier:
        if (earlier["folder"] / "samples").is_dir():
            shutil.copytree(earlier["folder"] / "samples", target)
        offset = max([r["step"] for r in earlier["log"].get("unet", [])] or [0])
    target.mkdir(exist_ok=True)
    for png in sorted((work / "samples").glob("step*.png")) if (work / "samples").is_dir() else []:
        shutil.copy(png, target / f"step{int(png.stem[4:]) + offset:05d}.png")


def _earlier_stage(recipe: dict | None) -> dict | None:
    """For a continuation run (``init_from``): the recipe, training log and timings of the stage it
    started from (an exported folder of ours, or a work folder); else ``None``."""
    folder = Path(recipe["init_from"]) if recipe and recipe.get("init_from") else None
    if folder is None:
        return None
    timings = (folder / "timings.jsonl").read_text().splitlines() if (folder / "timings.jsonl").is_file() else []
    timings = [t for t in timings if json.loads(t)["stage"] == "unet"]
    if (folder / "unet.pt").is_file():  # a work folder: its checkpoint and logs
        state = _load(folder / "unet.pt")
        log = {k: v for k, v in training_log([folder]).items() if k in ("unet", "milestones")}
        return {"recipe": {"unet": [state.get("recipe", {})]}, "log": log, "timings": timings, "folder": folder}
    if not (folder / "recipe.json").is_file():
        return None
    earlier = json.loads((folder / "recipe.json").read_text())
    if isinstance(earlier.get("unet"), dict):
        earlier["unet"] = [earlier["unet"]]
    log = json.loads((folder / "training_log.json").read_text()) if (folder / "training_log.json").is_file() else {}
    return {"recipe": earlier, "log": log, "timings": timings, "folder": folder}


def _clip_image_processor():
    """The preprocessing the toy CLIP was trained with: area-resize to 64 px, values in [-1, 1]."""
    from PIL import Image
    from transformers import CLIPImageProcessor

    side = arch.CLIP_VISION["image_size"]
    return CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                              image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=Image.BOX)


def training_log(sources: list[Path] | None = None) -> dict:
    """The training curves of every stage, thinned, and the milestone judgements; each stage's log
    is read from the first of ``sources`` (work folders, by default ``.toytrain``) that has one.

    A resumed run logs the steps after its checkpoint again; the last record of a step wins.
    """
    sources = sources or [WORK]
    logs = {}
    for name in ("vae", "unet", "clip"):
        if (found := next((f / f"{name}.jsonl" for f in sources if (f / f"{name}.jsonl").is_file()), None)):
            by_step = {r["step"]: r for r in map(json.loads, open(found))}
            logs[name] = [by_step[k] for k in sorted(by_step)]
    logs = _thin(logs)
    if (found := next((f / "milestones.jsonl" for f in sources if (f / "milestones.jsonl").is_file()), None)):
        latest = {(r["step"], r["weights"]): r for r in map(json.loads, open(found))}
        logs["milestones"] = [latest[k] for k in sorted(latest)]
    return logs


def write_training_log(folder: Path, sources: list[Path] | None = None, earlier: dict | None = None) -> Path:
    """:func:`training_log` as ``training_log.json`` in ``folder``. ``earlier``, the log of the
    stage a continuation started from, goes first: its U-Net rows and milestones keep their stage
    numbers (1 by default), this run's get the next, with steps counted on from the earlier end."""
    logs = training_log(sources)
    if earlier:
        stages = max([r.get("stage", 1) for r in earlier.get("unet", [])] or [0])
        offset = max([r["step"] for r in earlier.get("unet", [])] or [0])
        for name in ("unet", "milestones"):
            logs[name] = [{"stage": r.get("stage", 1), **r} for r in earlier.get(name, [])] + \
                         [{**r, "stage": stages + 1, "step": r["step"] + offset} for r in logs.get(name, [])]
    path = folder / "training_log.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(logs))
    tmp.replace(path)
    return path


def _thin(logs: dict[str, list[dict]], every: int = 10) -> dict[str, list[dict]]:
    """Training curves averaged over windows of ``every`` steps (the shipped log stays small)."""
    out = {}
    for name, rows in logs.items():
        keys = [k for k in rows[0] if k != "step"]
        # Each point: the mean over a window of steps, at the window's last step (counted from 1).
        out[name] = [{"step": rows[i:i + every][-1]["step"] + 1,
                      **{k: float(np.mean([r[k] for r in rows[i:i + every]])) for k in keys}}
                     for i in range(0, len(rows), every)]
    return out
