"""How fast the toy model draws on a CPU: one guided image, and a batch against one at a time.

    python benchmarks/toy_speed.py                 # toy model, DPM-Solver++ 20 steps, 2 threads
    python benchmarks/toy_speed.py --scheduler pndm --steps 50 --runs 5

Two measurements, side by side in one process:

* **one image**: a ``steps``-step image with classifier-free guidance (the U-Net runs on a batch
  of two every step, then the VAE decodes once); the book's target is at most 1 s on two cores
  with DPM-Solver++ at 20 steps. One untimed run first, then the median of ``--runs``.
* **batch against one at a time**: ``--batch`` images in one pipeline call against the same
  images drawn one call each, interleaved round by round; images per second for both and their
  ratio. At batch 2 the U-Net is bound by per-call overhead, so batches are the cheap speed-up
  the chapters use.

Not a test: timings depend on the machine. The numbers are printed as JSON (``--json`` writes them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SDPROBE_PROGRESS", "0")

import torch  # noqa: E402

from sdprobe import load_pipeline  # noqa: E402
from sdprobe.models import SCHEDULERS  # noqa: E402


def draw(pipe, prompts: list[str], steps: int, guidance: float, seed: int) -> float:
    """Seconds for one pipeline call drawing ``prompts`` (image ``k`` from seed ``seed + k``)."""
    gens = [torch.Generator().manual_seed(seed + k) for k in range(len(prompts))]
    start = time.perf_counter()
    pipe(prompts, num_inference_steps=steps, guidance_scale=guidance, generator=gens)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="toy")
    parser.add_argument("--scheduler", default="dpm", choices=sorted(SCHEDULERS))
    parser.add_argument("--prompt", default="a red circle and a white square on the field")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5, help="timed one-image runs")
    parser.add_argument("--batch", type=int, default=16, help="images in the batched call")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of batch against one at a time")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.guidance <= 1.0:
        parser.error("--guidance must exceed 1 so that classifier-free guidance runs (batch 2 per step)")
    for name in ("steps", "threads", "runs", "batch", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, not {getattr(args, name)}")
    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.model, device="cpu", dtype="fp32", scheduler=args.scheduler)
    pipe.set_progress_bar_config(disable=True)

    draw(pipe, [args.prompt], args.steps, args.guidance, seed=0)  # warm-up
    one = [draw(pipe, [args.prompt], args.steps, args.guidance, seed=k) for k in range(args.runs)]

    batched, single = [], []
    prompts = [args.prompt] * args.batch
    draw(pipe, prompts, args.steps, args.guidance, seed=0)  # warm-up at the batch size
    for _ in range(args.rounds):
        batched.append(draw(pipe, prompts, args.steps, args.guidance, seed=0))
        single.append(sum(draw(pipe, [args.prompt], args.steps, args.guidance, seed=k) for k in range(args.batch)))
    result = {
        "model": args.model,
        "scheduler": type(pipe.scheduler).__name__,
        "steps": args.steps,
        "guidance": args.guidance,
        "threads": args.threads,
        "one_image_seconds_median": round(statistics.median(one), 3),
        "one_image_seconds_all": [round(t, 3) for t in one],
        "batch": args.batch,
        "batched_images_per_second": round(args.batch / statistics.median(batched), 2),
        "one_at_a_time_images_per_second": round(args.batch / statistics.median(single), 2),
        "batch_speed_up": round(statistics.median(single) / statistics.median(batched), 2),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
