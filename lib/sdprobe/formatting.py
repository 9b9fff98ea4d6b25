"""Numbers as the book prints them: the one place that turns an estimate or a table cell into text.

:func:`format_estimate` writes an estimate with its unit and interval (``94.5 % (89.0 to 98.0)``),
:func:`format_cell` one table cell, and :data:`BLANK` is what a missing value shows (never
``NaN``). A leaf module: it imports neither NumPy nor pandas, so the harnesses, the report and
the batch runner can all use it without loading the plotting stack.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["BLANK", "format_cell", "format_estimate"]

#: What a cell without a value shows (never ``NaN``).
BLANK = "—"


def format_estimate(value: Any, unit: str = "", ci: Sequence[float] | None = None, *, signed: bool = False) -> str:
    """An estimate as every table of the book prints it: ``0.945, "%", (0.89, 0.98)`` →
    ``94.5 % (89.0 to 98.0)``; ``"pp"`` reads a difference of rates in percentage points (always
    signed); other units follow the number, three significant digits (``signed``: with its sign)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return str(value)
    if unit in ("%", "pp"):
        scale, fmt, suffix = 100.0, ("{:+.1f}" if unit == "pp" or signed else "{:.1f}"), f" {unit}"
    else:
        scale, fmt, suffix = 1.0, ("{:+.3g}" if signed else "{:.3g}"), f" {unit}" if unit else ""
    text = fmt.format(value * scale) + suffix
    if ci is not None:
        lo, hi = (fmt.replace("+", "").format(v * scale) for v in ci)
        text += f" ({lo} to {hi})"
    return text


def _missing(value: Any) -> bool:
    if value is None or isinstance(value, float) and math.isnan(value):
        return True
    pd = sys.modules.get("pandas")  # a pandas missing value exists only once pandas is loaded
    return pd is not None and (value is pd.NA or value is pd.NaT)


def _is_bool(value: Any) -> bool:
    np = sys.modules.get("numpy")
    return isinstance(value, bool) or np is not None and isinstance(value, np.bool_)


def format_cell(value: Any, digits: int = 3, percent: bool = False) -> str:
    """One cell as text: whole numbers without decimals (``40.0`` → ``40``), other numbers to
    ``digits`` significant digits, fractions as percentages with ``percent``, booleans as yes/no,
    missing values as :data:`BLANK`."""
    if _missing(value):
        return BLANK
    if _is_bool(value):
        return "yes" if value else "no"
    if isinstance(value, (int, float)) or hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0:
        x = float(value)
        if math.isnan(x):  # a NumPy or torch NaN scalar
            return BLANK
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        if percent:
            return f"{100 * x:.{max(digits - 2, 0)}f} %"
        if x == round(x) and abs(x) < 1e15:
            return f"{int(round(x)):,}" if abs(x) >= 10_000 else str(int(round(x)))
        if abs(x) >= 10 ** digits:  # 1823.4 -> "1,823", never "1.82e+03"
            return f"{x:,.0f}"
        return f"{x:.{digits}g}"
    return str(value)
