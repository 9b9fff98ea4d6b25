"""sdprobe.book.tables.show_table: the one way chapters print a table, made for reading."""

import numpy as np
import pandas as pd
import pytest

from sdprobe.book.notebook import findings
from sdprobe.book.tables import show_table
from sdprobe.formatting import BLANK, format_cell


def test_cells_round_to_meaningful_digits_and_never_show_nan():
    assert [format_cell(v) for v in (40.0, 0.0123456, 74.51, np.float32(2.0), 3)] == ["40", "0.0123", "74.5", "2", "3"]
    assert [format_cell(v) for v in (float("nan"), None, pd.NA, True, np.bool_(False))] == [BLANK, BLANK, BLANK, "yes", "no"]
    assert format_cell(0.4567, percent=True) == "45.7 %" and format_cell("a label") == "a label"


def test_a_table_shows_every_cell_in_full_in_html_and_text():
    long = "a white dog runs along the river " * 3
    table = show_table(pd.DataFrame({"images": [40.0, np.nan], "rate": [0.25, 0.5], "prompt": [long, None]}),
                       percent=["rate"], caption="Table 1")
    html, text = table._repr_html_(), repr(table)
    for out in (html, text):
        assert long.strip() in out and "NaN" not in out and "nan" not in out and "..." not in out
        assert "40.0" not in out and "25.0 %" in out and "Table 1" in out
    assert 'class="dataframe sdprobe-table"' in html and "<caption>Table 1</caption>" in html


def test_wide_short_tables_are_turned_on_their_side():
    wide = pd.DataFrame([range(10)], columns=[f"c{i}" for i in range(10)], index=["only row"])
    assert list(show_table(wide).frame.columns) == ["only row"]
    assert list(show_table(wide, transpose=False).frame.columns) == list(wide.columns)
    with pytest.raises(ValueError, match="percent names columns"):
        show_table(wide, percent=["rate"])


def test_what_we_found_counts_the_verdicts_and_lists_each_claim_under_its_own():
    rows = [{"what": "x converges", "ours": 0.9, "unit": "%", "ci": [0.8, 0.95], "n": 64, "verdict": "holds",
             "model": "toy"},
            {"what": "the subject is drawn first", "ours": -1.0, "unit": "steps", "n": 56, "verdict": "does not hold",
             "model": "toy"},
            {"what": "y is z", "ours": 0.1, "verdict": "holds", "model": "toy"}]
    box = findings(rows)
    assert "3 claims measured on toy: 2 holds, 1 does not hold." in box
    assert box.index("y is z") < box.index("the subject is drawn first")  # grouped by verdict
    assert "90.0&nbsp;% (80.0 to 95.0), n = 64" in box  # the unit kept on the number's line and 'class="sdprobe-verdict does-not-hold"' in box


def test_verdicts_in_words_are_listed_as_findings_not_counted_as_verdicts():
    rows = [{"what": "x converges", "ours": 0.9, "verdict": "holds", "model": "toy"},
            {"what": "best subset (Table 3)", "ours": "region in OUT4: 16.4", "verdict": "another subset", "model": "toy"}]
    box = findings(rows)
    assert "2 claims measured on toy: 1 holds, 1 other finding." in box
    assert "<li>best subset (Table 3): <em>another subset</em> (region in OUT4: 16.4)</li>" in box
