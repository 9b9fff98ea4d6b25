# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # What the book found
#
# Every chapter ends with a reproduction report: each claim of its study, the study's own
# wording or number, our measurement with its 95 % interval, and a verdict that a rule written
# before the run gives ({doc}`../book/glossary` defines every verdict word). This page gathers
# those reports from the executed chapters, as they are, with no verdict of its own: the table
# lists every claim, the figure draws every claim that has an interval.
#
# Unless a row says otherwise, the model is `toy`, the miniature Stable Diffusion that ships
# with the book ({doc}`05_training_the_toy_model`). A toy verdict says how the *mechanism* behaves
# on a model that draws one object right 95 % of the time and binds two colours about as badly
# as SD 2.1; the papers' models give their own verdicts through the same code, with each
# chapter's `paper` preset.

# %% tags=["parameters"]
# folder of executed chapters (NN_*.ipynb) to gather; "" is this book's own
folder = ""

# %% tags=["hide-cell"] mystnb={"code_prompt_show": "Show the parameter check and imports", "code_prompt_hide": "Hide the parameter check and imports"}
from pathlib import Path

import sdprobe
from sdprobe.book.notebook import Str, check_parameters

P = check_parameters(globals(), {"folder": Str(empty=True)})

from sdprobe.book import findings
from sdprobe.book.tables import show_table
from sdprobe.paths import NOTEBOOKS_DIR

# %%
reports = findings.chapter_reports(Path(P.folder) if P.folder else NOTEBOOKS_DIR)
frame = findings.findings_frame(reports)
counts = frame.pivot_table(index=["chapter", "title"], columns="verdict",
                           values="claim", aggfunc="count", fill_value=0)
counts["claims"] = counts.sum(axis=1)
show_table(counts.reset_index().rename(columns={"title": "study"}),
           caption=f"{len(frame)} claims from {len(reports)} chapters, by verdict")

# %% [markdown]
# ## Every claim with an interval
#
# Each bar is a claim's 95 % interval and its dot our estimate, coloured by the verdict; the
# black tick is the threshold the rule compares with (both ends of the margin for an
# equivalence rule). A claim holds when its whole bar lies on the claimed side of the tick. Rates
# and differences of rates share one axis in percent; the other units have their own panels.
# Noise-free measurements (the *mechanism* rows) and claims that could not be measured have no
# interval: the table below lists them.

# %% tags=["hide-input"] mystnb={"code_prompt_show": "Show the code for the forest plot", "code_prompt_hide": "Hide the code for the forest plot"}
findings.forest_plot(frame, title="Fig. 1 — every claim with an interval, by unit "
                                  "(95 % intervals)")

# %% [markdown]
# ## Every claim
#
# Grouped by chapter; each chapter's heading links to its reproduction report, where the rule
# of each row is printed under its claim.

# %% tags=["hide-input"] mystnb={"code_prompt_show": "Show the code for the table", "code_prompt_hide": "Hide the code for the table"}
from IPython.display import HTML

HTML(findings.findings_table(frame))
