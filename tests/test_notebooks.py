"""The conventions every chapter follows: paired sources, checked parameters, valid presets."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

from sdprobe.book.notebook import declared_parameters
from sdprobe.paths import NOTEBOOKS_DIR, PRESETS_DIR

SOURCES = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py"))
#: Every executed page: the chapters, and the pages that gather their reports (runs.FINDINGS).
PAGES = SOURCES + [NOTEBOOKS_DIR / "findings.py", NOTEBOOKS_DIR / "intro.py"]
PRESETS = sorted(PRESETS_DIR.glob("*/*.yaml"))


def test_there_is_at_least_one_chapter():
    assert SOURCES, f"no notebooks/NN_*.py in {NOTEBOOKS_DIR}"


def cell_contents(nb: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]


@pytest.mark.parametrize("source", PAGES, ids=lambda p: p.stem)
def test_py_and_ipynb_are_in_sync(source):
    paired = source.with_suffix(".ipynb")
    assert paired.is_file(), f"{paired.name} is missing: run `make execute` (or make book)"
    executed = nbformat.read(paired, as_version=4)
    assert "injected-parameters" not in str(cell_contents(executed)), "committed outputs ran with injected parameters"
    assert cell_contents(executed) == cell_contents(jupytext.read(source)), (
        f"{source.name} and {paired.name} differ: re-execute with "
        f"`make execute` (python -m sdprobe.book.runs book)")


@pytest.mark.parametrize("source", PAGES, ids=lambda p: p.stem)
def test_committed_outputs_are_complete_and_error_free(source):
    nb = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "some cells were never executed"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{source.name} carries an error output: {errors[0].ename}"
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs), "no figure was rendered"


@pytest.mark.parametrize("source", PAGES, ids=lambda p: p.stem)
def test_parameters_are_checked_right_after_the_parameters_cell(source):
    cells = jupytext.read(source).cells
    index = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    check = cells[index + 1].source
    assert "check_parameters(globals()" in check
    for name in declared_parameters(source):
        assert f'"{name}"' in check, f"{source.name}: parameter {name!r} is declared but never checked"


PLUMBING = {"google.colab": "hide-cell", "check_parameters(globals()": "hide-cell", "reproduction_report(": "hide-input"}


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_plumbing_cells_are_folded_away_in_the_book(source):
    """The Colab set-up, the parameter checks, the imports and the report's assembly are one click
    away in the HTML (Jupyter Book's hide tags), not in the reader's path."""
    code = [c for c in jupytext.read(source).cells if c.cell_type == "code"]
    for marker, tag in PLUMBING.items():
        cells = [c for c in code if marker in c.source]
        assert cells, f"{source.name}: no cell with {marker!r}"
        assert all(tag in c.metadata.get("tags", []) for c in cells), f"{source.name}: the {marker!r} cell lacks {tag!r}"
    imports = next(c for c in code if c.source.startswith(("import ", "from ")) and "check_parameters" not in c.source)
    assert "hide-input" in imports.metadata.get("tags", []), f"{source.name}: the imports cell is not folded"
    visible = [c for c in code if not {"hide-cell", "hide-input"} & set(c.metadata.get("tags", []))]
    assert len(visible) >= 3, f"{source.name}: the science is hidden too"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_every_chapter_has_a_default_and_a_paper_preset(source):
    folder = PRESETS_DIR / source.stem
    assert (folder / "default.yaml").is_file() and (folder / "paper.yaml").is_file()


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_presets_name_only_parameters_their_notebook_declares(preset):
    source = NOTEBOOKS_DIR / f"{preset.parent.name}.py"
    assert source.is_file(), f"{preset} belongs to no notebook"
    declared = declared_parameters(source)
    values = yaml.safe_load(preset.read_text()) or {}
    grid = values.pop("grid", {}) or {}
    unknown = sorted((set(values) | set(grid)) - set(declared))
    assert not unknown, f"{preset.name} names {unknown}, not parameters of {source.name}; declared: {sorted(declared)}"
    for name, value in values.items():
        default = declared[name]
        assert value is None or default is None or isinstance(value, type(default)) \
            or isinstance(default, float) and isinstance(value, int), f"{name}: {value!r} is not a {type(default).__name__}"


def test_default_presets_match_the_notebook_defaults():
    """`make book` runs the defaults: the default preset must describe that same run."""
    for folder in sorted(PRESETS_DIR.iterdir()):
        source = NOTEBOOKS_DIR / f"{folder.name}.py"
        defaults = declared_parameters(source)
        preset = yaml.safe_load((folder / "default.yaml").read_text()) or {}
        preset.pop("grid", None)
        assert {k: defaults[k] for k in preset} == preset, folder.name


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_every_chapter_opens_with_its_finding_box_and_a_glance_at_its_aims(source):
    text = source.read_text()
    title = text.index("\n# # ")
    assert text.index("# ```{glue} finding") - title < 80, f"{source.name}: the finding box is not under the title"
    assert ":::{admonition} At a glance" in text and "**Objectives" in text and "**Time" in text


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_every_exercise_has_a_hint_and_a_folded_solution(source):
    tail = source.read_text().split("# ## Try it yourself", 1)[1]
    exercises = [line for line in tail.splitlines()
                 if line.startswith("# **") and line[4:5].isdigit() or line[2:3].isdigit() and line[3:6] == ". *"]
    assert exercises, f"{source.name}: no numbered exercise"
    assert tail.count(":::{dropdown} Hint") >= len(exercises), f"{source.name}: an exercise lacks a hint"
    assert tail.count(":::{admonition} Solution") >= len(exercises), f"{source.name}: an exercise lacks a solution"
    assert tail.count(":class: dropdown") >= len(exercises), f"{source.name}: a solution is not folded"


@pytest.mark.parametrize("source", PAGES, ids=lambda p: p.stem)
def test_code_lines_fit_the_page(source):
    long = [(k, line) for c in jupytext.read(source).cells if c.cell_type == "code"
            for k, line in enumerate(c.source.splitlines()) if len(line) > 88]
    assert not long, f"{source.name}: code lines over 88 characters: {long[:3]}"


@pytest.mark.parametrize("source", PAGES, ids=lambda p: p.stem)
def test_every_folded_cell_says_what_it_hides(source):
    folded = [c for c in jupytext.read(source).cells if c.cell_type == "code"
              and {"hide-input", "hide-cell"} & set(c.metadata.get("tags", []))]
    unlabelled = [c.source.splitlines()[0] for c in folded if "code_prompt_show" not in c.metadata.get("mystnb", {})]
    assert not unlabelled, f"{source.name}: folded cells with the default toggle label: {unlabelled}"
