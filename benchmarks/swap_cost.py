"""What feature swaps cost: record + swap against two plain generations, and a sweep.

Measured side by side in one process, interleaved repeat by repeat, medians reported:

* ``plain A + plain B``        two ordinary generations;
* ``record A + swap B``        the same two with :func:`sdprobe.probes.swap.record_features` and
  :func:`sdprobe.probes.swap.swap_features` (ratio: the hooks' and the store's overhead);
* ``(N+1) plain``              N + 1 ordinary generations;
* ``record A + N swaps``       one recorded run A and N swap configurations against it
  (whole / region / threshold, cycling); the issue's budget is a ratio of at most 1.10.

Usage::

    python benchmarks/swap_cost.py                       # toy if trained, else random:sd1-tiny
    python benchmarks/swap_cost.py --model random:sd1 --height 896 --width 640 --steps 50 \\
        --layers text --store-dtype fp16                 # the paper's scale (GPU)

Not a test: timings depend on the machine. Peak GPU memory is printed on CUDA.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

import sdprobe
from sdprobe.models import resolve_dtype
from sdprobe.paths import MODELS_DIR
from sdprobe.probes.swap import FeatureStore, record_features, swap_features

PROMPT_A = "a red cube and a green ball on a table"
PROMPT_B = "a blue cube and a green ball on a table"


def default_model() -> str:
    return "toy" if (MODELS_DIR / "toy" / "model_index.json").is_file() else "random:sd1-tiny"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=default_model(), help="toy, random:<family>, a folder or a Hub id")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--steps", type=int, default=20, help="num_inference_steps")
    parser.add_argument("--height", type=int, default=None, help="pixels; default: the model's own size")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--layers", default="OUT3,OUT4", help="comma-separated names, or 'text' for every text layer")
    parser.add_argument("--configs", type=int, default=4, help="N, the swap configurations in the sweep")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--store-device", default=None, help="e.g. cpu; default: where the U-Net runs")
    parser.add_argument("--store-dtype", default=None, help="e.g. fp16; default: the U-Net's dtype")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser.parse_args(argv)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def sweep_configs(store: FeatureStore, n: int) -> list[dict]:
    """N swap configurations over the recorded layers: whole, region and threshold, cycling."""
    steps, layers = store.num_steps, list(store.layers)
    h, w = store.lowest_resolution
    region = torch.zeros(h, w, dtype=torch.bool)
    region[:, : max(1, w // 2)] = True
    kinds = [
        lambda k: {"steps": range(0, max(1, steps * (k + 1) // (n + 1)))},
        lambda k: {"steps": range(steps // 2, steps), "region": region},
        lambda k: {"steps": range(steps // 2, steps), "threshold": 0.01 * (k + 1)},
    ]
    return [{"layers": layers[: 1 + k % len(layers)], **kinds[k % 3](k)} for k in range(n)]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = sdprobe.models.resolve_device(args.device)
    pipe = sdprobe.load_pipeline(args.model, device=device, dtype=args.dtype)
    pipe.set_progress_bar_config(disable=True)
    layers = None if args.layers == "text" else [s.strip() for s in args.layers.split(",") if s.strip()]
    store_dtype = resolve_dtype(args.store_dtype) if args.store_dtype else None
    size = {k: v for k, v in (("height", args.height), ("width", args.width)) if v is not None}

    def generate(prompt: str):
        gen = torch.Generator(device="cpu").manual_seed(1111)
        return pipe(prompt, num_inference_steps=args.steps, generator=gen, **size).images

    def record() -> FeatureStore:
        with record_features(pipe, layers, device=args.store_device, dtype=store_dtype) as store:
            generate(PROMPT_A)
        return store

    def record_and_sweep(n: int) -> None:
        store = record()
        for config in sweep_configs(store, n):
            with swap_features(pipe, store, **config):
                generate(PROMPT_B)

    n = args.configs
    cases: dict[str, Callable[[], object]] = {
        "plain A + plain B": lambda: (generate(PROMPT_A), generate(PROMPT_B)),
        "record A + swap B": lambda: record_and_sweep(1),
        f"{n + 1} plain": lambda: [generate(PROMPT_B) for _ in range(n + 1)],
        f"record A + {n} swaps": lambda: record_and_sweep(n),
    }
    generate(PROMPT_A)  # warm-up: allocator, kernels, caches
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            times[name].append(timed(fn, device))

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    store = record()
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    median = {name: statistics.median(ts) for name, ts in times.items()}
    result = {
        "model": args.model,
        "device": str(device),
        "dtype": str(pipe.unet.dtype),
        "steps": args.steps,
        "unet_calls": len(store.timesteps),
        "latent": list(store.sample_shape),
        "layers": list(store.layers),
        "store_bytes": store.nbytes,
        "store_dtype": str(next(iter(store.features.values())).dtype) if store.features else None,
        "peak_cuda_bytes_while_recording": peak,
        "repeats": args.repeats,
        "median_seconds": median,
        "record_swap_ratio": median["record A + swap B"] / median["plain A + plain B"],
        "sweep_ratio": median[f"record A + {n} swaps"] / median[f"{n + 1} plain"],
    }
    report(result, n)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


def report(result: dict, n: int) -> None:
    print(f"model {result['model']} on {result['device']} ({result['dtype']}), {result['steps']} steps "
          f"({result['unet_calls']} U-Net calls), U-Net input {result['latent']}")
    print(f"store: {len(result['layers'])} layers x {result['unet_calls']} calls = "
          f"{result['store_bytes'] / 2**20:.1f} MiB ({result['store_dtype']})")
    if result["peak_cuda_bytes_while_recording"] is not None:
        print(f"peak CUDA memory while recording: {result['peak_cuda_bytes_while_recording'] / 2**30:.2f} GiB")
    for name, seconds in result["median_seconds"].items():
        print(f"  {name:<24} {seconds:8.3f} s  (median of {result['repeats']})")
    print(f"record + swap / two plain generations: {result['record_swap_ratio']:.3f}")
    verdict = "within" if result["sweep_ratio"] <= 1.10 else "OVER"
    print(f"sweep of {n} / {n + 1} plain generations: {result['sweep_ratio']:.3f} ({verdict} the 1.10 budget)")


if __name__ == "__main__":
    main()
