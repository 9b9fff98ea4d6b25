"""The command line: ``python -m sdprobe.toy.train [--stage …]``."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from sdprobe.toy.train.clip import train_clip
from sdprobe.toy.train.data import OUT, WORK
from sdprobe.toy.train.export import export
from sdprobe.toy.train.unet import (
    GROUNDING_WEIGHT,
    PIXEL_WEIGHT,
    train_grounding,
    train_unet,
)
from sdprobe.toy.train.vae import train_vae


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdprobe.toy.train", description="Train the toy model from scratch, stage by stage (make toy).")
    parser.add_argument("--stage", nargs="+", default=["vae", "clip", "unet", "ground", "export"],
                        choices=["vae", "clip", "unet", "ground", "export"])
    parser.add_argument("--vae-steps", type=int, default=3000)
    parser.add_argument("--unet-steps", type=int, default=10_000)
    parser.add_argument("--clip-steps", type=int, default=600)
    parser.add_argument("--ground-steps", type=int, default=2000, help="steps of the grounding stage")
    parser.add_argument("--batch", type=int, default=32, help="U-Net batch")
    parser.add_argument("--pool", type=int, default=24_000, help="training scenes encoded for the U-Net")
    parser.add_argument("--judge-images", type=int, default=32,
                        help="validation prompts per kind at milestones (0: no judging)")
    parser.add_argument("--unet-minutes", type=float, default=None,
                        help="a time budget for the U-Net stage: as many steps as fit (at most --unet-steps)")
    parser.add_argument("--milestones", type=float, nargs="*", default=None,
                        help="steps judged, or fractions of the run below 1 (default: a fixed list)")
    parser.add_argument("--grounding", type=float, default=0.0,
                        help="weight of the token grounding loss in the unet stage (the ground stage uses "
                             f"{GROUNDING_WEIGHT}; sdprobe.toy.grounding)")
    parser.add_argument("--pixels", type=float, default=0.0,
                        help=f"weight of the pixel grounding loss in the unet stage (the ground stage uses {PIXEL_WEIGHT})")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="start the U-Net stage from an exported pipeline folder (a continuation run)")
    parser.add_argument("--lr", type=float, default=1e-3, help="U-Net peak learning rate")
    parser.add_argument("--warmup", type=int, default=200, help="U-Net warm-up steps")
    parser.add_argument("--weights", choices=["auto", "ema", "raw"], default="auto",
                        help="what export ships: the EMA, the raw weights, or the one the last judgement preferred")
    parser.add_argument("--work", type=Path, default=WORK, help="checkpoints and logs")
    parser.add_argument("--vae-from", type=Path, default=None, help="a work folder whose VAE the U-Net uses")
    parser.add_argument("--out", type=Path, default=OUT, help="where export writes the pipeline")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=1, help="processes drawing the latent pool's scenes")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch threads (default: the cores this process may use; fewer when the machine is shared)")
    args = parser.parse_args(argv)
    if args.judge_images < 0:
        parser.error(f"--judge-images must be 0 or more, not {args.judge_images}")
    for name in ("vae_steps", "unet_steps", "clip_steps", "ground_steps", "batch", "pool", "threads", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, not {getattr(args, name)}")
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    unet_options = {} if args.milestones is None else {"milestones": tuple(args.milestones)}
    for stage in args.stage:
        start = time.time()
        if stage == "vae":
            train_vae(args.vae_steps, work=work)
        elif stage == "unet":
            train_unet(args.unet_steps, batch=args.batch, pool_size=args.pool, judge_images=args.judge_images,
                       work=work, vae_from=args.vae_from, device=args.device, workers=args.workers,
                       minutes=args.unet_minutes, grounding_weight=args.grounding, pixel_weight=args.pixels,
                       init_from=args.init_from,
                       lr=args.lr, warmup=args.warmup, **unet_options)
        elif stage == "ground":
            train_grounding(args.ground_steps, work=work, batch=args.batch, pool_size=args.pool,
                            judge_images=args.judge_images, device=args.device, workers=args.workers)
        elif stage == "clip":
            train_clip(args.clip_steps, work=work)
        else:  # the last U-Net stage that ran: the grounding stage's folder when it has a checkpoint
            last = work / "ground" if (work / "ground" / "unet.pt").is_file() else work
            export(args.out, last, args.vae_from or (work if last != work else None), args.weights)
        print(f"{stage}: {time.time() - start:.0f} s", flush=True)
        with open(work / "timings.jsonl", "a") as f:
            f.write(json.dumps({"stage": stage, "seconds": round(time.time() - start, 1), "threads": args.threads,
                                "device": args.device}) + "\n")
    return 0
