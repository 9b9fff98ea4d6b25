"""Execute the chapter notebooks: the book's committed outputs and batch reruns over presets.

Two commands, both offline and both resumable::

    python -m sdprobe.book.runs book  --notebooks all               # what `make book` runs
    python -m sdprobe.book.runs batch --notebooks 00 01 --presets default paper [--grid seed=1,2]
    python -m sdprobe.book.runs batch --notebooks 03 --presets paper --ray [ADDRESS]   # on Ray

``book`` executes each ``notebooks/NN_*.py`` (the jupytext source) with its own default
parameters into the paired ``NN_*.ipynb``. ``batch`` executes every notebook × preset × grid
point into ``runs/<notebook>/<preset>/<params>.ipynb``, skips runs already complete, keeps the
partial notebook of a failed run as ``<params>.failed.ipynb``, and gathers every run's
reproduction report into ``runs/report.csv`` and ``runs/report.md``. With ``--ray`` the runs
left to do execute as tasks on a Ray cluster (:mod:`sdprobe.book.cluster`), with the same
guarantees.

Every notebook is written atomically: a final ``.ipynb`` exists only after a successful run.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import yaml

from sdprobe.book.notebook import REPORT_KEY, declared_parameters
from sdprobe.paths import NOTEBOOKS_DIR, PRESETS_DIR, REPO_ROOT
from sdprobe.progress import progress, progress_enabled

__all__ = [
    "BatchLockedError", "BatchResult", "NotebookRunError", "Run", "SelectionError",
    "batch_lock", "execute_notebook", "expand_grid", "failed_path", "gather_report", "load_preset",
    "main", "merge_reports", "parse_grid", "plan_batch", "read_report", "read_report_rows", "run_batch",
    "run_book", "run_name", "select_notebooks", "write_report",
]

RUNS_DIR = REPO_ROOT / "runs"
REPORT_COLUMNS = ["notebook", "preset", "params", "what", "paper", "ours", "unit", "ci", "n", "test", "p", "rule",
                  "verdict", "model"]
_NOTEBOOK_GLOB = "[0-9][0-9]_*.py"
_UNSAFE = re.compile(r"[^A-Za-z0-9.+-]+")
_MAX_NAME = 120


class SelectionError(ValueError):
    """A notebook, preset or grid asked for does not exist or is malformed."""


class NotebookRunError(RuntimeError):
    """A notebook failed to execute.

    Attributes:
        source: the jupytext source that was executed.
        output: the final path that was NOT written.
        partial: the partial executed notebook (``<name>.failed.ipynb``), or None if execution
            never produced one (e.g. the kernel did not start).
        summary: one line saying where and why it failed.
    """

    def __init__(self, source: Path, output: Path, partial: Path | None, summary: str) -> None:
        self.source, self.output, self.partial, self.summary = source, output, partial, summary
        where = f"; partial notebook: {partial}" if partial else ""
        super().__init__(f"{source.name}: {summary}{where}")


# ----------------------------------------------------------------------------- one notebook


def failed_path(output: Path) -> Path:
    """Where a failed run's partial notebook is kept: ``<name>.failed.ipynb`` beside ``output``."""
    output = Path(output)
    return output.with_name(output.name.removesuffix(".ipynb") + ".failed.ipynb")


