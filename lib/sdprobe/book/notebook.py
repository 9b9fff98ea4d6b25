"""What every chapter notebook shares: checked parameters, the reproduction report, Colab set-up.

A chapter starts with a papermill ``parameters`` cell of plain assignments and checks it at once::

    # %% tags=["parameters"]
    model = "toy"
    steps = 50

    # %%
    P = sdprobe.check_parameters(globals(), {"model": Model(), "steps": Int(1, 1000)})

papermill only warns about names a notebook does not declare; :func:`check_parameters` stops
with a clear message instead, and on any bad value. It must run right after the parameters cell
(and papermill's injected cell), before any other plain value is assigned.
"""

from __future__ import annotations

import difflib
import html
import math
import re
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sdprobe.formatting import format_estimate

__all__ = [
    "Bool", "Choice", "Float", "Int", "ListOf", "Model", "ParameterError", "Size", "Str",
    "check_parameters", "declared_parameters", "finding_box", "glue_html", "in_colab", "reproduction_report",
    "verdict_key", "FINDING_KEY", "REPORT_KEY",
]

#: Output-metadata key under which a chapter's reproduction report travels (read by sdprobe.book.runs).
REPORT_KEY = "sdprobe_report"
_PLAIN = (bool, int, float, str, list, tuple, dict, type(None))
_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "P"}
#: Names IPython itself defines: ``_``, ``__``, ``_i``, ``_ii``, ``_i3``, ``_3``, ``_ih``, ``_oh``…
#: and dunders. Any other name, ``_steps`` too, is the notebook's or papermill's.
_IPYTHON_PRIVATE = re.compile(r"^(_{1,3}|_i{1,3}|_i\d+|_\d+|_ih|_oh|_dh|_sh|__\w+__)$")


class ParameterError(ValueError):
    """A notebook parameter is unknown or has a bad value."""


# ----------------------------------------------------------------------------- validators


