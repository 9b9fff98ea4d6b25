"""A batch's output folder: who may write it, what is left over, and the report derived from it.

``<out>/<notebook>/<preset>/<run>.ipynb`` are the complete runs (written atomically, so a file
there is a finished run); ``<run>.failed.ipynb`` keeps a failure; hidden ``.<run>.*.partial.ipynb``
files are runs in progress. ``report.csv`` and ``report.md`` are derived: rebuilt from the
complete runs on disk after every batch, whatever failed, so no row is ever lost, and refused
before any run when the runner did not write them (it would overwrite them otherwise).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat

from sdprobe.book.execution import file_mode, partial_pattern
from sdprobe.book.notebook import REPORT_KEY
from sdprobe.book.plan import SelectionError

__all__ = ["REPORT_COLUMNS", "BatchLockedError", "ReportError", "batch_lock", "check_out_dir", "check_report",
           "gather_report", "read_report", "read_report_rows", "remove_stale_partials", "write_report"]

#: The columns of ``report.csv`` and ``report.md``, in order.
REPORT_COLUMNS = ["notebook", "preset", "params", "claim", "what", "paper", "ours", "unit", "ci", "n", "test", "p", "rule",
                  "verdict", "reason", "model"]
_STAMP = ".report.sha256"  # what the runner last wrote, so that a report it did not write is recognised


class BatchLockedError(SelectionError):
    """Another batch is writing to the same output folder."""


class ReportError(SelectionError):
    """The output folder or its report cannot be used as it is."""


# ----------------------------------------------------------------------------- the folder


def check_out_dir(out_dir: Path | str) -> Path:
    """The output folder, created if needed and checked to be a writable folder.

    Raises:
        ReportError: empty, a file, under a file, or not creatable or writable (read-only file
            system, permissions), in one line.
    """
    if not str(out_dir).strip():
        raise ReportError("--out is empty: name a folder (default: runs/)")
    out = Path(out_dir).expanduser()
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            raise ReportError(f"--out {out}: {parent} is a file, not a folder")
        if parent.exists():
            break
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ReportError(f"cannot create --out {out}: {err.strerror or err}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ReportError(f"cannot write into --out {out}: permission denied")
    probe = None
    try:  # a read-only mount passes os.access for root
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-test.")
        os.close(fd)
    except OSError as err:
        raise ReportError(f"cannot write into --out {out}: {err.strerror or err}") from None
    finally:
        if probe:
            Path(probe).unlink(missing_ok=True)
    return out


@contextmanager
def batch_lock(out_dir: Path | str) -> Iterator[Path]:
    """Hold ``<out_dir>/.batch.lock`` for the duration of a batch, so two batches never write the
    same folder at once.

    The lock is the operating system's (``flock``) on a file that is never deleted: exclusive
    however many processes race for it, released when its holder ends however it ends, so a
    lock is stale exactly when its owner is gone. The holder writes its pid into the file for the
    message others get.

    Raises:
        BatchLockedError: a running process holds the lock (its pid is in the message).
    """
    import fcntl

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lock = out / ".batch.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            who = f"pid {holder}" if holder.isdigit() else "another process"
            raise BatchLockedError(f"another batch ({who}) is writing to {out}; wait for it to finish, "
                                   "or use another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield lock
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def remove_stale_partials(out_dir: Path | str) -> list[Path]:
    """Delete the in-progress notebooks a killed batch left (``.<run>.<8 characters>.partial.ipynb``
    where a run's output goes); under the batch lock nothing else can be writing them. Other
    files, hidden or not, are left alone."""
    stale = []
    for path in sorted(Path(out_dir).glob("*/*/.*.partial.ipynb")):
        stem = path.name[1:].rsplit(".", 3)[0]
        if partial_pattern(path.with_name(f"{stem}.ipynb")).match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            stale.append(path)
    return stale


# ----------------------------------------------------------------------------- the report


def read_report_rows(notebook: Path | str) -> list[dict[str, Any]]:
    """The reproduction-report rows an executed notebook carries in its output metadata.

    Raises:
        ReportError: the notebook cannot be read, or its report metadata is not a list of rows.
    """
    try:
        nb = nbformat.read(str(notebook), as_version=4)
    except Exception as err:
        raise ReportError(f"{notebook}: not a readable notebook ({type(err).__name__})") from None
    rows: list[dict[str, Any]] = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get(REPORT_KEY)
            if meta is None:
                continue
            if not isinstance(meta, list) or not all(isinstance(r, Mapping) for r in meta):
                raise ReportError(f"{notebook}: its report metadata ({REPORT_KEY}) is not a list of rows")
            rows += [dict(r) for r in meta]
    return rows


def complete_runs(out_dir: Path | str) -> list[Path]:
    """Every complete run in the folder: ``<notebook>/<preset>/<run>.ipynb`` written by papermill."""
    found = []
    for path in sorted(Path(out_dir).glob("*/*/*.ipynb")):
        if path.name.startswith(".") or path.name.endswith(".failed.ipynb") or not path.is_file():
            continue
        found.append(path)
    return found


def gather_report(out_dir: Path | str) -> tuple[Any, list[str]]:
    """One table of the report rows of every complete run in ``out_dir`` (columns
    :data:`REPORT_COLUMNS`), and a line for each notebook whose rows could not be read."""
    import pandas as pd

    records, problems = [], []
    for path in complete_runs(out_dir):
        try:
            rows = read_report_rows(path)
        except ReportError as err:
            problems.append(str(err))
            continue
        notebook, preset = path.parent.parent.name, path.parent.name
        records += [{**{k: _cell(v) for k, v in row.items() if k in REPORT_COLUMNS},
                     "notebook": notebook, "preset": preset, "params": path.stem} for row in rows]
    frame = pd.DataFrame.from_records(records, columns=REPORT_COLUMNS).astype(object)
    frame = frame.where(frame.notna(), "")
    return frame.sort_values(["notebook", "preset", "params"], kind="stable").reset_index(drop=True), problems


def _cell(value: Any) -> Any:
    return "" if value is None else value


def check_report(out_dir: Path | str) -> None:
    """Refuse, before any run, a ``report.csv`` or ``report.md`` this runner did not write.

    The runner's own are recognised by the digest it keeps beside them; a ``report.csv`` from an
    earlier version, without one, must still read as exactly the runner's columns.

    Raises:
        ReportError: a folder in the report's place, a file that is not the runner's (foreign,
            edited, with a hand-added column) or that cannot be read, in one line.
    """
    out = Path(out_dir)
    csv_path, md_path = out / "report.csv", out / "report.md"
    present = [p for p in (csv_path, md_path) if p.exists() or p.is_symlink()]
    if not present:
        return
    for path in present:
        if not path.is_file():
            raise ReportError(f"{path} is not a file; the runner writes its report there: move it away or use another --out")
    stamp = out / _STAMP
    if stamp.is_file():
        if set(_digests(present)) <= set(stamp.read_text(encoding="utf-8", errors="replace").split()):
            return
        changed = ", ".join(p.name for p in present)
        raise ReportError(f"{changed} in {out} changed after the batch runner wrote them, and the runner would "
                          "overwrite them: move them away or use another --out")
    if csv_path in present:  # written by an earlier version of the runner, which kept no digest
        _check_own_csv(csv_path)
    if md_path in present and not md_path.read_bytes().startswith(_markdown_header().encode()):
        raise ReportError(f"{md_path} was not written by the batch runner, which would overwrite it: move it away "
                          "or use another --out")


def _check_own_csv(path: Path) -> None:
    refuse = f"{path} was not written by the batch runner, which would overwrite it"
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ReportError(f"{refuse}: it is not UTF-8 text; move it away or use another --out") from None
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as err:
        raise ReportError(f"{refuse}: it is not valid CSV ({err}); move it away or use another --out") from None
    if not rows:
        raise ReportError(f"{refuse}: it is empty; move it away or use another --out")
    if rows[0] != REPORT_COLUMNS:
        extra = sorted(set(rows[0]) - set(REPORT_COLUMNS))
        what = f"it has columns the runner does not write ({', '.join(extra)})" if extra else \
            f"its columns are {', '.join(rows[0]) or 'none'}"
        raise ReportError(f"{refuse}: {what}; move it away or use another --out")
    bad = next((k for k, row in enumerate(rows[1:], 2) if len(row) != len(REPORT_COLUMNS)), None)
    if bad is not None:
        raise ReportError(f"{refuse}: line {bad} has {len(rows[bad - 1])} fields, not {len(REPORT_COLUMNS)}; "
                          "move it away or use another --out")


def read_report(out_dir: Path | str):
    """The table the last batch wrote to ``report.csv`` (empty if there is none).

    Raises:
        ReportError: the file is not the runner's or cannot be read (:func:`check_report`).
    """
    import pandas as pd

    check_report(out_dir)
    path = Path(out_dir) / "report.csv"
    if not path.is_file():
        return pd.DataFrame(columns=REPORT_COLUMNS)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def write_report(report, out_dir: Path | str) -> tuple[Path, Path]:
    """Write the gathered table as ``report.csv`` and ``report.md``, both or neither: each goes
    to a temporary file first, and only when both are written do they replace the old ones.

    Raises:
        ReportError: they could not be written (a full disk…); the old report stays as it was.
    """
    out = Path(out_dir)
    targets = {out / "report.csv": report.to_csv(index=False), out / "report.md": _markdown(report)}
    temps: list[str] = []
    try:
        for path, text in targets.items():
            fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{path.name}.", suffix=".tmp")
            temps.append(tmp)
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(text)
            os.chmod(tmp, file_mode())
        for tmp, path in zip(temps, targets):
            os.replace(tmp, path)
        _write_stamp(out, list(targets))
    except OSError as err:
        raise ReportError(f"could not write the report in {out}: {err.strerror or err}; the runs themselves "
                          "are kept, and the next batch writes it again") from None
    finally:
        for tmp in temps:
            Path(tmp).unlink(missing_ok=True)
    return tuple(targets)  # type: ignore[return-value]


def _write_stamp(out: Path, paths: Sequence[Path]) -> None:
    stamp = out / _STAMP
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f"{_STAMP}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(_digests(paths)) + "\n")
        os.chmod(tmp, file_mode())
        os.replace(tmp, stamp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _digests(paths: Sequence[Path]) -> list[str]:
    return [f"{p.name}:{hashlib.sha256(p.read_bytes()).hexdigest()}" for p in sorted(paths)]


def _markdown_header() -> str:
    return "| " + " | ".join(REPORT_COLUMNS) + " |\n"


def _markdown(table) -> str:
    def cell(value: Any) -> str:
        return " ".join(str(value).split()).replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, table.columns)) + " |", "|" + " --- |" * len(table.columns)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"
