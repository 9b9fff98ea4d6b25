"""Verdicts come from rules and numbers only; reference files are checked when loaded."""

import pytest

from sdprobe.analysis.claims import ReferenceFileError, claim_row, describe_rule, load_reference, verdict
from sdprobe.analysis.stats import mcnemar, paired_difference, sign_test
from sdprobe.book.notebook import reproduction_report
from sdprobe.formatting import format_estimate
from sdprobe.paths import DATA_DIR


@pytest.mark.parametrize("ci, expected", [((0.1, 0.3), "holds"), ((-0.3, -0.1), "does not hold"),
                                          ((-0.1, 0.2), "inconclusive")])
def test_an_interval_rule_reads_which_side_of_the_threshold_the_interval_lies(ci, expected):
    ours = (ci[0] + ci[1]) / 2
    assert verdict({"above": 0}, ours, ci) == expected
    assert verdict({"below": 0}, -ours, (-ci[1], -ci[0])) == expected


def test_a_rule_naming_a_test_needs_the_interval_and_the_test_to_agree():
    rule = {"above": 0, "alpha": 0.05}
    assert verdict(rule, 0.2, (0.1, 0.3), p=0.01) == "holds"
    assert verdict(rule, -0.2, (-0.3, -0.1), p=0.01) == "does not hold"
    # the interval clears the threshold but the test does not back it (chapter 03's CLIP row)
    assert verdict(rule, 0.2, (0.1, 0.3), p=0.13) == "inconclusive"
    assert verdict(rule, 0.05, (-0.1, 0.2), p=0.001) == "inconclusive"
    assert "and p < 0.05" in describe_rule(rule)
    with pytest.raises(ReferenceFileError, match="interval"):
        verdict(rule, 0.2, p=0.01)


@pytest.mark.parametrize("ci, expected", [((-0.1, 0.05), "holds"), ((0.2, 0.4), "does not hold"),
                                          ((-0.4, -0.2), "does not hold"), ((-0.2, 0.1), "inconclusive")])
def test_an_equivalence_rule_holds_only_when_the_whole_interval_is_inside_its_margin(ci, expected):
    ours = (ci[0] + ci[1]) / 2
    assert verdict({"within": 0.15}, ours, ci) == expected
    assert "within ±0.15" in describe_rule({"within": 0.15})


@pytest.mark.parametrize("rule", [{"within": 0}, {"within": -1}, {"within": 0.1, "alpha": 0.05}])
def test_an_equivalence_rule_needs_a_positive_margin_and_no_alpha(rule):
    with pytest.raises(ReferenceFileError):
        verdict(rule, 0.0, (-0.1, 0.1))


def test_a_mechanism_rule_reads_mechanism_when_met_and_does_not_hold_otherwise():
    assert verdict({"at_most": 0.02, "mechanism": True}, 0.01) == "mechanism"
    assert verdict({"at_most": 0.02, "mechanism": True}, 0.03) == "does not hold"
    assert "mechanism if ours ≤ 0.02" in describe_rule({"at_most": 0.02, "mechanism": True})


@pytest.mark.parametrize("rule", [{"above": 0, "below": 1}, {"over": 0}, {"at_most": 1, "alpha": 0.05}, "above 0"])
def test_a_malformed_rule_is_refused_in_one_line(rule):
    with pytest.raises(ReferenceFileError):
        verdict(rule, 0.5, (0.4, 0.6))


def test_missing_interval_or_non_finite_estimate_is_an_error_not_a_verdict():
    with pytest.raises(ReferenceFileError, match="interval"):
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
    assert set(row) == {"claim", "what", "paper", "ours", "unit", "n", "ci", "test", "p", "rule", "threshold",
                        "verdict", "reason", "model"}
    assert row["threshold"] == 0.5
    assert row["verdict"] == "holds" and row["claim"] == "c" and row["reason"] == ""
    with pytest.raises(ReferenceFileError, match="'d' is not a claim"):
        claim_row(ref, "d", ours=0.7, n=1, model="toy")
    (tmp_path / "y.yaml").write_text("claims:\n  c: {what: w, rule: {above: 0.5}}\n")
    with pytest.raises(ReferenceFileError, match="lacks paper"):
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


def test_the_toy_cards_gates_become_report_rows_judged_on_their_intervals():
    import json

    from sdprobe.paths import MODELS_DIR
    from sdprobe.toy.card import report_rows
    from sdprobe.toy.evaluate import GATES, TARGETS

    evaluation = json.loads((MODELS_DIR / "toy" / "evaluation.json").read_text())
    rows = report_rows(evaluation)
    bars = {**GATES, **TARGETS}
    gates = [r for r in rows if r["claim"] in bars]
    # judged on the interval, as every chapter judges: holds only when its low end clears the bar
    assert [r["verdict"] == "holds" for r in gates] == [r["ci"][0] > bars[r["claim"]] for r in gates]
    assert all(r["paper"].startswith("none: a ") for r in gates)  # the book's own bars, not a paper's
    assert [r["claim"] for r in rows if r["claim"] not in bars] == ["binds_like_sd21"]
    assert all(r["n"] >= 100 and r["ci"] is not None for r in rows)


