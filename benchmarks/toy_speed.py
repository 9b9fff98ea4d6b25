"""How long one 50-step image with classifier-free guidance takes on the toy model.

    python benchmarks/toy_speed.py                 # toy model, 2 CPU threads, 3 timed runs
    python benchmarks/toy_speed.py --threads 1 --runs 5 --model random:sd1-tiny

The target (issue 3): at most 2 s per image on two CPU cores. Each step runs the U-Net on a
batch of two (the prompt and the empty prompt), then the VAE decodes once. One untimed run comes
first (allocations, kernel selection); the median of the timed runs is reported, as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SDPROBE_PROGRESS", "0")

import torch  # noqa: E402

from sdprobe import load_pipeline  # noqa: E402


def time_one_image(pipe, prompt: str, steps: int, guidance: float, seed: int) -> float:
    """Seconds for one ``steps``-step image with guidance ``guidance`` (U-Net batch 2 per step)."""
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    pipe(prompt, num_inference_steps=steps, guidance_scale=guidance, generator=gen)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="toy")
    parser.add_argument("--prompt", default="a red circle and a white square on the field")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    if args.guidance <= 1.0:
        parser.error("--guidance must exceed 1 so that classifier-free guidance runs (batch 2 per step)")
    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.model, device="cpu", dtype="fp32")
    pipe.set_progress_bar_config(disable=True)
    time_one_image(pipe, args.prompt, args.steps, args.guidance, seed=0)  # warm-up
    times = [time_one_image(pipe, args.prompt, args.steps, args.guidance, seed=k) for k in range(args.runs)]
    print(json.dumps({
        "model": args.model,
        "steps": args.steps,
        "guidance": args.guidance,
        "threads": args.threads,
        "seconds_median": round(statistics.median(times), 3),
        "seconds_all": [round(t, 3) for t in times],
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