@dataclass(frozen=True)
class Int:
    """An integer in ``[low, high]``."""

    low: int | None = None
    high: int | None = None

    def __call__(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParameterError(f"expected an integer, got {value!r}")
        _in_range(value, self.low, self.high)
        return value


@dataclass(frozen=True)
class Float:
    """A number in ``[low, high]``; integers are accepted."""

    low: float | None = None
    high: float | None = None

    def __call__(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParameterError(f"expected a number, got {value!r}")
        if not math.isfinite(value):  # NaN passes every comparison; guidance=nan would turn guidance off
            raise ParameterError(f"expected a finite number, got {value!r}")
        _in_range(value, self.low, self.high)
        return float(value)


@dataclass(frozen=True)
class Bool:
    def __call__(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ParameterError(f"expected True or False, got {value!r}")
        return value


@dataclass(frozen=True)
class Str:
    """A non-empty string (unless ``empty=True``)."""

    empty: bool = False

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ParameterError(f"expected a string, got {value!r}")
        if not self.empty and not value.strip():
            raise ParameterError("expected a non-empty string")
        return value


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of values."""

    options: tuple[Any, ...]

    def __call__(self, value: Any) -> Any:
        if value not in self.options:
            raise ParameterError(f"expected one of {list(self.options)}, got {value!r}")
        return value


@dataclass(frozen=True)
class Size:
    """An image side in pixels: a positive multiple of 8 (the VAE's downsampling)."""

    low: int = 64
    high: int = 2048

    def __call__(self, value: Any) -> int:
        value = Int(self.low, self.high)(value)
        if value % 8:
            raise ParameterError(f"image sizes must be multiples of 8, got {value}")
        return value


@dataclass(frozen=True)
class ListOf:
    """A list (or tuple) whose items all pass ``item``, with at least ``min_len`` of them, at most
    ``max_len`` (None: no limit), and no repeats when ``distinct``."""

    item: Callable[[Any], Any]
    min_len: int = 1
    max_len: int | None = None
    distinct: bool = False

    def __call__(self, value: Any) -> list[Any]:
        if not isinstance(value, (list, tuple)):
            raise ParameterError(f"expected a list, got {value!r}")
        if self.max_len == self.min_len and len(value) != self.min_len:
            raise ParameterError(f"expected exactly {self.min_len} item(s), got {len(value)}: {list(value)!r}")
        if len(value) < self.min_len:
            raise ParameterError(f"expected at least {self.min_len} item(s), got {len(value)}")
        if self.max_len is not None and len(value) > self.max_len:
            raise ParameterError(f"expected at most {self.max_len} item(s), got {len(value)}: {list(value)!r}")
        out = []
        for i, v in enumerate(value):
            try:
                out.append(self.item(v))
            except ParameterError as err:
                raise ParameterError(f"item {i}: {err}") from None
        if self.distinct and len(set(map(repr, out))) < len(out):
            raise ParameterError(f"expected different items, got {list(value)!r}")
        return out


@dataclass(frozen=True)
class Model:
    """A model name ``load_pipeline`` accepts: ``toy``, ``random:<family>``, a folder or a Hub id."""

    def __call__(self, value: Any) -> str:
        from sdprobe.models.loading import HUB_ID, RANDOM_FAMILIES

        value = Str()(value)
        if value == "toy" or value.startswith("random:") and value[7:] in RANDOM_FAMILIES:
            return value
        if Path(value).expanduser().is_dir() or HUB_ID.match(value):
            return value
        families = ", ".join(f"random:{f}" for f in RANDOM_FAMILIES)
        raise ParameterError(f"{value!r} is not 'toy', {families}, an existing folder or a Hub id 'org/name'")


DEVICE = Choice(("auto", "cpu", "cuda", "mps"))
DTYPE = Choice(("auto", "fp32", "fp16", "bf16"))
#: The ``judge`` parameter (:data:`sdprobe.analysis.judges.JUDGES`, written out: this module loads no torch).
JUDGE = Choice(("auto", "toy", "open-vocabulary"))


def _in_range(value: float, low: float | None, high: float | None) -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        raise ParameterError(f"{value!r} is outside [{low}, {high}]")


# ----------------------------------------------------------------------------- the check


def check_parameters(namespace: Mapping[str, Any], spec: Mapping[str, Callable[[Any], Any]]) -> SimpleNamespace:
    """Validate a notebook's parameters; return them, normalised, as ``P.name``.

    Args:
        namespace: the notebook's ``globals()`` right after the parameters cell.
        spec: parameter name → validator (``Int(1, 100)``, ``Model()``…); every declared
            parameter appears here, and nothing else.

    Raises:
        ParameterError: a parameter is missing, unknown (papermill's ``-p stpes 3``), or invalid.
    """
    problems: list[str] = []
    values: dict[str, Any] = {}
    for name, check in spec.items():
        if name not in namespace:
            problems.append(f"{name}: missing (declare it in the parameters cell)")
            continue
        try:
            values[name] = check(namespace[name])
        except ParameterError as err:
            problems.append(f"{name}: {err}")
    for name in _unknown_names(namespace, spec):
        if name == "grid":
            problems.append("grid: a preset's parameter grid is for batch reruns; run it with `make rerun` (sdprobe.book.runs)")
            continue
        hint = difflib.get_close_matches(name, list(spec), n=1)
        problems.append(f"{name}: not a parameter of this notebook" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    if problems:
        declared = ", ".join(spec)
        raise ParameterError("bad notebook parameters:\n  " + "\n  ".join(problems) + f"\nDeclared: {declared}")
    return SimpleNamespace(**values)


def _unknown_names(namespace: Mapping[str, Any], spec: Mapping[str, Any]) -> list[str]:
    return sorted(
        name for name, value in namespace.items()
        if not _IPYTHON_PRIVATE.match(name) and name not in spec and name not in _IPYTHON_NAMES
        and isinstance(value, _PLAIN)
    )


# ----------------------------------------------------------------------------- the report


def reproduction_report(rows: Sequence[Mapping[str, Any]], *, display: bool = True) -> str | None:
    """Show the chapter's closing table: each claim of the paper, our measurement, and the verdict,
    followed by the "what we found" box (:func:`findings`).

    Rows come from :func:`sdprobe.analysis.claims.claim_row` (``what``, ``paper``, ``ours``,
    ``unit``, ``n``, ``ci``, ``test``, ``p``, ``rule``, ``verdict``, ``model``); a row may also
    give ``ours`` as text. The rows travel unchanged in the output's metadata (``REPORT_KEY``) so
    that batch reruns can gather them. Returns the table's and the box's HTML when
    ``display=False``; otherwise shows them and returns None, so the cell does not print the HTML
    a second time as text.
    """
    models = {str(row.get("model", "")) for row in rows}
    one_model = len(models) == 1  # then the model is said once, above the table, not in every row
    columns = ["claim", "paper", "ours (95 % CI)", "n", "test", "verdict"] + ([] if one_model else ["model"])
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = "".join(_report_row(row, with_model=not one_model) for row in rows)
    caption = f"<caption>Measured on {html.escape(models.pop())}</caption>" if one_model and rows else ""
    table = (f'<table class="sdprobe-report">{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
             + verdict_key(rows))
    box = findings(rows)
    if display:
        from IPython.display import HTML
        from IPython.display import display as show

        show(HTML(table), metadata={REPORT_KEY: [_plain(row) for row in rows]})
        show(HTML(box))
        if rows:  # the chapter's opening box, pasted at the top of the page by the book's build
            glue_html(FINDING_KEY, finding_box(rows))
        return None
    return table + box


#: The name under which a chapter's finding box is glued; the chapter's opening cell pastes it
#: with a ``{glue} finding`` directive.
FINDING_KEY = "finding"
#: The output-key prefix under which Jupyter Book's glue finds a pasted value without showing it.
_GLUE_PREFIX = "application/papermill.record/"


def finding_box(rows: Sequence[Mapping[str, Any]]) -> str:
    """A chapter's finding in three lines (HTML, an admonition), drawn from its own report: how
    many claims and their verdicts, the claims that hold, and those that do not or could not be
    told, each named by what it says."""
    if not rows:
        raise ValueError("a finding box needs the chapter's report rows; this chapter has none")
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row.get("verdict", ""))] = counts.get(str(row.get("verdict", "")), 0) + 1
    models = sorted({str(r.get("model", "")).split(",")[0] for r in rows})
    tally = ", ".join(f"{n} {v}" for v, n in counts.items())
    lines = [f"<strong>{len(rows)} claim{'s' * (len(rows) != 1)}</strong> measured on {html.escape(' and '.join(models))}: "
             f"{html.escape(tally)}."]
    for label, wanted in (("Holds", ("holds", "mechanism")), ("Does not hold or cannot tell",
                                                                ("does not hold", "inconclusive", "not measured"))):
        named = list(dict.fromkeys(str(r.get("what", "")) for r in rows if r.get("verdict") in wanted))
        text = "; ".join(textwrap.shorten(w, 70, placeholder="…") for w in named) or "none"
        lines.append(f"<strong>{label}:</strong> {html.escape(text)}.")
    return ('<div class="admonition important sdprobe-finding"><p class="admonition-title">The finding</p>'
            + "".join(f"<p>{line}</p>" for line in lines)
            + '<p class="sdprobe-finding-link"><a href="#reproduction-report">The reproduction report</a> gives '
              "every number, its interval and its rule.</p></div>")


def glue_html(name: str, markup: str) -> None:
    """Store ``markup`` in the notebook's outputs under ``name``, hidden, for Jupyter Book's
    ``{glue}`` directive to paste anywhere on the page (its documented output format; written
    here so that a notebook runs without myst-nb, as on Colab)."""
    from IPython.display import display

    display({_GLUE_PREFIX + "text/html": markup, _GLUE_PREFIX + "text/plain": f"<finding box: {name}>"}, raw=True,
            metadata={"scrapbook": {"name": name, "mime_prefix": _GLUE_PREFIX}})


def verdict_key(rows: Sequence[Mapping[str, Any]]) -> str:
    """The caption under a report: what each verdict word in it means, and where they are defined."""
    from sdprobe.analysis.claims import MEANINGS

    used = [v for v in MEANINGS if any(str(r.get("verdict")) == v for r in rows)]
    if not used:
        return ""
    words = "; ".join(f"<em>{html.escape(v)}</em>: {html.escape(MEANINGS[v])}" for v in used)
    return (f'<p class="sdprobe-verdict-key"><small>{words}. Every verdict word is defined in the '
            '<a href="../book/glossary.html">glossary</a>.</small></p>')


_VERDICT_ORDER = ("holds", "does not hold", "inconclusive", "mechanism", "not measured")


def findings(rows: Sequence[Mapping[str, Any]]) -> str:
    """The "what we found" box: the report's verdicts counted and each claim listed under its
    verdict with our estimate (HTML, a Jupyter Book admonition)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row.get("verdict", "")), []).append(row)
    order = [v for v in _VERDICT_ORDER if v in groups] + [v for v in groups if v not in _VERDICT_ORDER]
    models = sorted({str(r.get("model", "")) for r in rows if r.get("model")})
    ruled = [f"{len(groups[v])} {v}" for v in order if v in _VERDICT_ORDER]
    other = sum(len(groups[v]) for v in order if v not in _VERDICT_ORDER)
    counts = ", ".join(ruled + ([f"{other} other finding{'s' * (other != 1)}"] if other else []))
    items = []
    for v in order:
        for row in groups[v]:
            estimate = format_estimate(row.get("ours", ""), row.get("unit", ""), row.get("ci"))
            n = f", n = {row['n']}" if row.get("n") is not None else ""
            if len(models) > 1 and row.get("model"):
                n += f"; {row['model']}"
            what = html.escape(str(row.get("what", "")))
            if row.get("reason"):  # not measured: the reason stands where the estimate would
                estimate = str(row["reason"])
            if v in _VERDICT_ORDER:
                items.append(f'<li><span class="sdprobe-verdict {_verdict_class(v)}">{html.escape(v)}</span> — '
                             f"{what} ({_glue(html.escape(estimate + n))})</li>")
            else:  # a verdict in words, not by a rule: the claim first, then what was found
                items.append(f"<li>{what}: <em>{html.escape(v)}</em> ({_glue(html.escape(estimate + n))})</li>")
    on = f" on {html.escape(models[0])}" if len(models) == 1 else ""
    return (f'<div class="admonition tip sdprobe-findings"><p class="admonition-title">What we found</p>'
            f"<p>{len(rows)} claims measured{on}: {html.escape(counts)}.</p><ul>{''.join(items)}</ul></div>")


def _glue(text: str) -> str:
    """Keep a number with its unit on one line in HTML ("95 %", "+9.4 pp")."""
    return text.replace(" %", "&nbsp;%").replace(" pp", "&nbsp;pp")


def _verdict_class(verdict: str) -> str:
    return verdict.replace(" ", "-") if verdict in _VERDICT_ORDER else "other"


def _report_row(row: Mapping[str, Any], with_model: bool = True) -> str:
    esc = lambda v: _glue(html.escape(_cell(v)))  # noqa: E731
    claim = esc(row.get("what", ""))
    if row.get("rule"):
        claim += f'<br><small class="sdprobe-rule">rule: {esc(row["rule"])}</small>'
    test = html.escape(_cell(row.get("test", "")))
    if row.get("p") is not None:
        test += f'<br><span class="sdprobe-p">p = {row["p"]:.2g}</span>'
    n = row.get("n")
    verdict = str(row.get("verdict", ""))
    decided = f'<span class="sdprobe-verdict {_verdict_class(verdict)}">{html.escape(verdict)}</span>'
    if row.get("reason"):
        decided += f'<br><small class="sdprobe-reason">{esc(row["reason"])}</small>'
    cells = [claim, esc(row.get("paper", "")), esc(format_estimate(row.get("ours", ""), row.get("unit", ""), row.get("ci"))),
             f'<span class="sdprobe-n">{esc("" if n is None else n)}</span>', test, decided]
    if with_model:
        cells.append(esc(row.get("model", "")))
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as JSON-ready values; numbers stay numbers, everything else becomes text."""
    out = {}
    for key, value in row.items():
        if value is None or isinstance(value, (bool, int, float, str)):
            out[key] = value
        elif isinstance(value, (list, tuple)):
            out[key] = [float(v) for v in value]
        else:
            out[key] = str(value)
    return out


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def declared_parameters(source: str | Path) -> dict[str, Any]:
    """Names and default values assigned in a notebook's ``parameters`` cell (a jupytext ``.py`` or
    an ``.ipynb``), in order.

    Raises:
        ValueError: the notebook has no such cell, several, or one holding more than plain assignments.
    """
    import ast

    import jupytext

    cells = [c for c in jupytext.read(source).cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{Path(source).name}: expected one cell tagged 'parameters', found {len(cells)}")
    values: dict[str, Any] = {}
    for node in ast.parse(cells[0].source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ValueError(f"{Path(source).name}: the parameters cell holds plain assignments only")
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def in_colab() -> bool:
    """True inside Google Colab (the install cell runs only there)."""
    return "google.colab" in sys.modules