def execute_notebook(
    source_py: Path | str,
    output_ipynb: Path | str,
    parameters: Mapping[str, Any] | None = None,
    *,
    kernel_name: str = "python3",
    progress_bar: bool | None = None,
    cwd: Path | str | None = None,
) -> Path:
    """Execute a jupytext ``.py`` notebook with papermill and write the result atomically.

    The notebook runs from its own folder (as nbval does) unless ``cwd`` says otherwise. It is
    written to a hidden temporary file beside ``output_ipynb`` and moved into place only on
    success, so ``output_ipynb`` is never half-written and keeps its old content on failure.

    Args:
        source_py: the jupytext percent-format source.
        output_ipynb: where the executed notebook goes (its folder is created).
        parameters: papermill parameters; None or empty injects no cell (the defaults run).
        kernel_name: the Jupyter kernel to run.
        progress_bar: papermill's per-cell bar; defaults to :func:`progress_enabled`.
        cwd: working directory of the kernel; defaults to the source's folder.

    Returns:
        ``output_ipynb`` as a Path.

    Raises:
        NotebookRunError: execution failed; the partial notebook is kept as
            :func:`failed_path` ``(output_ipynb)`` when there is one.
    """
    import jupytext
    import papermill

    source, output = Path(source_py).resolve(), Path(output_ipynb).resolve()
    if output.suffix != ".ipynb":
        raise ValueError(f"the output must be an .ipynb file, got {output}")
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.stem}.", suffix=".partial.ipynb")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        nb = papermill.execute_notebook(
            jupytext.read(source),
            str(tmp),
            parameters=dict(parameters or {}),
            kernel_name=kernel_name,
            language="python",
            progress_bar=progress_enabled() if progress_bar is None else progress_bar,
            cwd=str(cwd or source.parent),
        )
        _stamp_paths(nb, source, output)
        nbformat.write(nb, str(tmp))
        os.replace(tmp, output)
    except BaseException as err:
        partial = _keep_partial(tmp, source, output)
        if not isinstance(err, Exception):  # KeyboardInterrupt, SystemExit: keep them as they are
            raise
        raise NotebookRunError(source, output, partial, _summarise(err)) from err
    stale = failed_path(output)
    if stale.exists():
        stale.unlink()
    return output


def _stamp_paths(nb: nbformat.NotebookNode, source: Path, output: Path) -> None:
    """Record readable, machine-independent paths (papermill stores the temp path and, for an
    in-memory input, the whole input notebook)."""
    meta = nb.metadata.setdefault("papermill", {})
    meta["input_path"] = os.path.relpath(source, output.parent)
    meta["output_path"] = output.name


def _keep_partial(tmp: Path, source: Path, output: Path) -> Path | None:
    """Move what papermill wrote so far to ``<name>.failed.ipynb``; drop the temp file."""
    target = failed_path(output)
    try:
        nb = nbformat.read(str(tmp), as_version=4)
    except Exception:  # nothing (readable) was written: the kernel never ran a cell
        tmp.unlink(missing_ok=True)
        return None
    _stamp_paths(nb, source, output)
    nb.metadata["papermill"]["output_path"] = target.name
    nbformat.write(nb, str(tmp))
    os.replace(tmp, target)
    return target


def _summarise(err: BaseException) -> str:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(err, PapermillExecutionError):
        value = " ".join(str(err.evalue).split())
        return f"In [{err.exec_count}]: {err.ename}: {value}"
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


# ----------------------------------------------------------------------------- selection


def select_notebooks(selectors: Iterable[str], notebooks_dir: Path | str = NOTEBOOKS_DIR) -> list[Path]:
    """The chapter sources chosen by ``selectors``: ``all``, an ``NN`` prefix or a full stem.

    Raises:
        SelectionError: a selector matches no notebook (the message lists those available).
    """
    available = sorted(Path(notebooks_dir).glob(_NOTEBOOK_GLOB))
    names = ", ".join(p.stem for p in available) or "none"
    chosen: list[Path] = []
    for sel in _split(selectors):
        if sel == "all":
            matches = available
        else:
            matches = [p for p in available if p.stem == sel or p.stem.split("_", 1)[0] == sel]
        if not matches:
            raise SelectionError(f"no notebook {sel!r} in {notebooks_dir}; available: {names} (or 'all')")
        chosen += [p for p in matches if p not in chosen]
    if not chosen:
        raise SelectionError(f"no notebooks selected; available: {names} (or 'all')")
    return chosen


