"""The U-Net as a labelled diagram: its blocks under the papers' names, their resolutions and widths."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdprobe.book.plots.figure import MAX_WIDTH, BookFigure, new_figure
from sdprobe.models.layers import layer_map

_TEXT, _PLAIN = "#f4a259", "#d9e4f0"  # blocks with and without cross-attention


def unet_diagram(configs: Mapping[str, Mapping[str, Any]], *, title: str | None = None) -> BookFigure:
    """Every block of the U-Net (``IN0``…``IN11``, ``MID``, ``OUT0``…``OUT11``) as a box in a U,
    one row per resolution, the text-conditioned (cross-attention) blocks filled; each row says
    the feature map's size and width for every model in ``configs``, and the first model's
    layout is drawn (all must share it, as the toy and SD 1.x do).

    Args:
        configs: a name ("SD 1.x, 512²", "toy") → that model's U-Net config (``unet.config``
            or its ``config.json``).

    Raises:
        ValueError: no configs, or configs whose block layouts differ.
    """
    from matplotlib.patches import Patch, Rectangle

    if not configs:
        raise ValueError("unet_diagram needs at least one U-Net config")
    maps = {name: layer_map(cfg) for name, cfg in configs.items()}
    layouts = {name: [(layer.name, layer.scale, layer.is_text) for layer in m.values()] for name, m in maps.items()}
    first = next(iter(layouts))
    if any(layout != layouts[first] for layout in layouts.values()):
        raise ValueError(f"these U-Nets have different block layouts: {', '.join(layouts)}")
    blocks = layouts[first]
    scales = sorted({scale for _, scale, _ in blocks})
    fig = new_figure(vector=True, figsize=(MAX_WIDTH, 1.1 + 0.62 * len(scales)), layout="constrained")
    ax = fig.subplots()
    for x, (name, scale, is_text) in enumerate(blocks):
        y = scales.index(scale)
        ax.add_patch(Rectangle((x - 0.42, y - 0.4), 0.84, 0.8, facecolor=_TEXT if is_text else _PLAIN,
                               edgecolor="#333333", linewidth=0.6))
        ax.text(x, y, name, rotation=90, ha="center", va="center", fontsize=9)
    for x, ((_, a, _), (_, b, _)) in enumerate(zip(blocks, blocks[1:])):
        ax.annotate("", (x + 0.58, scales.index(b)), (x + 0.42, scales.index(a)),
                    arrowprops={"arrowstyle": "-", "color": "#777777", "linewidth": 0.6})
    ax.set_xlim(-0.7, len(blocks) - 0.3)
    ax.set_ylim(len(scales) - 0.45, -0.65)
    ax.set_yticks(range(len(scales)), [_row_label(configs, maps, s) for s in scales], fontsize=9)
    ax.set_xticks([])
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0)
    ax.text(len(blocks) // 4, -0.58, "encoder (IN): down", ha="center", fontsize=9)
    ax.text(3 * len(blocks) // 4, -0.58, "decoder (OUT): up, with skips from IN", ha="center", fontsize=9)
    fig.legend(handles=[Patch(facecolor=_TEXT, edgecolor="#333333", label="reads the prompt (cross-attention)"),
                        Patch(facecolor=_PLAIN, edgecolor="#333333", label="image features only")],
               loc="outside lower center", ncols=2, fontsize=9, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def _row_label(configs: Mapping[str, Mapping[str, Any]], maps: Mapping[str, Any], scale: int) -> str:
    """'1/2: SD 1.x 32²×640 · toy 8²×64': each model's feature map at this resolution."""
    parts = []
    for name, cfg in configs.items():
        cfg = dict(getattr(cfg, "config", cfg))
        side = int(cfg.get("sample_size") or 64) // scale
        level = scale.bit_length() - 1
        width = list(cfg["block_out_channels"])[min(level, len(cfg["block_out_channels"]) - 1)]
        parts.append(f"{name} {side}²×{width}")
    return f"1/{scale}:\n" + "\n".join(parts)
