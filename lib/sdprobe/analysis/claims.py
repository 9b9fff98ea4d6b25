"""Claims turned into verdicts by rules stated before the run.

Each chapter keeps its claims in ``data/reference/<chapter>.yaml``: what the paper says (its
number or wording), and the rule that turns our measurement into a verdict::

    claims:
      guidance_faithful:
        what: higher guidance draws the prompt more faithfully
        paper: "the scale s trades variety for faithfulness"
        unit: percentage points          # how ``ours`` reads
        rule: {above: 0}                 # the 95 % interval of ours lies above 0

A rule holds exactly one comparison:

* ``above`` or ``below`` a threshold, judged on the 95 % interval; a rule that names a test's
  ``alpha`` also needs the test's p-value below it (interval and test must agree);
* ``within: m``, the equivalence rule of a control: it holds when the whole 95 % interval lies
  inside ±m (m stated in the reference file before the run), does not hold when the interval
  lies wholly outside, and is otherwise inconclusive;
* ``at_most``/``at_least``, for a measurement without sampling noise (a computation's
  property, such as a mask leaving a token unchanged).

``mechanism: true`` marks a row that checks how the model works rather than what it draws;
met, its verdict reads ``mechanism``. :func:`verdict` is the only place where a verdict is
decided; notebooks never write one. The verdict words are defined once, in :data:`MEANINGS`.

The engine refuses, in one line naming the value, what it cannot judge: a threshold or α that is
not a finite number (α in (0, 1)), an estimate that is not finite, an interval that is inverted,
not finite or does not contain its estimate, a p-value outside [0, 1], and an ``n`` that is not a
whole number of at least 1. Reference files are validated when loaded, and every load reads the
file afresh into a new dict.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["MEANINGS", "NOT_MEASURED", "VERDICTS", "ReferenceFileError", "claim_row", "describe_rule", "load_reference", "rule_threshold",
           "unmeasured_row", "verdict"]

#: The verdict of a claim that could not be measured on a run (its row says why, in ``reason``).
NOT_MEASURED = "not measured"
#: Every verdict a row can carry.
VERDICTS = ("holds", "does not hold", "inconclusive", "mechanism", NOT_MEASURED)
#: What each verdict word means, as the glossary and every report's caption say it.
MEANINGS = {
    "holds": "the whole 95 % interval lies on the claimed side of the rule's threshold (and a named "
             "test agrees at its α); for a control, inside its equivalence margin",
    "does not hold": "the whole interval lies on the other side (a named test agreeing), or a "
                     "noise-free measurement misses its bar",
    "inconclusive": "the interval straddles the threshold or the margin, or interval and test disagree: "
                    "these images cannot tell",
    "mechanism": "a property of the computation (no sampling noise) that the claim's explanation needs, met",
    NOT_MEASURED: "this run could not measure the claim; the row says why",
}
_COMPARISONS = ("above", "below", "within", "at_most", "at_least")
_RULE_KEYS = {*_COMPARISONS, "alpha", "mechanism"}


class ReferenceFileError(ValueError):
    """A chapter's reference file is missing, or a claim or rule in it is malformed."""


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_rule(rule: Mapping[str, Any], where: str) -> None:
    if not isinstance(rule, Mapping):
        raise ReferenceFileError(f"{where}: a rule is a mapping such as {{above: 0}}, got {rule!r}")
    unknown = set(rule) - _RULE_KEYS
    comparisons = [k for k in _COMPARISONS if k in rule]
    if unknown or len(comparisons) != 1:
        raise ReferenceFileError(f"{where}: a rule names exactly one of {', '.join(_COMPARISONS)} "
                             f"(plus optional alpha, mechanism); got {dict(rule)}")
    kind = comparisons[0]
    if not _is_number(rule[kind]):
        raise ReferenceFileError(f"{where}: the threshold of {kind} must be a finite number, not {rule[kind]!r}")
    if kind == "within" and rule[kind] <= 0:
        raise ReferenceFileError(f"{where}: the margin of within must be above 0, not {rule[kind]!r}")
    if "alpha" in rule:
        if kind not in ("above", "below"):
            raise ReferenceFileError(f"{where}: alpha goes with above/below, not {kind}")
        if not _is_number(rule["alpha"]) or not 0 < rule["alpha"] < 1:
            raise ReferenceFileError(f"{where}: alpha must be a number between 0 and 1, not {rule['alpha']!r}")
    if "mechanism" in rule and not isinstance(rule["mechanism"], bool):
        raise ReferenceFileError(f"{where}: mechanism is true or false, not {rule['mechanism']!r}")