# ----------------------------------------------------------------------------- what the engine refuses

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

NAN = float("nan")


@pytest.mark.parametrize("p", [NAN, -1.0, 1.5, float("inf")])
def test_a_p_value_that_is_not_a_probability_is_refused_not_judged(p):
    with pytest.raises(ValueError, match="a p-value lies in \\[0, 1\\]") as err:
        verdict({"above": 0, "alpha": 0.05}, 0.1, (0.0, 0.2), p=p)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("ci, message", [
    ((0.9, 0.1), "is inverted"), ((NAN, NAN), "two finite ends"), ((0.0, float("inf")), "two finite ends"),
    ((0.2, 0.3), "does not contain its estimate 0.1"), ((0.1,), "a pair"), ("ab", "two finite ends"),
])
def test_an_interval_that_is_inverted_not_finite_or_beside_its_estimate_is_refused(ci, message):
    with pytest.raises(ValueError, match=message):
        verdict({"above": 0}, 0.1, ci)


@pytest.mark.parametrize("rule, message", [
    ({"above": NAN}, "threshold of above must be a finite number, not nan"),
    ({"above": "abc"}, "not 'abc'"),
    ({"at_most": True}, "not True"),
    ({"above": 0, "alpha": NAN}, "alpha must be a number between 0 and 1, not nan"),
    ({"above": 0, "alpha": 2}, "not 2"),
    ({"above": 0, "alpha": 0}, "not 0"),
    ({"above": 0, "mechanism": "yes"}, "mechanism is true or false"),
])
def test_a_rule_with_a_threshold_or_alpha_it_cannot_use_is_refused(rule, message):
    with pytest.raises(ReferenceFileError, match=message):
        verdict(rule, 0.1, (0.0, 0.2), p=0.01)


@pytest.mark.parametrize("n", [0, -5, 2.7, True, "64", NAN])
def test_n_must_be_a_whole_number_of_at_least_one(tmp_path, n):
    (tmp_path / "x.yaml").write_text("claims:\n  c: {what: w, paper: p, rule: {above: 0}}\n")
    with pytest.raises(ValueError, match="a whole number of at least 1, not"):
        claim_row(load_reference("x", tmp_path), "c", ours=0.5, ci=(0.4, 0.6), n=n, model="toy")


def test_numpy_numbers_are_numbers():
    import numpy as np

    assert verdict({"above": np.float32(0)}, np.float64(0.5), (np.float32(0.25), 0.75)) == "holds"
    assert claim_row({"claims": {"c": {"what": "w", "paper": "p", "rule": {"above": 0}}}}, "c", ours=0.5,
                     ci=(0.4, 0.6), n=np.int64(64), model="toy")["n"] == 64


@pytest.mark.parametrize("text, message", [
    ("claims:\n  c: just words\n", "claim 'c' is a mapping of what, paper and rule"),
    ("claims:\n  - c\n", "'claims' maps each claim's key"),
    ("claims: {c: [1, 2\n", "not valid YAML"),
    ("claims: !!python/object:os.system {}\n", "not valid YAML"),
    ("- a list\n", "a reference file is a mapping"),
    ("claims:\n  c: {what: w, paper: p, rule: {above: abc}}\n", "threshold of above must be a finite number, not 'abc'"),
    ("claims:\n  c: {what: w, paper: p, rule: {above: 0, alpha: .nan}}\n", "alpha must be a number between 0 and 1"),
])
def test_a_malformed_reference_file_is_one_line_when_it_loads(tmp_path, text, message):
    (tmp_path / "x.yaml").write_text(text)
    with pytest.raises(ReferenceFileError, match=message) as err:
        load_reference("x", tmp_path)
    assert "\n" not in str(err.value)