def load_preset(
    notebook: str, preset: str, presets_dir: Path | str = PRESETS_DIR
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Read ``<presets_dir>/<notebook>/<preset>.yaml``: its parameters and its grid (maybe empty).

    Raises:
        SelectionError: the file is missing (the message lists the notebook's presets) or is not
            a mapping, or its ``grid`` is not a mapping of name → non-empty list.
    """
    folder = Path(presets_dir) / notebook
    _check_plain_name(preset, "preset")
    path = folder / f"{preset}.yaml"
    if not path.is_file():
        existing = ", ".join(sorted(p.stem for p in folder.glob("*.yaml"))) or "none"
        raise SelectionError(f"no preset {preset!r} for {notebook} (looked for {path}); available: {existing}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SelectionError(f"{path}: not valid YAML ({getattr(err, 'problem', None) or err}{where})") from None
    if not isinstance(data, dict):
        raise SelectionError(f"{path}: a preset is a mapping of parameter: value")
    grid = data.pop("grid", None) or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise SelectionError(f"{path}: 'grid' maps each parameter to a non-empty list of values")
    return data, grid


def parse_grid(specs: Iterable[str]) -> dict[str, list[Any]]:
    """Parse command-line grid axes ``name=v1,v2`` (values read as YAML: ``1``, ``0.5``, ``true``)."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise SelectionError(f"bad --grid {spec!r}: expected name=value1,value2")
        if not name.strip().isidentifier():
            raise SelectionError(f"bad --grid {spec!r}: {name.strip()!r} is not a parameter name")
        try:
            grid[name.strip()] = [yaml.safe_load(v) for v in values.split(",")]
        except yaml.YAMLError:
            raise SelectionError(f"bad --grid {spec!r}: a value is not valid YAML") from None
    return grid


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every point of a parameter grid (the cartesian product, axes in the grid's order).

    An empty grid has exactly one point, ``{}``.
    """
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def run_name(point: Mapping[str, Any]) -> str:
    """A readable, deterministic, filesystem-safe name for a grid point: ``seed=1_steps=20``.

    Keys are sorted. ``{}`` is ``base``. A value that had to be altered to be safe (text with
    spaces, a list) or an over-long name gets a short hash of the exact point, so names stay unique.
    """
    if not point:
        return "base"
    raw = {str(key): _format_value(point[key]) for key in sorted(point, key=str)}
    safe = {_UNSAFE.sub("-", k): _UNSAFE.sub("-", v) for k, v in raw.items()}
    altered = list(safe.items()) != list(raw.items())
    name = "_".join(f"{k}={v}" for k, v in safe.items())
    if altered or len(name) > _MAX_NAME:
        digest = hashlib.sha1(json.dumps(point, sort_keys=True, default=str).encode()).hexdigest()[:8]
        name = f"{name[:_MAX_NAME - 9]}_{digest}"
    return name


def _format_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)  # true / false / null, as written in the preset
    if isinstance(value, (list, tuple)):
        return "-".join(_format_value(v) for v in value)
    return str(value)


_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _check_plain_name(name: str, what: str) -> None:
    """A preset name is a file name in its notebook's folder: no path, no ``..``."""
    if not _PLAIN_NAME.match(name) or ".." in name:
        raise SelectionError(f"bad {what} name {name!r}: use a plain name such as 'default' or 'paper' "
                             "(letters, digits, '.', '_', '-'; no paths)")


def _split(values: Iterable[str]) -> list[str]:
    """Accept ``["00", "01"]`` as well as ``["00 01"]`` or ``["00,01"]``."""
    return [v for value in values for v in re.split(r"[\s,]+", value) if v]


# ----------------------------------------------------------------------------- the book


def run_book(selectors: Iterable[str] = ("all",), notebooks_dir: Path | str = NOTEBOOKS_DIR) -> list[NotebookRunError]:
    """Execute the chosen chapters with their default parameters into their paired ``.ipynb``.

    Every chosen notebook is tried; a failed one keeps its previous ``.ipynb`` untouched and its
    partial run as ``NN_name.failed.ipynb``. Returns the failures (empty when all succeeded).
    """
    failures: list[NotebookRunError] = []
    for source in progress(select_notebooks(selectors, notebooks_dir), desc="notebooks", unit="nb"):
        start = time.monotonic()
        try:
            execute_notebook(source, source.with_suffix(".ipynb"))
        except NotebookRunError as err:
            failures.append(err)
            _say(f"FAILED {source.stem}: {err.summary}" + (f" (partial: {err.partial})" if err.partial else ""))
        else:
            _say(f"ok     {source.stem} ({time.monotonic() - start:.0f} s)")
    return failures


# ----------------------------------------------------------------------------- batches


@dataclass(frozen=True)
class Run:
    """One batch run: a notebook with a preset at one grid point."""

    source: Path
    preset: str
    point: dict[str, Any]
    parameters: dict[str, Any]
    output: Path

    @property
    def notebook(self) -> str:
        return self.source.stem

    @property
    def name(self) -> str:
        return run_name(self.point)

    @property
    def label(self) -> str:
        return f"{self.notebook}/{self.preset}/{self.name}"

    def is_complete(self) -> bool:
        """True when the output exists and was run with exactly these parameters."""
        if not self.output.is_file():
            return False
        try:
            nb = nbformat.read(str(self.output), as_version=4)
        except Exception:
            return False
        recorded = nb.metadata.get("papermill", {}).get("parameters") or {}
        return _jsonable(recorded) == _jsonable(self.parameters)


@dataclass
class BatchResult:
    """What a batch did: runs executed now, skipped as already complete, and failed."""

    completed: list[Run] = field(default_factory=list)
    skipped: list[Run] = field(default_factory=list)
    failed: list[tuple[Run, NotebookRunError]] = field(default_factory=list)
    report: Any = None  #: the gathered pandas DataFrame (columns REPORT_COLUMNS)

    @property
    def ok(self) -> bool:
        return not self.failed


def plan_batch(
    notebooks: Iterable[str],
    presets: Iterable[str],
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    notebooks_dir: Path | str = NOTEBOOKS_DIR,
    presets_dir: Path | str = PRESETS_DIR,
    out_dir: Path | str = RUNS_DIR,
) -> list[Run]:
    """List every notebook × preset × grid point, without running anything.

    ``grid`` (from the command line) adds axes to, or replaces axes of, every preset's own grid.

    Raises:
        SelectionError: an unknown notebook or preset, or a malformed preset.
    """
    out = Path(out_dir).resolve()
    runs: list[Run] = []
    for source in select_notebooks(notebooks, notebooks_dir):
        declared = declared_parameters(source)
        for preset in dict.fromkeys(_split(presets)):
            values, own_grid = load_preset(source.stem, preset, presets_dir)
            unknown = sorted((set(values) | set(own_grid) | set(grid or {})) - set(declared))
            if unknown:
                raise SelectionError(f"{source.stem}/{preset}: {', '.join(unknown)} not parameters of the notebook; "
                                     f"it declares {', '.join(declared)}")
            for point in expand_grid({**own_grid, **(grid or {})}):
                output = out / source.stem / preset / f"{run_name(point)}.ipynb"
                runs.append(Run(source.resolve(), preset, point, {**values, **point}, output))
    return runs


def run_batch(
    notebooks: Iterable[str],
    presets: Iterable[str],
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    notebooks_dir: Path | str = NOTEBOOKS_DIR,
    presets_dir: Path | str = PRESETS_DIR,
    out_dir: Path | str = RUNS_DIR,
    force: bool = False,
    cluster: Any = None,
) -> BatchResult:
    """Execute a batch (see :func:`plan_batch`), then write the gathered report.

    With ``cluster`` (a :class:`sdprobe.book.cluster.ClusterOptions`) the runs left to do
    execute as Ray tasks, in parallel, as they fit on the cluster; everything else is the same.

    A run whose output already exists with the same parameters is skipped (unless ``force``);
    a failed run keeps ``<params>.failed.ipynb`` and the others go on. The reproduction-report
    rows of every complete run (executed now or skipped) go to ``report.csv`` and ``report.md``
    in ``out_dir``, merged with the rows earlier batches wrote there for other runs. The batch
    holds ``out_dir``'s lock (:func:`batch_lock`) and first removes in-progress notebooks that a
    killed batch left behind.
    """
    runs = plan_batch(notebooks, presets, grid, notebooks_dir=notebooks_dir, presets_dir=presets_dir, out_dir=out_dir)
    result = BatchResult()
    with batch_lock(out_dir):
        _remove_stale_partials(out_dir)
        todo = []
        for run in runs:
            (todo if force or not run.is_complete() else result.skipped).append(run)
        finished = _execute_here(todo) if cluster is None else _execute_on_cluster(todo, cluster)
        for run, err in progress(finished, desc="runs" if cluster is None else "runs on Ray", unit="run",
                                 total=len(todo)):
            if err is None:
                result.completed.append(run)
            else:
                result.failed.append((run, err))
                _say(f"FAILED {run.label}: {err.summary}")
        order = {run.output: k for k, run in enumerate(runs)}  # the plan's order, whatever order runs finished in
        result.completed.sort(key=lambda run: order[run.output])
        result.failed.sort(key=lambda pair: order[pair[0].output])
        done = [r for r in runs if r in result.completed or r in result.skipped]
        result.report = merge_reports(read_report(out_dir), gather_report(done), runs)
        write_report(result.report, out_dir)
    return result


def _execute_here(runs: list[Run]) -> Iterator[tuple[Run, NotebookRunError | None]]:
    """Execute ``runs`` one after another in this process: ``(run, error or None)`` as each ends."""
    for run in runs:
        try:
            execute_notebook(run.source, run.output, run.parameters)
        except NotebookRunError as err:
            yield run, err
        else:
            yield run, None


def _execute_on_cluster(runs: list[Run], cluster: Any) -> Iterator[tuple[Run, NotebookRunError | None]]:
    """Execute ``runs`` as Ray tasks (:mod:`sdprobe.book.cluster`), yielding as they finish."""
    from sdprobe.book.cluster import execute_on_ray

    for run, failure in execute_on_ray(runs, cluster):
        if failure is None:
            yield run, None
        else:
            summary, partial = failure
            yield run, NotebookRunError(run.source, run.output, Path(partial) if partial else None, summary)


class BatchLockedError(SelectionError):
    """Another batch is writing to the same output folder."""


@contextmanager
def batch_lock(out_dir: Path | str = RUNS_DIR) -> Iterator[Path]:
    """Hold ``<out_dir>/.batch.lock`` for the duration of a batch, so two batches never write
    the same folder at once. A lock left by a process that no longer runs is taken over.

    Raises:
        BatchLockedError: a running process holds the lock (its pid is in the message).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lock = out / ".batch.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = _lock_holder(lock)
            if holder is not None and _alive(holder):
                raise BatchLockedError(f"another batch (pid {holder}) is writing to {out}; wait for it to finish, "
                                       f"or use another --out") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        break
    else:
        raise BatchLockedError(f"could not take the lock {lock}")
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)


def _lock_holder(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_partials(out_dir: Path | str) -> list[Path]:
    """Delete the hidden in-progress notebooks (``.<name>.*.partial.ipynb``) a killed batch left;
    under the batch lock nothing else can be writing them."""
    stale = sorted(Path(out_dir).rglob(".*.partial.ipynb"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def read_report_rows(notebook: Path | str) -> list[dict[str, Any]]:
    """The reproduction-report rows an executed notebook carries in its output metadata."""
    nb = nbformat.read(str(notebook), as_version=4)
    rows: list[dict[str, Any]] = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            rows += [dict(r) for r in output.get("metadata", {}).get(REPORT_KEY, [])]
    return rows


def gather_report(runs: Iterable[Run]):
    """One table of every run's report rows, one column per field of :data:`REPORT_COLUMNS`."""
    import pandas as pd

    records = [
        {"notebook": run.notebook, "preset": run.preset, "params": run.name, **row}
        for run in runs
        for row in read_report_rows(run.output)
    ]
    frame = pd.DataFrame.from_records(records, columns=REPORT_COLUMNS).astype(object)
    return frame.where(frame.notna(), "")


def read_report(out_dir: Path | str = RUNS_DIR):
    """The gathered table an earlier batch wrote to ``report.csv`` (empty if there is none)."""
    import pandas as pd

    path = Path(out_dir) / "report.csv"
    if not path.is_file():
        return pd.DataFrame(columns=REPORT_COLUMNS)
    return pd.read_csv(path, dtype=str, keep_default_na=False).reindex(columns=REPORT_COLUMNS, fill_value="")


def merge_reports(earlier, latest, runs: Iterable[Run]):
    """Earlier rows of runs this batch did not plan, then the rows of this batch's complete runs:
    one row set per run, whatever the order batches ran in."""
    import pandas as pd

    planned = {(r.notebook, r.preset, r.name) for r in runs}
    keys = list(zip(earlier["notebook"], earlier["preset"], earlier["params"]))
    kept = earlier[[k not in planned for k in keys]]
    merged = pd.concat([kept, latest], ignore_index=True) if len(kept) else latest
    return merged.sort_values(["notebook", "preset", "params"], kind="stable").reset_index(drop=True)


def write_report(report, out_dir: Path | str = RUNS_DIR) -> tuple[Path, Path]:
    """Write the gathered table as ``report.csv`` and ``report.md`` (atomically); return both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "report.csv", out / "report.md"
    _write_text(csv_path, report.to_csv(index=False))
    _write_text(md_path, _markdown(report))
    return csv_path, md_path


def _markdown(table) -> str:
    def cell(value: Any) -> str:
        return " ".join(str(value).split()).replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, table.columns)) + " |", "|" + " --- |" * len(table.columns)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _say(message: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(message)


# ----------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sdprobe.book.runs {book,batch} …``; returns the exit status (0 ok, 1 a run failed,
    2 a bad selection, 130 interrupted)."""
    parser = argparse.ArgumentParser(prog="python -m sdprobe.book.runs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    book = sub.add_parser("book", help="execute chapters with their defaults into notebooks/NN_*.ipynb")
    batch = sub.add_parser("batch", help="execute notebooks × presets × grid into runs/")
    for p in (book, batch):
        p.add_argument("--notebooks", nargs="+", default=["all"], help="'all' or NN prefixes (default: all)")
        p.add_argument("--notebooks-dir", type=Path, default=NOTEBOOKS_DIR)
    batch.add_argument("--presets", nargs="+", default=["default"], help="preset names (default: default)")
    batch.add_argument("--grid", nargs="+", action="extend", default=[], metavar="NAME=V1,V2",
                       help="extra grid axes for every preset")
    batch.add_argument("--out", type=Path, default=RUNS_DIR, help="output folder (default: runs/)")
    batch.add_argument("--presets-dir", type=Path, default=PRESETS_DIR)
    batch.add_argument("--force", action="store_true", help="re-execute runs that are already complete")
    batch.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="run on Ray: join the cluster at ADDRESS, or start a local one without it")
    batch.add_argument("--gpus-per-run", type=float, default=None,
                       help="with --ray: GPUs per run (default: 1 when the cluster has GPUs, else 0)")
    batch.add_argument("--cpus-per-run", type=float, default=1.0, help="with --ray: CPUs per run (default: 1)")
    batch.add_argument("--retries", type=int, default=2, help="with --ray: restarts of a run whose worker died")
    args = parser.parse_args(argv)
    if args.command == "batch" and args.ray is None and (args.gpus_per_run is not None or args.cpus_per_run != 1.0):
        parser.error("--gpus-per-run and --cpus-per-run need --ray")

    try:
        if args.command == "book":
            failures = run_book(args.notebooks, args.notebooks_dir)
            if failures:
                print(f"{len(failures)} notebook(s) failed: " + ", ".join(f.source.stem for f in failures))
            return 1 if failures else 0
        cluster = None
        if args.ray is not None:
            from sdprobe.book.cluster import ClusterOptions

            try:
                cluster = ClusterOptions(address=args.ray or None, gpus_per_run=args.gpus_per_run,
                                         cpus_per_run=args.cpus_per_run, retries=args.retries)
            except ValueError as err:
                parser.error(str(err))
        result = run_batch(
            args.notebooks, args.presets, parse_grid(args.grid),
            notebooks_dir=args.notebooks_dir, presets_dir=args.presets_dir, out_dir=args.out, force=args.force,
            cluster=cluster,
        )
    except SelectionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        from sdprobe.book.cluster import ClusterError

        if not isinstance(err, ClusterError):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    print(f"{len(result.completed)} completed, {len(result.skipped)} skipped, {len(result.failed)} failed"
          f" · report: {Path(args.out) / 'report.md'} ({len(result.report)} rows)")
    for run, err in result.failed:
        print(f"  failed {run.label}: {err.summary}" + (f"\n    partial notebook: {err.partial}" if err.partial else ""))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