def _check_measurement(ours: Any, ci: Sequence[float] | None, p: float | None) -> tuple[float, tuple | None]:
    """``ours`` as a float and ``ci`` as a pair of floats, or a one-line ValueError naming the value."""
    if not _is_number(ours):
        raise ValueError(f"a verdict needs a finite estimate, got {ours!r}")
    if p is not None and not (_is_number(p) and 0 <= p <= 1):
        raise ValueError(f"a p-value lies in [0, 1], got {p!r}")
    if ci is None:
        return float(ours), None
    try:
        lo, hi = ci
    except (TypeError, ValueError):
        raise ValueError(f"an interval is a pair (low, high), got {ci!r}") from None
    if not (_is_number(lo) and _is_number(hi)):
        raise ValueError(f"an interval needs two finite ends, got ({lo!r}, {hi!r})")
    lo, hi, x = float(lo), float(hi), float(ours)
    if lo > hi:
        raise ValueError(f"the interval ({lo:g}, {hi:g}) is inverted: its low end is above its high end")
    slack = 1e-9 * max(1.0, abs(lo), abs(hi), abs(x))  # the rounding of a computed interval
    if not lo - slack <= x <= hi + slack:
        raise ValueError(f"the interval ({lo:g}, {hi:g}) does not contain its estimate {x:g}")
    return x, (lo, hi)


def _check_n(n: Any) -> int:
    whole = isinstance(n, numbers.Integral) or isinstance(n, float) and n.is_integer()
    if isinstance(n, bool) or not whole or n < 1:
        raise ValueError(f"n counts the images, pairs or stories an estimate rests on: a whole number of at "
                         f"least 1, not {n!r}")
    return int(n)


def describe_rule(rule: Mapping[str, Any]) -> str:
    """The rule in words, as the report prints it."""
    _check_rule(rule, "rule")
    kind = next(k for k in _COMPARISONS if k in rule)
    x = rule[kind]
    good = "mechanism" if rule.get("mechanism") else "holds"
    if kind in ("at_most", "at_least"):
        sign = "≤" if kind == "at_most" else "≥"
        return f"{good} if ours {sign} {x:g}; otherwise does not hold"
    if kind == "within":
        return (f"{good} if the 95 % interval lies within ±{x:g} (equivalence margin); does not hold if it "
                "lies wholly outside; otherwise inconclusive")
    side, other = ("above", "below") if kind == "above" else ("below", "above")
    if "alpha" in rule:
        return (f"{good} if the 95 % interval lies {side} {x:g} and p < {rule['alpha']:g}; does not hold if it "
                f"lies {other} and p < {rule['alpha']:g}; otherwise inconclusive")
    return (f"{good} if the 95 % interval lies {side} {x:g}; does not hold if it lies {other}; "
            "otherwise inconclusive")


def rule_threshold(rule: Mapping[str, Any]) -> float:
    """The number a rule compares with: its threshold or bar, or the margin of ``within``."""
    _check_rule(rule, "rule")
    return float(next(rule[k] for k in _COMPARISONS if k in rule))


def verdict(rule: Mapping[str, Any], ours: float, ci: Sequence[float] | None = None,
            p: float | None = None) -> str:
    """The verdict ``rule`` gives estimate ``ours`` with 95 % interval ``ci`` (and p-value ``p``).

    Every rule but ``at_most``/``at_least`` reads the interval; one that names ``alpha`` also
    reads ``p``, and is inconclusive unless both agree.

    Raises:
        ReferenceFileError: the rule is malformed, or needs an interval or p-value that is missing.
        ValueError: ``ours`` is not finite, ``ci`` is not a finite, ordered pair containing
            ``ours``, or ``p`` lies outside [0, 1].
    """
    _check_rule(rule, "rule")
    ours, ci = _check_measurement(ours, ci, p)
    kind = next(k for k in _COMPARISONS if k in rule)
    x = float(rule[kind])
    good = "mechanism" if rule.get("mechanism") else "holds"
    if kind == "at_most":
        return good if ours <= x else "does not hold"
    if kind == "at_least":
        return good if ours >= x else "does not hold"
    if ci is None:
        raise ReferenceFileError(f"the rule {dict(rule)} needs a 95 % interval")
    lo, hi = ci
    if kind == "within":
        if -x < lo and hi < x:
            return good
        return "does not hold" if lo > x or hi < -x else "inconclusive"
    if "alpha" in rule:
        if p is None:
            raise ReferenceFileError(f"the rule {dict(rule)} needs a p-value")
        if p >= rule["alpha"]:  # the interval alone does not decide a claim its test does not back
            return "inconclusive"
    sign = 1.0 if kind == "above" else -1.0
    if sign * (lo - x) > 0 and sign * (hi - x) > 0:
        return good
    if sign * (lo - x) < 0 and sign * (hi - x) < 0:
        return "does not hold"
    return "inconclusive"