def test_load_reference_rereads_an_edited_file_and_returns_a_fresh_copy(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("claims:\n  c: {what: first, paper: p, rule: {above: 0}}\n")
    first = load_reference("x", tmp_path)
    first["claims"]["c"]["rule"]["above"] = 99  # a caller's change stays the caller's
    assert load_reference("x", tmp_path)["claims"]["c"]["rule"]["above"] == 0
    path.write_text("claims:\n  c: {what: second, paper: p, rule: {above: 0}}\n")
    assert load_reference("x", tmp_path)["claims"]["c"]["what"] == "second"


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
kinds = st.sampled_from(["above", "below"])


@st.composite
def estimates(draw):
    lo, hi = sorted((draw(finite), draw(finite)))
    return draw(st.floats(min_value=lo, max_value=hi)), (lo, hi)


@given(kinds, finite, estimates())
def test_property_an_interval_verdict_mirrors_under_negation(kind, x, estimate):
    ours, (lo, hi) = estimate
    other = "below" if kind == "above" else "above"
    assert verdict({kind: x}, ours, (lo, hi)) == verdict({other: -x}, -ours, (-hi, -lo))


@given(finite, estimates(), st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_property_moving_the_interval_up_never_turns_an_above_claim_against_itself(x, estimate, shift):
    order = {"does not hold": 0, "inconclusive": 1, "holds": 2}
    ours, (lo, hi) = estimate
    assert order[verdict({"above": x}, ours + shift, (lo + shift, hi + shift))] >= order[verdict({"above": x}, ours, (lo, hi))]


@given(kinds, finite, estimates())
def test_property_holds_exactly_when_the_whole_interval_is_on_the_claimed_side(kind, x, estimate):
    ours, (lo, hi) = estimate
    result = verdict({kind: x}, ours, (lo, hi))
    inside = lo > x if kind == "above" else hi < x
    against = hi < x if kind == "above" else lo > x
    assert (result == "holds") == inside and (result == "does not hold") == against


@given(kinds, finite, estimates(), st.floats(min_value=0, max_value=1), st.floats(min_value=1e-6, max_value=1 - 1e-6))
def test_property_an_alpha_rule_holds_only_when_significant_and_the_interval_on_the_claimed_side(
        kind, x, estimate, p, alpha):
    ours, (lo, hi) = estimate
    result = verdict({kind: x, "alpha": alpha}, ours, (lo, hi), p=p)
    inside = lo > x if kind == "above" else hi < x
    against = hi < x if kind == "above" else lo > x
    assert (result == "holds") == (p < alpha and inside)
    assert (result == "does not hold") == (p < alpha and against)


@given(st.one_of(st.just(NAN), st.just(float("inf")), st.floats(max_value=-1e-9), st.floats(min_value=1.000001)))
def test_property_every_p_outside_the_unit_interval_is_refused(p):
    with pytest.raises(ValueError):
        verdict({"above": 0, "alpha": 0.05}, 0.1, (0.0, 0.2), p=p)


def test_a_claim_that_cannot_be_measured_has_a_row_that_says_why(tmp_path):
    from sdprobe.analysis.claims import NOT_MEASURED, unmeasured_row

    (tmp_path / "x.yaml").write_text("claims:\n  c: {what: w, paper: p, unit: '%', rule: {above: 0.5}}\n")
    ref = load_reference("x", tmp_path)
    row = unmeasured_row(ref, "c", reason="the judge found the subject in none of 16 images", n=16, model="m")
    assert row["verdict"] == NOT_MEASURED and row["claim"] == "c" and row["n"] == 16 and row["ours"] == ""
    assert set(row) == set(claim_row(ref, "c", ours=0.7, ci=(0.6, 0.8), n=1, model="m"))
    html = reproduction_report([row], display=False)
    assert "not measured" in html and "none of 16 images" in html and "1 not measured" in html
    with pytest.raises(ValueError, match="says why"):
        unmeasured_row(ref, "c", reason=" ", model="m")
    with pytest.raises(ReferenceFileError, match="'d' is not a claim"):
        unmeasured_row(ref, "d", reason="x", model="m")


def test_the_toy_is_placed_beside_genevals_models_by_its_interval():
    from sdprobe.toy.card import geneval_comparison

    kinds = {k: {"images": 128, "correct": 0.5, "correct_ci": [0.41, 0.59], "present": 0.99,
                 "present_ci": [0.95, 1.0]} for k in ("single", "pair", "count")}
    kinds["pair"] |= {"correct": 0.16, "correct_ci": [0.10, 0.23]}
    kinds["count"] |= {"correct": 0.41, "correct_ci": [0.40, 0.42]}
    rows, sentence = geneval_comparison({"kinds": kinds})
    place = {r["task"]: r["the toy draws it"] for r in rows}
    assert place["colour binding"] == "as well as SD 2.1 and SDXL"  # 17 % and 23 % inside 10–23 %
    assert place["single object"] == "as well as SD 1.5, SD 2.1 and SDXL"
    assert place["colours"] == "below all three" and place["two objects"] == "above all three"
    assert place["counting"] == "between SDXL and SD 2.1"  # 39 % below the interval, 44 % above it
    assert sentence.startswith("On GenEval's tasks the toy scores as well as SD 1.5, SD 2.1 and SDXL on single object")
