"""What a batch will run, decided before anything runs: notebooks, presets, grids, run names.

Nothing here touches the disk beyond reading sources and presets. Grid values from the command
line are strings as written, read as the type the notebook's parameter declares (``seed=010`` is
the integer 10 for an integer parameter, and stays ``"010"`` for a text one); a value that does
not fit that type, a key or value given twice, or two grid points with one run name are refused
in one line.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sdprobe.book.notebook import declared_parameters
from sdprobe.paths import NOTEBOOKS_DIR, PRESETS_DIR

__all__ = ["Run", "SelectionError", "expand_grid", "load_preset", "parse_grid", "plan_batch", "run_name",
           "select_notebooks", "typed_value"]

_NOTEBOOK_GLOB = "[0-9][0-9]_*.py"
_UNSAFE = re.compile(r"[^A-Za-z0-9.+-]+")
_MAX_NAME = 120
#: Run names never end like the runner's own files (``x.failed.ipynb`` is run ``x``'s failure).
_RESERVED_ENDINGS = (".failed", ".partial")
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_INTEGER = re.compile(r"^[+-]?\d+$")


class SelectionError(ValueError):
    """A notebook, preset or grid asked for does not exist or is malformed."""


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
        import nbformat

        if not self.output.is_file():
            return False
        try:
            nb = nbformat.read(str(self.output), as_version=4)
        except Exception:
            return False
        recorded = nb.metadata.get("papermill", {}).get("parameters") or {}
        return _jsonable(recorded) == _jsonable(self.parameters)


# ----------------------------------------------------------------------------- notebooks and presets


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
            a mapping, or its ``grid`` is not a mapping of name → non-empty list without repeats.
    """
    folder = Path(presets_dir) / notebook
    _check_plain_name(preset, "preset")
    path = folder / f"{preset}.yaml"
    if not path.is_file():
        existing = ", ".join(sorted(p.stem for p in folder.glob("*.yaml"))) or "none"
        raise SelectionError(f"no preset {preset!r} for {notebook} (looked for {path}); available: {existing}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SelectionError(f"{path}: not valid YAML ({getattr(err, 'problem', None) or err}{where})") from None
    if not isinstance(data, dict):
        raise SelectionError(f"{path}: a preset is a mapping of parameter: value")
    grid = data.pop("grid", None) or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise SelectionError(f"{path}: 'grid' maps each parameter to a non-empty list of values")
    for name, values in grid.items():
        _refuse_repeats(name, values, f"{path}: grid")
    return data, grid


# ----------------------------------------------------------------------------- grids


def parse_grid(specs: Iterable[str]) -> dict[str, list[str]]:
    """Parse command-line grid axes ``name=v1,v2``: each value the string as written.

    :func:`plan_batch` reads each value as its parameter's declared type.

    Raises:
        SelectionError: a malformed axis, a name given twice, or a value given twice.
    """
    grid: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise SelectionError(f"bad --grid {spec!r}: expected name=value1,value2")
        if not name.isidentifier():
            raise SelectionError(f"bad --grid {spec!r}: {name!r} is not a parameter name")
        if name in grid:
            raise SelectionError(f"--grid names {name!r} twice; give all its values at once: {name}=v1,v2")
        items = [v.strip() for v in values.split(",")]
        if not all(items):
            raise SelectionError(f"bad --grid {spec!r}: an empty value")
        _refuse_repeats(name, items, "--grid")
        grid[name] = items
    return grid


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every point of a parameter grid (the cartesian product, axes in the grid's order).

    An empty grid has exactly one point, ``{}``.
    """
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def typed_value(name: str, value: Any, default: Any) -> Any:
    """A command-line grid value (a string) read as the type of its parameter's ``default``.

    bool: ``true``/``false``; int: decimal digits; float: a finite number; str: as written;
    anything else (a ``None`` or list default): JSON if it parses (``null``, ``[1, 2]``), else the
    string. Values that are not strings (from a preset or a caller) pass unchanged.

    Raises:
        SelectionError: the value does not read as the declared type.
    """
    if not isinstance(value, str) or isinstance(default, str):
        return value
    expected = None
    if isinstance(default, bool):
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        expected = "true or false"
    elif isinstance(default, int):
        if _INTEGER.match(value):
            return int(value)
        expected = "a whole number"
    elif isinstance(default, float):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isfinite(number) and "_" not in value:
            return number
        expected = "a finite number"
    else:
        try:
            return json.loads(value)
        except ValueError:
            return value
    raise SelectionError(f"--grid {name}={value}: {name} is {expected} in the notebook (default {default!r}), "
                         f"not {value!r}")


def _refuse_repeats(name: str, values: Sequence[Any], where: str) -> None:
    seen: list[Any] = []
    for value in values:
        if any(_jsonable(value) == _jsonable(s) and type(value) is type(s) for s in seen):
            raise SelectionError(f"{where}: {name} lists {value!r} twice; each value runs once")
        seen.append(value)


# ----------------------------------------------------------------------------- run names


def run_name(point: Mapping[str, Any]) -> str:
    """A readable, deterministic, filesystem-safe name for a grid point: ``seed=1_steps=20``.

    Keys are sorted. ``{}`` is ``base``. A value that had to be altered to be safe (text with
    spaces, a list), a name that would end like the runner's own files (``.failed``,
    ``.partial``) or an over-long name gets a short hash of the exact point, so names stay unique
    and never collide with another run's kept failure.
    """
    if not point:
        return "base"
    raw = {str(key): _format_value(point[key]) for key in sorted(point, key=str)}
    safe = {_UNSAFE.sub("-", k): _UNSAFE.sub("-", v) for k, v in raw.items()}
    name = "_".join(f"{k}={v}" for k, v in safe.items())
    altered = list(safe.items()) != list(raw.items()) or name.lower().endswith(_RESERVED_ENDINGS)
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


def _check_plain_name(name: str, what: str) -> None:
    """A preset name is a file name in its notebook's folder: no path, no ``..``."""
    if not _PLAIN_NAME.match(name) or ".." in name:
        raise SelectionError(f"bad {what} name {name!r}: use a plain name such as 'default' or 'paper' "
                             "(letters, digits, '.', '_', '-'; no paths)")


def _split(values: Iterable[str]) -> list[str]:
    """Accept ``["00", "01"]`` as well as ``["00 01"]`` or ``["00,01"]``."""
    return [v for value in values for v in re.split(r"[\s,]+", value) if v]


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


# ----------------------------------------------------------------------------- the plan


def plan_batch(
    notebooks: Iterable[str],
    presets: Iterable[str],
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    notebooks_dir: Path | str = NOTEBOOKS_DIR,
    presets_dir: Path | str = PRESETS_DIR,
    out_dir: Path | str,
) -> list[Run]:
    """List every notebook × preset × grid point, without running anything.

    ``grid`` (from the command line) adds axes to, or replaces axes of, every preset's own grid;
    its string values are read as each parameter's declared type (:func:`typed_value`).

    Raises:
        SelectionError: an unknown notebook or preset, a malformed preset, a grid value of the
            wrong type, or two grid points that would write one file.
    """
    out = Path(out_dir).resolve()
    runs: list[Run] = []
    for source in select_notebooks(notebooks, notebooks_dir):
        declared = declared_parameters(source)
        extra = {name: [typed_value(name, v, declared.get(name)) for v in values]
                 for name, values in (grid or {}).items()}
        for preset in dict.fromkeys(_split(presets)):
            values, own_grid = load_preset(source.stem, preset, presets_dir)
            unknown = sorted((set(values) | set(own_grid) | set(extra)) - set(declared))
            if unknown:
                raise SelectionError(f"{source.stem}/{preset}: {', '.join(unknown)} not parameters of the notebook; "
                                     f"it declares {', '.join(declared)}")
            for name, axis in extra.items():
                _refuse_repeats(name, axis, f"{source.stem}: --grid")
            names: dict[str, dict[str, Any]] = {}
            for point in expand_grid({**own_grid, **extra}):
                name = run_name(point)
                if name in names:
                    raise SelectionError(f"{source.stem}/{preset}: grid points {names[name]} and {point} would both "
                                         f"be written to {name}.ipynb")
                names[name] = point
                runs.append(Run(source.resolve(), preset, point, {**values, **point}, out / source.stem / preset
                                / f"{name}.ipynb"))
    return runs
