"""Execute the chapter notebooks: the book's committed outputs and batch reruns over presets.

Two commands, both offline and both resumable::

    python -m sdprobe.book.runs book  --notebooks all               # what `make book` runs
    python -m sdprobe.book.runs batch --notebooks 00 01 --presets default paper [--grid seed=1,2]
    python -m sdprobe.book.runs batch --notebooks 03 --presets paper --ray [ADDRESS]   # on Ray

``book`` executes each ``notebooks/NN_*.py`` (the jupytext source) with its own default
parameters into the paired ``NN_*.ipynb``, two at a time on two cores. ``batch`` executes every
notebook × preset × grid point (:mod:`sdprobe.book.plan`) into
``runs/<notebook>/<preset>/<params>.ipynb``, skips runs already complete, keeps the partial
notebook of a failed run as ``<params>.failed.ipynb``, and derives ``runs/report.csv`` and
``runs/report.md`` from every complete run in the folder (:mod:`sdprobe.book.outputs`). With
``--ray`` the runs left to do execute as tasks on a Ray cluster (:mod:`sdprobe.book.cluster`),
with the same guarantees. Every kernel computes on the pinned arithmetic
(:mod:`sdprobe.arithmetic`) unless ``--arithmetic native``.

Every notebook is written atomically (:mod:`sdprobe.book.execution`): a final ``.ipynb`` exists
only after a successful run.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from sdprobe.arithmetic import MODE_VARIABLE, MODES, mode, unpinnable
from sdprobe.book.cluster import ClusterError, ClusterOptions, check_ray_head
from sdprobe.book.execution import (
    NotebookRunError, execute_notebook, failed_path, remove_kernel_files, terminate_on_signals,
)
from sdprobe.book.outputs import (
    REPORT_COLUMNS, BatchLockedError, ReportError, batch_lock, check_out_dir, check_report, gather_report,
    read_report_rows, remove_stale_partials, write_report,
)
from sdprobe.book.plan import (
    Run, SelectionError, expand_grid, load_preset, parse_grid, plan_batch, run_name, select_notebooks,
)
from sdprobe.paths import NOTEBOOKS_DIR, PRESETS_DIR, REPO_ROOT
from sdprobe.progress import progress

__all__ = [
    "REPORT_COLUMNS", "BatchLockedError", "BatchResult", "NotebookRunError", "ReportError", "Run", "SelectionError",
    "batch_lock", "execute_notebook", "expand_grid", "failed_path", "gather_report", "load_preset", "main",
    "parse_grid", "plan_batch", "read_report_rows", "run_batch", "run_book", "run_name", "select_notebooks",
]

RUNS_DIR = REPO_ROOT / "runs"
#: The pages that gather every chapter's report (``notebooks/findings.py``, the landing page
#: ``notebooks/intro.py``): executed after the chapters, in this order.
FINDINGS = ("findings", "intro")


# ----------------------------------------------------------------------------- the book


def run_book(
    selectors: Iterable[str] = ("all",), notebooks_dir: Path | str = NOTEBOOKS_DIR, *,
    arithmetic: str | None = None, jobs: int = 1,
) -> list[NotebookRunError]:
    """Execute the chosen chapters with their default parameters into their paired ``.ipynb``.

    Every chosen notebook is tried; a failed one keeps its previous ``.ipynb`` untouched and its
    partial run as ``NN_name.failed.ipynb``. Returns the failures (empty when all succeeded).
    ``jobs`` kernels run at once, the longest chapters (by their last run) first, and the findings
    and landing pages (``FINDINGS``, which gather their reports) after them; each kernel has
    its own single thread, so the outputs are those of one at a time, and draws no progress bars
    (the outputs are committed). ``arithmetic`` is :func:`~sdprobe.book.execution.execute_notebook`'s.

    Raises:
        SelectionError: an unknown notebook, or ``jobs`` below 1.
    """
    from concurrent.futures import ThreadPoolExecutor

    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise SelectionError(f"jobs must be a whole number of at least 1, not {jobs!r}")
    sources = sorted(select_notebooks(selectors, notebooks_dir), key=_last_duration, reverse=True)

    def run(source: Path) -> NotebookRunError | None:
        start = time.monotonic()
        try:
            execute_notebook(source, source.with_suffix(".ipynb"), arithmetic=arithmetic, progress_bar=False, quiet=True)
        except NotebookRunError as err:
            _say(f"FAILED {source.stem}: {err.summary}" + (f" (partial: {err.partial})" if err.partial else ""))
            return err
        _say(f"ok     {source.stem} ({time.monotonic() - start:.0f} s)")
        return None

    _say(f"executing {len(sources)} notebook(s), {min(jobs, len(sources))} at a time: "
         + ", ".join(source.stem for source in sources))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(run, sources))
    for name in FINDINGS:  # these pages read every chapter's report: they run after them
        summary = Path(notebooks_dir) / f"{name}.py"
        if summary.is_file():
            results.append(run(summary))
    return [err for err in results if err is not None]


def _last_duration(source: Path) -> float:
    """Seconds the committed notebook of ``source`` took to execute (papermill records it); 0 if unknown."""
    try:
        return float(nbformat.read(str(source.with_suffix(".ipynb")), as_version=4).metadata["papermill"]["duration"])
    except Exception:
        return 0.0


# ----------------------------------------------------------------------------- batches


@dataclass
class BatchResult:
    """What a batch did: runs executed now, skipped as already complete, and failed."""

    completed: list[Run] = field(default_factory=list)
    skipped: list[Run] = field(default_factory=list)
    failed: list[tuple[Run, NotebookRunError]] = field(default_factory=list)
    report: Any = None  #: the derived pandas DataFrame (columns REPORT_COLUMNS)
    problems: list[str] = field(default_factory=list)  #: complete runs whose rows could not be read

    @property
    def ok(self) -> bool:
        return not self.failed


def run_batch(
    notebooks: Iterable[str],
    presets: Iterable[str],
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    notebooks_dir: Path | str = NOTEBOOKS_DIR,
    presets_dir: Path | str = PRESETS_DIR,
    out_dir: Path | str = RUNS_DIR,
    force: bool = False,
    cluster: ClusterOptions | None = None,
    arithmetic: str | None = None,
) -> BatchResult:
    """Execute a batch (see :func:`~sdprobe.book.plan.plan_batch`), then derive its report.

    Everything that can be refused is refused before the first run: the plan, the output folder
    (:func:`~sdprobe.book.outputs.check_out_dir`), a report there the runner did not write
    (:func:`~sdprobe.book.outputs.check_report`) and the lock. With ``cluster`` the runs left
    to do execute as Ray tasks, in parallel, as they fit on the cluster; everything else is the
    same. Every run's kernel gets ``arithmetic`` (pinned by default).

    A run whose output already exists with the same parameters is skipped (unless ``force``);
    a failed run keeps ``<params>.failed.ipynb`` and the others go on. ``report.csv`` and
    ``report.md`` are then rebuilt from every complete run in ``out_dir``, those of earlier
    batches included, whatever failed now. The batch holds ``out_dir``'s lock
    (:func:`~sdprobe.book.outputs.batch_lock`) and first removes in-progress notebooks that a
    killed batch left behind.

    Raises:
        SelectionError: a bad plan, output folder or report, or the folder is locked.
        ReportError: the report could not be written after the runs (they are kept).
    """
    if cluster is not None and not isinstance(cluster, ClusterOptions):
        raise TypeError(f"cluster must be a ClusterOptions, not {type(cluster).__name__}")
    if cluster is not None and cluster.address not in (None, "auto"):
        check_ray_head(cluster.address, timeout=min(5.0, cluster.connect_timeout))  # before anything is written
    arithmetic = mode(arithmetic)
    out = check_out_dir(out_dir)
    runs = plan_batch(notebooks, presets, grid, notebooks_dir=notebooks_dir, presets_dir=presets_dir, out_dir=out)
    result = BatchResult()
    with batch_lock(out):
        check_report(out)
        remove_stale_partials(out)
        todo = []
        for run in runs:
            (todo if force or not run.is_complete() else result.skipped).append(run)
        finished = _execute_here(todo, arithmetic) if cluster is None else _execute_on_cluster(todo, cluster, arithmetic)
        try:
            for run, err in progress(finished, desc="runs" if cluster is None else "runs on Ray", unit="run",
                                     total=len(todo)):
                if err is None:
                    result.completed.append(run)
                else:
                    result.failed.append((run, err))
                    _say(f"FAILED {run.label}: {err.summary}")
        finally:  # an interrupted batch still leaves the report of every run it finished
            order = {run.output: k for k, run in enumerate(runs)}  # the plan's order, whatever order runs finished in
            result.completed.sort(key=lambda run: order[run.output])
            result.failed.sort(key=lambda pair: order[pair[0].output])
            result.report, result.problems = gather_report(out)
            write_report(result.report, out)
    return result


def _execute_here(runs: list[Run], arithmetic: str) -> Iterator[tuple[Run, NotebookRunError | None]]:
    """Execute ``runs`` one after another in this process: ``(run, error or None)`` as each ends."""
    for run in runs:
        try:
            execute_notebook(run.source, run.output, run.parameters, arithmetic=arithmetic)
        except NotebookRunError as err:
            yield run, err
        else:
            yield run, None


def _execute_on_cluster(
    runs: list[Run], cluster: ClusterOptions, arithmetic: str
) -> Iterator[tuple[Run, NotebookRunError | None]]:
    """Execute ``runs`` as Ray tasks (:mod:`sdprobe.book.cluster`), yielding as they finish."""
    from sdprobe.book.cluster import execute_on_ray

    for run, failure in execute_on_ray(runs, cluster, arithmetic=arithmetic):
        if failure is None:
            yield run, None
        else:
            summary, partial = failure
            yield run, NotebookRunError(run.source, run.output, Path(partial) if partial else None, summary)


def _say(message: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(message)


# ----------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sdprobe.book.runs {book,batch} …``; returns the exit status (0 ok, 1 a run failed,
    2 a bad selection, 130 interrupted or ended by a signal)."""
    parser = argparse.ArgumentParser(prog="python -m sdprobe.book.runs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    book = sub.add_parser("book", help="execute chapters with their defaults into notebooks/NN_*.ipynb")
    batch = sub.add_parser("batch", help="execute notebooks × presets × grid into runs/")
    for p in (book, batch):
        p.add_argument("--notebooks", nargs="+", default=["all"], help="'all' or NN prefixes (default: all)")
        p.add_argument("--notebooks-dir", type=Path, default=NOTEBOOKS_DIR)
        p.add_argument("--arithmetic", choices=MODES, default=None,
                       help="avx2: the committed outputs' digits on any x86-64 processor (default, or "
                            f"${MODE_VARIABLE}); native: the processor's widest instructions")
    book.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                      help="notebooks executed at once, one thread each (default: 2, or 1 on one core)")
    batch.add_argument("--presets", nargs="+", default=["default"], help="preset names (default: default)")
    batch.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2",
                       help="a grid axis for every preset (repeat for more axes); values as written, read as the "
                            "parameter's type")
    batch.add_argument("--out", type=str, default=str(RUNS_DIR), help="output folder (default: runs/)")
    batch.add_argument("--presets-dir", type=Path, default=PRESETS_DIR)
    batch.add_argument("--force", action="store_true", help="re-execute runs that are already complete")
    batch.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="run on Ray: join the cluster at ADDRESS, or start a local one without it")
    batch.add_argument("--gpus-per-run", type=float, default=None,
                       help="with --ray: GPUs per run (default: 1 when the cluster has GPUs, else 0)")
    batch.add_argument("--cpus-per-run", type=float, default=None, help="with --ray: CPUs per run (default: 1)")
    batch.add_argument("--retries", type=int, default=None, help="with --ray: restarts of a run whose worker died "
                                                                 "(default: 2)")
    args = parser.parse_args(argv)
    if args.command == "batch":
        ray_only = [f"--{n.replace('_', '-')}" for n in ("gpus_per_run", "cpus_per_run", "retries")
                    if getattr(args, n) is not None]
        if args.ray is None and ray_only:
            parser.error(f"{', '.join(ray_only)} need --ray")
        for name in ("gpus_per_run", "cpus_per_run"):
            value = getattr(args, name)
            if value is not None and not math.isfinite(value):
                parser.error(f"--{name.replace('_', '-')} must be a finite number, not {value}")
    try:
        arithmetic = mode(args.arithmetic)
    except ValueError as err:
        parser.error(f"${MODE_VARIABLE}: {err}")
    if arithmetic != "native" and (why := unpinnable()):
        print(f"note: arithmetic not pinned: {why}; the digits will differ from the committed outputs' "
              "in their last places", file=sys.stderr)

    terminate_on_signals()
    try:
        if args.command == "book":
            failures = run_book(args.notebooks, args.notebooks_dir, arithmetic=arithmetic, jobs=args.jobs)
            if failures:
                print(f"{len(failures)} notebook(s) failed: " + ", ".join(f.source.stem for f in failures))
            return 1 if failures else 0
        cluster = None
        if args.ray is not None:
            options = {"gpus_per_run": args.gpus_per_run, "cpus_per_run": args.cpus_per_run, "retries": args.retries}
            cluster = ClusterOptions(address=args.ray or None, **{k: v for k, v in options.items() if v is not None})
        result = run_batch(
            args.notebooks, args.presets, parse_grid(args.grid),
            notebooks_dir=args.notebooks_dir, presets_dir=args.presets_dir, out_dir=args.out, force=args.force,
            cluster=cluster, arithmetic=arithmetic,
        )
    except (SelectionError, ClusterError, ValueError) as err:  # ValueError: ClusterOptions' own checks
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        remove_kernel_files()
    print(f"{len(result.completed)} completed, {len(result.skipped)} skipped, {len(result.failed)} failed"
          f" · report: {Path(args.out) / 'report.md'} ({len(result.report)} rows)")
    for run, err in result.failed:
        print(f"  failed {run.label}: {err.summary}" + (f"\n    partial notebook: {err.partial}" if err.partial else ""))
    for problem in result.problems:
        print(f"  rows left out: {problem}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
