"""The ``clip`` stage: a small CLIP for the toy CLIP score, independent of the generator."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from sdprobe.progress import progress
from sdprobe.toy import architecture as arch
from sdprobe.toy.train.checkpoints import _load, _log, _lr, _save
from sdprobe.toy.train.data import WORK, scene_batch, seed_stream, tokenizer


def train_clip(steps: int = 600, batch: int = 64, lr: float = 1e-3, seed: int = 0, work: Path = WORK) -> None:
    from transformers import CLIPConfig, CLIPModel

    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / "clip.pt"
    tok = tokenizer(work / "tokenizer")
    config = CLIPConfig(text_config=arch.text_encoder_config(len(tok), tok.bos_token_id, tok.eos_token_id),
                        vision_config=arch.CLIP_VISION, projection_dim=64)
    torch.manual_seed(seed)
    model = CLIPModel(config)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    start = 0
    if (state := _load(ckpt)) is not None:
        model.load_state_dict(state["model"]); opt.load_state_dict(state["opt"]); start = state["step"]
    model.train()
    for step in progress(range(start, steps), desc="clip", initial=start, total=steps):
        images, captions = scene_batch(seed_stream(3, batch, step))
        pixels = F.interpolate(images, size=arch.CLIP_VISION["image_size"], mode="area")
        ids = tok(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        for g in opt.param_groups:
            g["lr"] = _lr(step, lr, 50, steps)
        out = model(input_ids=ids, pixel_values=pixels, return_loss=True)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        _log(work, "clip", {"step": step, "loss": out.loss.item()})
        if (step + 1) % 50 == 0 or step + 1 == steps:
            _save(ckpt, model=model.state_dict(), opt=opt.state_dict(), step=step + 1,
                  recipe=dict(steps=steps, batch=batch, device="cpu", threads=torch.get_num_threads(), lr=lr))
