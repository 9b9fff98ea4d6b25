"""Tables the explainer chapter shows: the prompt's tokens, the text embeddings' shapes, and the
cross-attention layers of the U-Net (pandas; loaded only by the chapters)."""

from __future__ import annotations

import pandas as pd
import torch

from sdprobe.models.layers import layer_map

__all__ = ["cross_attention_table", "prompt_tokens", "text_embedding_shapes"]


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
