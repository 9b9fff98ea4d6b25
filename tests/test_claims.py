"""Verdicts come from rules and numbers only; reference files are checked when loaded."""

import pytest

from sdprobe.analysis.claims import ReferenceError, claim_row, describe_rule, load_reference, verdict
from sdprobe.analysis.stats import mcnemar, paired_difference, sign_test
from sdprobe.book.notebook import format_estimate, reproduction_report
from sdprobe.paths import DATA_DIR


@pytest.mark.parametrize("ci, expected", [((0.1, 0.3), "holds"), ((-0.3, -0.1), "does not hold"),
                                          ((-0.1, 0.2), "inconclusive")])
def test_an_interval_rule_reads_which_side_of_the_threshold_the_interval_lies(ci, expected):
    assert verdict({"above": 0}, 0.1, ci) == expected
    mirrored = {"holds": "holds", "does not hold": "does not hold", "inconclusive": "inconclusive"}[expected]
    assert verdict({"below": 0}, -0.1, (-ci[1], -ci[0])) == mirrored


def test_a_p_value_rule_needs_significance_and_the_claimed_direction():
    assert verdict({"above": 0, "alpha": 0.05}, 0.2, p=0.01) == "holds"
    assert verdict({"above": 0, "alpha": 0.05}, -0.2, p=0.01) == "does not hold"
    assert verdict({"above": 0, "alpha": 0.05}, 0.2, p=0.2) == "inconclusive"


def test_a_mechanism_rule_reads_mechanism_when_met_and_does_not_hold_otherwise():
    assert verdict({"at_most": 0.02, "mechanism": True}, 0.01) == "mechanism"
    assert verdict({"at_most": 0.02, "mechanism": True}, 0.03) == "does not hold"
    assert "mechanism if ours ≤ 0.02" in describe_rule({"at_most": 0.02, "mechanism": True})


@pytest.mark.parametrize("rule", [{"above": 0, "below": 1}, {"over": 0}, {"at_most": 1, "alpha": 0.05}, "above 0"])
def test_a_malformed_rule_is_refused_in_one_line(rule):
    with pytest.raises(ReferenceError):
        verdict(rule, 0.5, (0.4, 0.6))


def test_missing_interval_or_non_finite_estimate_is_an_error_not_a_verdict():
    with pytest.raises(ReferenceError, match="interval"):
        verdict({"above": 0}, 0.5)
    with pytest.raises(ValueError, match="finite"):
        verdict({"above": 0}, float("nan"), (0, 1))


def test_every_shipped_reference_file_loads_and_its_rules_are_valid():
    files = sorted((DATA_DIR / "reference").glob("*.yaml"))
    assert files
    for path in files:
        ref = load_reference(path.stem)
        for key in ref.get("claims") or {}:
            row = claim_row(ref, key, ours=0.5, ci=(0.4, 0.6), p=0.01, n=64, model="toy")
            assert row["verdict"] in {"holds", "does not hold", "inconclusive", "mechanism"}


def test_a_claim_row_carries_every_field_and_an_unknown_claim_is_named(tmp_path):
    (tmp_path / "x.yaml").write_text("claims:\n  c: {what: w, paper: p, unit: '%', rule: {above: 0.5}}\n")
    ref = load_reference("x", tmp_path)
    row = claim_row(ref, "c", ours=0.7, ci=(0.6, 0.8), n=100, test="exact", p=0.001, model="toy")
    assert set(row) == {"what", "paper", "ours", "unit", "n", "ci", "test", "p", "rule", "verdict", "model"}
    assert row["verdict"] == "holds"
    with pytest.raises(ReferenceError, match="'d' is not a claim"):
        claim_row(ref, "d", ours=0.7, n=1, model="toy")
    (tmp_path / "y.yaml").write_text("claims:\n  c: {what: w, rule: {above: 0.5}}\n")
    with pytest.raises(ReferenceError, match="lacks paper"):
        load_reference("y", tmp_path)


def test_estimates_print_as_percent_points_or_numbers_with_their_interval():
    assert format_estimate(0.945, "%", (0.89, 0.98)) == "94.5 % (89.0 to 98.0)"
    assert format_estimate(0.05, "pp", (-0.01, 0.1)) == "+5.0 pp (-1.0 to 10.0)"
    assert format_estimate(0.7234, "IoU") == "0.723 IoU"


def test_the_report_shows_the_rule_under_the_claim_and_no_nan():
    row = {"what": "w", "paper": "p", "ours": 0.5, "unit": "%", "n": 64, "ci": [0.4, 0.6], "test": "t", "p": 0.01,
           "rule": "holds if …", "verdict": "holds", "model": "toy"}
    html = reproduction_report([row], display=False)
    assert "rule: holds if" in html and "50.0&nbsp;% (40.0 to 60.0)" in html and "p = 0.01" in html and "nan" not in html


def test_paired_tests_count_discordant_pairs_and_signs():
    assert mcnemar([False] * 10, [True] * 10) == pytest.approx(2 * 0.5**10)
    assert mcnemar([True, False], [True, False]) == 1.0
    assert sign_test([1.0] * 8) == pytest.approx(2 * 0.5**8)
    diff = paired_difference([0, 0, 1, 1], [1, 1, 1, 1])
    assert diff["mean"] == 0.5 and diff["ci"][0] <= 0.5 <= diff["ci"][1]
    with pytest.raises(ValueError, match="equal lengths"):
        mcnemar([True], [True, False])


def test_the_toy_cards_gates_become_report_rows_whose_verdicts_match_the_card():
    import json

    from sdprobe.paths import MODELS_DIR
    from sdprobe.toy.card import report_rows
    from sdprobe.toy.evaluate import bars_met

    evaluation = json.loads((MODELS_DIR / "toy" / "evaluation.json").read_text())
    rows = report_rows(evaluation)
    met = bars_met(evaluation)
    assert [r["verdict"] == "holds" for r in rows] == list(met.values())
    assert all(r["n"] >= 100 and r["ci"] is not None for r in rows)
