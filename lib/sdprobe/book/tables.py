"""Tables as the book shows them (:func:`show_table`, the one way every chapter prints a table),
and the tables the explainer chapter builds: the prompt's tokens, the text embeddings' shapes and
the U-Net's cross-attention layers (pandas; loaded only by the chapters)."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import torch

from sdprobe.formatting import BLANK, format_cell
from sdprobe.models.layers import layer_map

__all__ = ["Table", "cross_attention_table", "prompt_tokens", "show_table", "text_embedding_shapes"]

class Table:
    """A table made for reading: every cell already text (see :func:`format_cell`), shown in
    full in HTML (class ``sdprobe-table``) and as plain text, with an optional caption."""

    def __init__(self, frame: pd.DataFrame, caption: str | None = None):
        self.frame, self.caption = frame, caption

    def _repr_html_(self) -> str:
        frame, index = self.frame, True
        if isinstance(frame.index, pd.RangeIndex):  # 0, 1, 2 … says nothing: leave it out
            index = False
        elif any(name is not None for name in frame.index.names):  # named index: one header row, not two
            frame, index = frame.reset_index(), False
        body = frame.to_html(classes="sdprobe-table", border=0, escape=True, na_rep=BLANK, index=index)
        if self.caption:
            body = body.replace(">\n  <thead>", f">\n  <caption>{html.escape(self.caption)}</caption>\n  <thead>", 1)
        return body

    def __repr__(self) -> str:
        with pd.option_context("display.max_colwidth", None, "display.width", 200, "display.max_columns", None):
            text = self.frame.to_string(na_rep=BLANK)
        return f"{self.caption}\n{text}" if self.caption else text


def show_table(frame: pd.DataFrame | dict | list, *, digits: int = 3, percent: Iterable[str] = (),
               caption: str | None = None, transpose: bool | None = None, max_columns: int = 7) -> Table:
    """``frame`` as the book shows tables: numbers rounded to ``digits`` significant digits (whole
    numbers without decimals), the columns in ``percent`` as percentages, blanks instead of
    ``NaN``, no cell cut short; a table wider than ``max_columns`` with fewer rows than columns is
    turned on its side (``transpose`` forces either way).
    """
    df = frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)
    wanted = set(percent)
    unknown = wanted - set(map(str, df.columns))
    if unknown:
        raise ValueError(f"percent names columns this table does not have: {sorted(unknown)}")
    text = pd.DataFrame({col: [format_cell(v, digits, str(col) in wanted) for v in df[col]] for col in df.columns},
                        index=df.index)
    text.columns = df.columns
    if transpose or transpose is None and len(df.columns) > max_columns and len(df) < len(df.columns):
        text = text.T
    return Table(text, caption)


def prompt_tokens(pipe, prompt: str) -> pd.DataFrame:
    """The prompt as the (first) tokenizer sees it: position, id and token, padding left out."""
    tok = pipe.tokenizer
    ids = tok(prompt, padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids
    end = ids.index(tok.eos_token_id) if tok.eos_token_id in ids else len(ids) - 1
    rows = [(i, t, tok.convert_ids_to_tokens(t)) for i, t in enumerate(ids[: end + 1])]
    return pd.DataFrame(rows, columns=["position", "id", "token"]).set_index("position")


@torch.no_grad()
def text_embedding_shapes(pipe, prompt: str) -> dict[str, tuple[int, ...]]:
    """Shapes of what each text encoder hands the U-Net for one prompt (77 tokens × width)."""
    shapes = {}
    for enc_name, tok_name in (("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2")):
        enc, tok = getattr(pipe, enc_name, None), getattr(pipe, tok_name, None)
        if enc is None or tok is None:
            continue
        ids = tok(prompt, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt").input_ids
        out = enc(ids.to(enc.device), output_hidden_states=True)
        shapes[enc_name] = tuple(out.hidden_states[-1].shape)
    return shapes


def cross_attention_table(pipe) -> pd.DataFrame:
    """Every text-conditioned U-Net block: its name, diffusers module, scale and attention sizes.

    In each, queries come from the image features (``query_dim`` channels) and keys/values from
    the text embedding (``cross_attention_dim`` channels).
    """
    rows = []
    for name, layer in layer_map(pipe.unet).items():
        if not layer.is_text:
            continue
        transformer = pipe.unet.get_submodule(layer.text_module)
        attn = transformer.transformer_blocks[0].attn2
        rows.append({
            "layer": name,
            "module": layer.text_module,
            "scale": f"1/{layer.scale}",
            "blocks": len(transformer.transformer_blocks),
            "heads": attn.heads,
            "query_dim": attn.to_q.in_features,
            "text_dim": attn.to_k.in_features,
        })
    return pd.DataFrame(rows).set_index("layer")