def _read(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ReferenceFileError(f"{path.name}: not UTF-8 text") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        raise ReferenceFileError(f"{path.name}: not valid YAML ({problem}{where})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ReferenceFileError(f"{path.name}: a reference file is a mapping with a 'claims' mapping, "
                             f"not a {type(data).__name__}")
    return data


def load_reference(chapter: str, folder: Path | str | None = None) -> dict:
    """A chapter's reference file (``data/reference/<chapter>.yaml``), its claims checked.

    Every call reads the file afresh and returns a new dict: an edited file is seen at once, and
    changing what one call returned changes nothing for the next.

    Raises:
        ReferenceFileError: no such file, not valid YAML, ``claims`` not a mapping of claims, or a
            claim without ``what``, ``paper`` or a valid ``rule``.
    """
    from sdprobe.paths import DATA_DIR

    path = Path(folder or DATA_DIR / "reference") / f"{chapter}.yaml"
    if not path.is_file():
        raise ReferenceFileError(f"no reference file for chapter {chapter!r}: {path} is missing")
    data = _read(path)
    claims = data.get("claims")
    if claims is not None and not isinstance(claims, dict):
        raise ReferenceFileError(f"{path.name}: 'claims' maps each claim's key to its what, paper and rule, "
                             f"not a {type(claims).__name__}")
    for key, claim in (claims or {}).items():
        if not isinstance(claim, dict):
            raise ReferenceFileError(f"{path.name}: claim {key!r} is a mapping of what, paper and rule, not {claim!r}")
        missing = [f for f in ("what", "paper", "rule") if f not in claim]
        if missing:
            raise ReferenceFileError(f"{path.name}: claim {key!r} lacks {', '.join(missing)}")
        _check_rule(claim["rule"], f"{path.name}: claim {key!r}")
    return copy.deepcopy(data)


def claim_row(reference: Mapping[str, Any], key: str, *, ours: float, n: int, model: str,
              ci: Sequence[float] | None = None, test: str | None = None, p: float | None = None,
              paper: Any = None, unit: str | None = None) -> dict[str, Any]:
    """One row of a reproduction report: the claim ``key`` of ``reference`` measured as ``ours``.

    Args:
        reference: what :func:`load_reference` returned.
        ours: our estimate (a rate as a fraction, a mean, a difference…), in the claim's ``unit``.
        n: images, pairs or stories the estimate rests on.
        ci: its 95 % interval (exact binomial for rates, bootstrap for means).
        test: the test's name when the rule or the reader needs one, with ``p`` its p-value.
        paper: the paper's value when it comes from a table in the reference file rather than
            from the claim's ``paper`` entry.
        unit: overrides the claim's ``unit`` (a measurement that falls back to another scale).

    Returns:
        A JSON-ready dict with ``claim`` (the key), ``what``, ``paper``, ``ours``, ``unit``, ``n``,
        ``ci``, ``test``, ``p``, ``rule`` (in words), ``threshold`` (:func:`rule_threshold`),
        ``verdict``, ``reason`` (empty) and ``model``.

    Raises:
        ReferenceFileError: ``key`` is not a claim of the chapter.
        ValueError: a measurement the verdict engine cannot judge (:func:`verdict`), or ``n``
            not a whole number of at least 1.
    """
    claims = reference.get("claims") or {}
    if key not in claims:
        known = ", ".join(claims) or "none"
        raise ReferenceFileError(f"{key!r} is not a claim of this chapter (claims: {known})")
    claim = claims[key]
    n = _check_n(n)
    decided = verdict(claim["rule"], ours, ci, p)
    return {
        "claim": key, "what": claim["what"], "paper": claim["paper"] if paper is None else paper,
        "ours": float(ours), "unit": claim.get("unit", "") if unit is None else unit, "n": n,
        "ci": [float(ci[0]), float(ci[1])] if ci is not None else None,
        "test": test or "", "p": None if p is None else float(p),
        "rule": describe_rule(claim["rule"]), "threshold": rule_threshold(claim["rule"]), "verdict": decided,
        "reason": "", "model": model,
    }


def unmeasured_row(reference: Mapping[str, Any], key: str, *, reason: str, model: str, n: int = 0,
                   paper: Any = None, unit: str | None = None) -> dict[str, Any]:
    """The row of a claim this run could not measure: verdict :data:`NOT_MEASURED`, and why.

    A claim is never left out of a report silently: a judge that found the subject in no
    picture, a prompt set without the pairs a claim compares, a model without what the rule
    reads, each gives this row, with ``n`` the pictures that were looked at.

    Raises:
        ReferenceFileError: ``key`` is not a claim of the chapter.
        ValueError: ``reason`` is empty, or ``n`` is not a whole number of at least 0.
    """
    claims = reference.get("claims") or {}
    if key not in claims:
        raise ReferenceFileError(f"{key!r} is not a claim of this chapter (claims: {', '.join(claims) or 'none'})")
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("a claim that was not measured says why: give reason=")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"n counts the pictures looked at: a whole number of at least 0, not {n!r}")
    claim = claims[key]
    return {
        "claim": key, "what": claim["what"], "paper": claim["paper"] if paper is None else paper, "ours": "",
        "unit": claim.get("unit", "") if unit is None else unit, "n": int(n), "ci": None, "test": "", "p": None,
        "rule": describe_rule(claim["rule"]), "threshold": rule_threshold(claim["rule"]), "verdict": NOT_MEASURED,
        "reason": " ".join(reason.split()), "model": model,
    }
