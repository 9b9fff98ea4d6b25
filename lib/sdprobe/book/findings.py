"""Every chapter's verdicts in one place: the book's findings page and each chapter's finding box.

Each executed chapter carries its reproduction report in its outputs' metadata
(``sdprobe.book.notebook.REPORT_KEY``). :func:`chapter_reports` reads them back,
:func:`findings_frame` lays them out one row per claim, :func:`findings_table` and
:func:`forest_plot` show them (each chapter's own opening box is
:func:`sdprobe.book.notebook.finding_box`). Nothing here decides a verdict: every verdict is the one the
chapter's rule gave (:mod:`sdprobe.analysis.claims`).
"""

from __future__ import annotations

import html
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd

from sdprobe.formatting import format_estimate

__all__ = ["VERDICT_COLOURS", "chapter_reports", "findings_frame", "findings_table", "forest_plot", "verdict_counts"]

#: One colour per verdict, the same on the findings page and in the forest plot (seaborn's
#: colour-blind palette).
VERDICT_COLOURS = {"holds": "#029e73", "does not hold": "#d55e00", "inconclusive": "#949494",
                   "mechanism": "#0173b2", "not measured": "#cccccc"}
_CHAPTER = re.compile(r"^\d\d_.*\.ipynb$")


def chapter_reports(folder: Path | str) -> dict[str, dict[str, Any]]:
    """The executed chapters in ``folder`` (``NN_*.ipynb``), in order: ``{stem: {"title", "rows"}}``.

    ``title`` is the chapter's first heading; ``rows`` its reproduction report as it travels in
    the outputs' metadata.

    Raises:
        FileNotFoundError: the folder holds no executed chapter.
    """
    from sdprobe.book.outputs import read_report_rows

    paths = sorted(p for p in Path(folder).glob("*.ipynb") if _CHAPTER.match(p.name))
    if not paths:
        raise FileNotFoundError(f"no executed chapter (NN_*.ipynb) in {folder}")
    return {p.stem: {"title": _title(p), "rows": read_report_rows(p)} for p in paths}


def _title(path: Path) -> str:
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem


