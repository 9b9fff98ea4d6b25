"""Chapter 03's Table 1 harness: paired comparisons and the table a reader sees."""

import pytest

from sdprobe.analysis.metrics import ImageJudgement
from sdprobe.experiments import transplant as table


def _judged(missing: list[bool]) -> list[ImageJudgement]:
    return [ImageJudgement(("red", "blue"), (True, not m), ("red", None if m else "blue")) for m in missing]


def _runs(missing_taue, missing_plain, iou_taue, iou_plain):
    runs = {table.condition_name(6): table.ConditionRuns(), table.condition_name(None): table.ConditionRuns()}
    for name, missing, iou in ((table.condition_name(6), missing_taue, iou_taue),
                               (table.condition_name(None), missing_plain, iou_plain)):
        r = runs[name]
        r.judged, r.iou = _judged(missing), list(iou)
        r.clip, r.aas, r.margin = [30.0] * len(iou), [0.5] * len(iou), [0.0] * len(iou)
    return runs


def test_condition_names_read_as_in_the_table():
    assert table.condition_name(None) == "plain generation"
    assert table.condition_name(6) == "TAUE (t_transplant = 6)"


def test_fewer_missing_objects_is_positive_when_the_transplant_loses_fewer_pairs():
    runs = _runs([False] * 10, [True] * 6 + [False] * 4, [0.5] * 10, [0.2] * 10)
    d = table.missing_object_difference(runs, "TAUE (t_transplant = 6)")
    assert d["mean"] == pytest.approx(0.6) and d["ci"][0] > 0 and d["p"] == pytest.approx(2 * 0.5**6)
    g = table.paired_gain(runs, "iou", "TAUE (t_transplant = 6)")
    assert g["mean"] == pytest.approx(0.3) and g["p"] < 0.01


def test_the_summary_gives_rates_with_exact_intervals_and_swaps_among_complete_images():
    runs = _runs([False] * 8 + [True] * 2, [False] * 10, [0.5] * 10, [0.2] * 10)
    rec = {r["condition"]: r for r in table.table1_summary(runs)}["TAUE (t_transplant = 6)"]
    assert rec["images"] == 10 and rec["missing-object rate"][0] == pytest.approx(0.2)
    assert rec["colour-swap rate"][0] == 0.0 and rec["missing-object rate"][1][0] < 0.2 < rec["missing-object rate"][1][1]


def test_the_reader_table_has_no_nan_and_sets_the_drafts_columns_beside_ours():
    runs = _runs([False] * 10, [True] * 10, [0.5] * 10, [0.2] * 10)
    paper = {"columns": ["IoU", "CLIP score", "AAS"],
             "rows": {"TAUE (t_transplant = 0)": [0.0, 0.0, 0.0], "TAUE (t_transplant = 15)": [0.0, 0.5, 0.0]}}
    frame = table.table1_frame(table.table1_summary(runs), paper)
    text = frame.to_string()
    assert "nan" not in text.lower() and "the draft's Table 1 (2 rows)" in frame.columns
    assert frame.loc["colour-swap rate", "plain generation"] == "—"  # no image with both objects
    assert frame.loc["IoU", "the draft's Table 1 (2 rows)"] == "0.000 in all 2"
    assert frame.loc["CLIP score", "the draft's Table 1 (2 rows)"] == "0.000; 0.500"
    assert frame.loc["images", "the draft's Table 1 (2 rows)"] == "—"


def test_unpaired_conditions_are_refused():
    runs = _runs([False] * 10, [False] * 9, [0.5] * 10, [0.2] * 9)
    with pytest.raises(ValueError):
        table.missing_object_difference(runs, "TAUE (t_transplant = 6)")
    with pytest.raises(ValueError):
        table.paired_gain(runs, "iou", "TAUE (t_transplant = 6)")


def test_table1_runs_every_condition_on_shared_seeds(tiny_pipes):
    from sdprobe.probes.transplant import load_layout_prompts

    pipe = tiny_pipes("sd1-tiny")
    layouts = load_layout_prompts(section="toy")[:1]
    from sdprobe.analysis.judges import OpenVocabularyJudge

    blind = OpenVocabularyJudge("random:owlv2-tiny", "random:sam-tiny", "toy", threshold=1.0)  # finds nothing
    runs = table.run_table1(pipe, layouts, [0, None], images_per_prompt=2, batch_size=2, steps=3, guidance=2.0, seed=0,
                            t_crop=1, shift_target=0.07, sigma=0.5, clip=_toy_clip(), judge=blind, aas_images=2)
    assert set(runs) == {"TAUE (t_transplant = 0)", "plain generation"}
    assert all(r.n == 2 and len(r.aas) == 2 and len(r.examples) == 1 for r in runs.values())
    assert all(v == 0.0 for r in runs.values() for v in r.iou)  # a judge that finds nothing scores 0
    assert all(j.missing for r in runs.values() for j in r.judged)


def _toy_clip():
    from sdprobe.analysis.scorers import load_clip

    return load_clip("toy")


def test_traced_images_get_calls_of_their_own_so_tracing_a_few_does_not_trace_the_batch():
    assert table._batches(10, 10, 2) == [(0, 2, True), (2, 8, False)]
    assert table._batches(10, 4, None) == [(0, 4, True), (4, 4, True), (8, 2, True)]
    assert table._batches(5, 10, 0) == [(0, 5, False)]
