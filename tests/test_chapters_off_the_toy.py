"""Every chapter 00–04 off the toy, as a Colab reader with a local copy runs it: a non-toy SD 1.x
pipeline saved to a folder, the open-vocabulary judge built from tiny random OWLv2 and SAM saved
to folders (the toy CLIP for colours), the chapter's smoke preset, through papermill. Every claim
of the chapter's reference file gets its row: measured with n, an interval and a verdict, or
"not measured" with the reason."""

from __future__ import annotations

import pytest

import sdprobe
from sdprobe.analysis.claims import NOT_MEASURED, VERDICTS, load_reference
from sdprobe.analysis.judges.tiny import save
from sdprobe.book.execution import NotebookRunError, execute_notebook
from sdprobe.book.outputs import read_report_rows
from sdprobe.book.plan import load_preset
from sdprobe.paths import NOTEBOOKS_DIR

CHAPTERS = ["00_how_stable_diffusion_works", "01_generation_process_heatmaps", "02_hopping_mask_sequences",
            "03_seedling_transplant", "04_unet_feature_swap"]


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """Folders as a downloaded copy would be: an SD 1.x-shaped pipeline and the judges."""
    root = tmp_path_factory.mktemp("local")
    sdprobe.load_pipeline("random:sd1-tiny", device="cpu", dtype="fp32").save_pretrained(root / "sd1")
    return {"model": str(root / "sd1"), "detector": str(save("owlv2-tiny", root / "owlv2")),
            "segmenter": str(save("sam-tiny", root / "sam"))}


def run(chapter: str, local: dict, tmp_path, **extra) -> list[dict]:
    params, _ = load_preset(chapter, "smoke")
    params.update(local, **extra)
    out = execute_notebook(NOTEBOOKS_DIR / f"{chapter}.py", tmp_path / f"{chapter}.ipynb", params, progress_bar=False)
    return read_report_rows(out)


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_claim_gets_its_row_on_a_local_non_toy_pipeline_with_the_open_vocabulary_judge(chapter, local, tmp_path):
    rows = run(chapter, local, tmp_path)
    claims = set(load_reference(chapter)["claims"])
    assert {r["claim"] for r in rows} == claims, f"claims without a row: {sorted(claims - {r['claim'] for r in rows})}"
    for row in rows:
        assert row["verdict"] in VERDICTS and local["model"] in row["model"]
        if row["verdict"] == NOT_MEASURED:
            assert row["reason"], row
        else:
            assert isinstance(row["ours"], float) and row["n"] >= 1
    by_claim = {r["claim"]: r for r in rows}
    if chapter.startswith("00"):  # the forward process on a 64-px latent is a mechanism, not a failure
        assert by_claim["forward_closed_form"]["verdict"] == "mechanism"
        assert by_claim["guidance_faithful"]["verdict"] != NOT_MEASURED
    if chapter.startswith("02"):  # the picture claims are judged, not skipped
        assert all(by_claim[k]["verdict"] != NOT_MEASURED for k in ("colour_kept", "later_follow", "shared_noise_alone"))


@pytest.mark.slow
def test_chapter_03_draws_the_toy_prompts_on_a_tokenizer_that_splits_their_words(local, tmp_path):
    rows = run("03_seedling_transplant", local, tmp_path, prompt_set="toy")
    assert {r["claim"] for r in rows} == set(load_reference("03_seedling_transplant")["claims"])


@pytest.mark.slow
@pytest.mark.parametrize("chapter, extra, message", [
    ("04_unet_feature_swap", {"foreground": "world"}, "foreground='world' reads the toy world's pictures only"),
    ("01_generation_process_heatmaps", {"judge": "toy"}, "judge='toy' reads only the toy model's pictures"),
    ("03_seedling_transplant", {"detector": "toy"}, "detector='toy' finds the toy world's shapes only"),
])
def test_a_toy_only_setting_off_the_toy_stops_the_chapter_in_one_line(chapter, extra, message, local, tmp_path):
    with pytest.raises(NotebookRunError, match=message) as err:
        run(chapter, local, tmp_path, **extra)
    assert "\n" not in err.value.summary