def findings_frame(reports: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per claim of every chapter: ``chapter`` (its number), ``page`` (its stem),
    ``title``, ``claim``, ``what``, ``variant`` (the prompt or setting, when a chapter measures a
    claim more than once), ``paper``, ``estimate`` (text, with its interval), ``ours``, ``low``,
    ``high``, ``threshold``, ``unit``, ``n``, ``test``, ``p``, ``verdict``, ``model``."""
    records = []
    for stem, report in reports.items():
        for row in report["rows"]:
            ci = row.get("ci") or (None, None)
            model = str(row.get("model", ""))
            # "toy, “three dogs on the field”" or "toy, t_transplant = 0": the model, then the variant
            name, _, variant = model.partition(", ")
            records.append({
                "chapter": stem[:2], "page": stem, "title": report["title"], "claim": row.get("claim", ""),
                "what": str(row.get("what", "")), "variant": variant.strip("“”\""),
                "paper": str(row.get("paper", "")),
                "estimate": str(row.get("reason") or format_estimate(row.get("ours", ""), row.get("unit", ""),
                                                                      row.get("ci"))),
                "ours": row.get("ours") if isinstance(row.get("ours"), (int, float)) else None,
                "low": ci[0], "high": ci[1], "threshold": row.get("threshold"), "unit": str(row.get("unit", "")),
                "n": row.get("n"), "test": str(row.get("test", "")), "p": row.get("p"),
                "rule": str(row.get("rule", "")),
                "verdict": str(row.get("verdict", "")), "model": name.removeprefix("noise for "),
            })
    return pd.DataFrame.from_records(records)


def findings_table(frame: pd.DataFrame, *, link: bool = True) -> str:
    """The findings as an HTML table, one row per claim, grouped by chapter, each chapter's
    heading a link to its reproduction report (``link``)."""
    head = "".join(f"<th>{c}</th>" for c in ("claim", "paper", "ours (95 % CI)", "n", "verdict"))
    body = []
    for page, rows in frame.groupby("page", sort=False):
        title = html.escape(f"{rows['chapter'].iloc[0]} · {rows['title'].iloc[0]}")
        if link:
            title = f'<a href="{page}.html#reproduction-report">{title}</a>'
        body.append(f'<tr class="sdprobe-chapter"><th colspan="5">{title}</th></tr>')
        for _, r in rows.iterrows():
            what = html.escape(r["what"]) + (f' <small>(“{html.escape(r["variant"])}”)</small>' if r["variant"] else "")
            cls = r["verdict"].replace(" ", "-")
            body.append(f"<tr><td>{what}</td><td>{html.escape(r['paper'])}</td><td>{html.escape(r['estimate'])}</td>"
                        f"<td>{r['n']}</td><td><span class=\"sdprobe-verdict {cls}\">{html.escape(r['verdict'])}"
                        "</span></td></tr>")
    return (f'<table class="sdprobe-table sdprobe-findings-table"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def verdict_counts(frame: pd.DataFrame) -> str:
    """One row per chapter: its study (a link to the chapter), how many claims it measured, and
    how many got each verdict (HTML)."""
    verdicts = [v for v in VERDICT_COLOURS if v in set(frame["verdict"])]
    head = "".join(f'<th>{html.escape(v)}</th>' for v in ["chapter", "claims", *verdicts])
    body = []
    for page, rows in frame.groupby("page", sort=False):
        link = f'<a href="{page}.html">{html.escape(rows["chapter"].iloc[0] + " · " + rows["title"].iloc[0])}</a>'
        counts = [int((rows["verdict"] == v).sum()) for v in verdicts]
        body.append(f"<tr><td>{link}</td><td>{len(rows)}</td>"
                    + "".join(f"<td>{c or ''}</td>" for c in counts) + "</tr>")
    total = [int((frame["verdict"] == v).sum()) for v in verdicts]
    body.append(f"<tr><th>all chapters</th><th>{len(frame)}</th>" + "".join(f"<th>{c}</th>" for c in total) + "</tr>")
    return (f'<table class="sdprobe-table sdprobe-verdict-counts"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def _scale(unit: str) -> tuple[str, float]:
    """The panel a unit is drawn in, and the factor to its axis (rates and differences in %)."""
    if unit in ("%", "pp"):
        return "percent", 100.0
    return unit or "difference", 1.0


def forest_plot(frame: pd.DataFrame, *, title: str = "Every claim with an interval, by unit"):
    """Each claim's estimate and 95 % interval as a point and a bar, coloured by its verdict, with
    its rule's threshold (or equivalence margin) marked; one panel per unit (rates and
    differences of rates share a percent axis). Claims without an interval (noise-free
    measurements and claims not measured) are left out: the table lists them."""
    import seaborn as sns
    from matplotlib.lines import Line2D

    from sdprobe.book.plots.figure import MAX_WIDTH, new_figure

    rows = frame[frame["low"].notna()].copy()
    if rows.empty:
        raise ValueError("no claim has an interval to plot")
    rows["panel"], rows["factor"] = zip(*(_scale(u) for u in rows["unit"]))
    rows["label"] = [_label(r) for _, r in rows.iterrows()]
    panels = list(dict.fromkeys(rows.sort_values("factor", ascending=False, kind="stable")["panel"]))
    sizes = [int((rows["panel"] == p).sum()) for p in panels]
    fig = new_figure(figsize=(MAX_WIDTH, 0.9 + 0.24 * sum(sizes) + 0.55 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, gridspec_kw={"height_ratios": [s + 1.6 for s in sizes]}, squeeze=False)[:, 0]
    with sns.axes_style("whitegrid"):
        for ax, panel in zip(axes, panels):
            part = rows[rows["panel"] == panel].reset_index(drop=True)
            f = part["factor"]
            y = range(len(part))
            colours = [VERDICT_COLOURS.get(v, "#000000") for v in part["verdict"]]
            ax.hlines(y, part["low"] * f, part["high"] * f, colors=colours, linewidth=2.2)
            sns.scatterplot(x=part["ours"] * f, y=list(y), hue=part["verdict"], palette=VERDICT_COLOURS, ax=ax,
                            s=36, zorder=3, legend=False)
            for k, r in part.iterrows():
                if r["threshold"] is not None and pd.notna(r["threshold"]):
                    marks = [-r["threshold"], r["threshold"]] if "within" in str(r.get("rule", "")) else [r["threshold"]]
                    ax.plot([m * r["factor"] for m in marks], [k] * len(marks), marker="|", color="#222222",
                            markersize=11, linestyle="none", zorder=4)
            ax.set_yticks(list(y), part["label"], fontsize=9)
            ax.set_ylim(len(part) - 0.5, -0.5)
            ax.set_xlabel({"percent": "% (rates) or pp (differences of rates)"}.get(panel, panel), fontsize=9)
            ax.tick_params(axis="x", labelsize=9)
            ax.grid(axis="x", alpha=0.3)
            ax.set_ylabel("")
    handles = [Line2D([], [], color=c, marker="o", linewidth=2.2, label=v) for v, c in VERDICT_COLOURS.items()
               if v in set(rows["verdict"])]
    handles.append(Line2D([], [], color="#222222", marker="|", markersize=11, linestyle="none",
                          label="the rule's threshold"))
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=11)
    return fig


def _label(row: Mapping[str, Any]) -> str:
    what = textwrap.shorten(str(row["what"]), 34, placeholder="…")
    variant = f" ({textwrap.shorten(row['variant'], 16, placeholder='…')})" if row["variant"] else ""
    return f"{row['chapter']} · {what}{variant}"
