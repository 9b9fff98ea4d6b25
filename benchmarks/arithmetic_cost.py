"""What the pinned arithmetic costs: the same work under ``ARITHMETIC=avx2`` and ``native``, side by side.

The pin (``sdprobe.arithmetic``) is read when torch and NumPy load, so every measurement runs in a
process of its own, the two modes alternating:

* ``--image``: one toy image (DPM-Solver++, 20 steps, batch 4, one thread), timed in-process after
  a warm-up, ``--repeats`` times per mode;
* ``--make TARGET``: ``make TARGET ARITHMETIC=<mode>`` in fresh clones of the repository (say
  ``execute`` for the book's notebooks or ``test``), one run per mode, timed as a whole.

    python benchmarks/arithmetic_cost.py --image --repeats 5
    python benchmarks/arithmetic_cost.py --make execute --make test

Prints one JSON record; on a processor without AVX-512 the two modes run the same kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

IMAGE = r"""
import time, torch, sdprobe
torch.set_num_threads(1)
pipe = sdprobe.load_pipeline("toy", scheduler="dpm")
pipe.set_progress_bar_config(disable=True)
def once():
    pipe(["a red dog runs across the field"] * 4, num_inference_steps=20, output_type="np",
         generator=torch.Generator().manual_seed(0))
once()
t = time.perf_counter(); once(); print(time.perf_counter() - t)
print(torch.backends.cpu.get_cpu_capability())
"""


def image_seconds(mode: str) -> tuple[float, str]:
    from sdprobe.arithmetic import pinned_environment

    env = pinned_environment({**os.environ, "OMP_NUM_THREADS": "1"}, arithmetic=mode)
    out = subprocess.run([sys.executable, "-c", IMAGE], env=env, capture_output=True, text=True, check=True).stdout.split()
    return float(out[-2]), out[-1]


def make_seconds(target: str, mode: str) -> tuple[float, int, str]:
    """Seconds ``make TARGET`` takes in a fresh clone, its exit status and the last line it printed."""
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        subprocess.run(["make", "install"], cwd=clone, check=True, capture_output=True)  # not timed
        start = time.perf_counter()
        done = subprocess.run(["make", target, f"ARITHMETIC={mode}"], cwd=clone, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        log = Path(tempfile.gettempdir()) / f"arithmetic-cost-make-{target}-{mode}.log"  # kept: what the run said
        log.write_text(done.stdout + done.stderr)
        last = next((line for line in reversed(done.stdout.splitlines()) if line.strip()), "")
        return seconds, done.returncode, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", action="store_true", help="time a batch of four toy images per mode")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--make", action="append", default=[], metavar="TARGET", help="time make TARGET per mode")
    args = parser.parse_args()
    record: dict = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    if args.image:
        times: dict[str, list[float]] = {"avx2": [], "native": []}
        kernels = {}
        for _ in range(args.repeats):
            for mode in ("native", "avx2"):
                seconds, kernels[mode] = image_seconds(mode)
                times[mode].append(seconds)
        record["toy_image_batch4_20steps_s"] = {m: statistics.median(v) for m, v in times.items()}
        record["toy_image_kernels"] = kernels
        record["toy_image_pinned_over_native"] = statistics.median(times["avx2"]) / statistics.median(times["native"])
    for k, target in enumerate(args.make):
        order = ("native", "avx2") if k % 2 == 0 else ("avx2", "native")
        runs = {mode: make_seconds(target, mode) for mode in order}
        record[f"make_{target}_s"] = {mode: r[0] for mode, r in runs.items()}
        record[f"make_{target}_exit"] = {mode: r[1] for mode, r in runs.items()}
        record[f"make_{target}_last_line"] = {mode: r[2] for mode, r in runs.items()}
        record[f"make_{target}_pinned_over_native"] = runs["avx2"][0] / runs["native"][0]
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
