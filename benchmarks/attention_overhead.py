"""Cross-attention capture overhead: plain generation vs ``sdprobe.trace_attention`` vs DAAM.

``sdprobe`` is the trace as the chapters run it (the output computed from the probabilities it
keeps), ``sdprobe-fused`` the trace with ``output="fused"`` (diffusers' fused attention for the
output, bit for bit, and the probabilities formed beside it: what the capture cost before it was
brought to its floor). All run on the same pipeline, prompt, seed and step count, interleaved
round by round (so a slow patch of the machine hits all of them), after one warm-up round each. Reported: the median
wall time of each, the ratio to plain generation (the target for sdprobe with per-step maps on is
at most 1.05x), the memory the trace holds (step sums and per-step maps), and on CUDA the peak
memory of each mode. DAAM is measured only when ``import daam`` works.

    python benchmarks/attention_overhead.py                      # toy if present, else random:sd1-tiny
    python benchmarks/attention_overhead.py --model random:sd2 --size 768 --steps 50 --device cuda

``--json PATH`` also writes the numbers for the book's appendix.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import sdprobe  # noqa: E402
from sdprobe.probes.attention import trace_attention  # noqa: E402
from sdprobe.paths import MODELS_DIR  # noqa: E402

PROMPT = "a dog runs across the field"
TARGET = 1.05  # capture at its floor: the probabilities formed once, the output taken from them


def default_model() -> str:
    return "toy" if (MODELS_DIR / "toy" / "model_index.json").is_file() else "random:sd1-tiny"


def daam_trace() -> Callable | None:
    """DAAM's ``trace`` if the package imports, else ``None``."""
    try:
        import daam
    except Exception:  # daam pulls spaCy and old pins; any import failure means "not here"
        return None
    return daam.trace


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_once(pipe, mode: str, args, daam) -> dict[str, float]:
    """One generation in ``mode`` ("plain", "sdprobe", "daam"): seconds, peak bytes, trace bytes."""
    device = pipe.unet.device
    context = {"plain": nullcontext, "sdprobe": lambda: trace_attention(pipe, keep_steps=True),
               "sdprobe-fused": lambda: trace_attention(pipe, keep_steps=True, output="fused"),
               "daam": lambda: daam(pipe)}[mode]()
    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    start = time.perf_counter()
    with context as trace:
        pipe(PROMPT, num_inference_steps=args.steps, height=args.size, width=args.size,
             generator=generator, output_type="latent")
        sync(device)
        seconds = time.perf_counter() - start
        held = trace.memory_bytes() if mode.startswith("sdprobe") else {}
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else float("nan")
    return {"seconds": seconds, "peak_bytes": peak, **{f"trace_{k}_bytes": v for k, v in held.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=default_model())
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=None, help="image side in pixels (default: the model's)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-daam", action="store_true", help="skip DAAM even if it is installed")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = sdprobe.load_pipeline(args.model, device=args.device, dtype=args.dtype)
    pipe.set_progress_bar_config(disable=True)
    args.size = args.size or pipe.unet.config.sample_size * pipe.vae_scale_factor
    daam = None if args.no_daam else daam_trace()
    modes = ["plain", "sdprobe", "sdprobe-fused"] + (["daam"] if daam else [])

    for mode in modes:  # warm-up: allocator, kernels, caches
        run_once(pipe, mode, args, daam)
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for _ in range(args.repeats):
        for mode in modes:
            runs[mode].append(run_once(pipe, mode, args, daam))

    plain = statistics.median(r["seconds"] for r in runs["plain"])
    report = {
        "model": args.model, "device": str(pipe.unet.device), "dtype": str(pipe.unet.dtype),
        "steps": args.steps, "size": args.size, "repeats": args.repeats,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
        "modes": {},
    }
    print(f"{args.model} on {report['device']} ({report['dtype']}), {args.size}px, {args.steps} steps, "
          f"median of {args.repeats} interleaved runs")
    for mode in modes:
        seconds = statistics.median(r["seconds"] for r in runs[mode])
        entry = {"seconds": seconds, "ratio": seconds / plain, "all_seconds": [r["seconds"] for r in runs[mode]]}
        if report["device"].startswith("cuda"):
            entry["peak_gib"] = max(r["peak_bytes"] for r in runs[mode]) / 2**30
        line = f"  {mode:13s} {seconds:8.3f} s  {seconds / plain:5.3f}x plain"
        if mode == "sdprobe":
            entry["step_maps_mib"] = runs[mode][-1]["trace_steps_bytes"] / 2**20
            entry["step_sums_mib"] = runs[mode][-1]["trace_sums_bytes"] / 2**20
            line += f"  per-step maps {entry['step_maps_mib']:.1f} MiB, step sums {entry['step_sums_mib']:.1f} MiB"
        if "peak_gib" in entry:
            line += f"  peak {entry['peak_gib']:.2f} GiB"
        report["modes"][mode] = entry
        print(line)
    if "daam" not in modes:
        print("  daam     not measured (not installed, or --no-daam)")
    ratio = report["modes"]["sdprobe"]["ratio"]
    print(f"sdprobe overhead with per-step maps: {ratio:.3f}x ({'within' if ratio <= TARGET else 'above'} the {TARGET:.2f}x target)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
