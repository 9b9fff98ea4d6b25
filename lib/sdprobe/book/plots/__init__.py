"""Figures for the book. Every function returns a matplotlib ``Figure`` built without pyplot,
so a notebook shows it exactly once (as the cell's value) and nothing leaks between cells.

Make new figures with :func:`new_figure`: a pyplot-free figure has no inline backend to draw it,
so ours carries its own PNG representation for Jupyter, papermill and the book.

One module per kind, all imported from here: ``figure`` (the figure itself, the column width,
titles), ``player`` (step players, and sliders over precomputed runs), ``grids`` (pictures in grids and rows), ``maps`` (heat-map
overlays), ``charts`` (curves, intervals, counts), ``masks`` (chapter 02's attention masks) and ``unet``
(the U-Net's blocks as a labelled diagram).
"""

from sdprobe.book.plots.figure import BookFigure, MAX_WIDTH, PNG_DPI, fit_title, new_figure, plain_log_ticks
from sdprobe.book.plots.player import Player, player, slider
from sdprobe.book.plots.unet import unet_diagram
from sdprobe.book.plots.grids import image_grid, image_rows, latent_channels
from sdprobe.book.plots.maps import heat_colorbar, heatmap_overlay, overlay_figure
from sdprobe.book.plots.charts import count_matrix, interval_plot, line_plot
from sdprobe.book.plots.masks import mask_figure
from sdprobe.images import to_pil  # noqa: F401  (the chapters' way to show one picture)

__all__ = [
    "BookFigure",
    "MAX_WIDTH",
    "PNG_DPI",
    "Player",
    "count_matrix",
    "fit_title",
    "heat_colorbar",
    "heatmap_overlay",
    "image_grid",
    "image_rows",
    "interval_plot",
    "latent_channels",
    "line_plot",
    "mask_figure",
    "new_figure",
    "overlay_figure",
    "plain_log_ticks",
    "player",
    "slider",
    "unet_diagram",
    "to_pil",
]
