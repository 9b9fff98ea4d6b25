"""What the open-vocabulary judge adds to a paper preset: one judged picture against one image drawn.

Builds full-size models of the judge's classes with random weights (OWLv2 base/16 at 960 × 960,
SAM ViT-B at 1024 × 1024, CLIP ViT-L/14 for the colour of each object) and of Stable Diffusion's
U-Net (``random:sd1`` at 512 × 512 or ``random:sdxl`` at 1024 × 1024), and times, interleaved in
one run, the judge's reading of one picture with two objects against one image's denoising
(``steps`` U-Net calls on a classifier-free-guidance batch of two). No weights are downloaded.

    python benchmarks/judge_cost.py --family sd1 --steps 50 --repeats 3 [--device cuda]

Prints a JSON record; the ratio (judge over drawing) is the share of a preset's time the judge adds.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch


def judge_models(device: torch.device, dtype: torch.dtype):
    from transformers import (CLIPConfig, CLIPModel, Owlv2Config, Owlv2ForObjectDetection, SamConfig, SamModel)

    with torch.device(device):
        owl = Owlv2ForObjectDetection(Owlv2Config(vision_config={"image_size": 960})).to(dtype).eval()  # base/16, 960 px
        sam = SamModel(SamConfig()).to(dtype).eval()  # ViT-B, 1024 px
        clip = CLIPModel(CLIPConfig(
            text_config=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12),
            vision_config=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=24,
                               patch_size=14, image_size=224), projection_dim=768)).to(dtype).eval()  # ViT-L/14
    return owl, sam, clip


@torch.no_grad()
def read_once(owl, sam, clip, device, dtype, objects: int = 2) -> None:
    """The judge's forward passes for one picture: OWLv2 with two queries, SAM with one box per
    object, CLIP on one crop per object (the processors' work is small beside these)."""
    owl(input_ids=torch.ones(2, 16, dtype=torch.long, device=device), attention_mask=torch.ones(2, 16, device=device),
        pixel_values=torch.randn(1, 3, 960, 960, device=device, dtype=dtype))
    sam(pixel_values=torch.randn(1, 3, 1024, 1024, device=device, dtype=dtype),
        input_boxes=torch.tensor([[[100.0, 100.0, 500.0, 500.0]] * objects], device=device, dtype=dtype),
        multimask_output=False)
    clip.get_image_features(pixel_values=torch.randn(objects, 3, 224, 224, device=device, dtype=dtype))


@torch.no_grad()
def draw_once(unet, steps: int, side: int, device, dtype, extra: dict) -> None:
    latent = torch.randn(2, 4, side // 8, side // 8, device=device, dtype=dtype)
    context = torch.randn(2, 77, unet.config.cross_attention_dim, device=device, dtype=dtype)
    for t in range(steps):
        unet(latent, 999 - t, encoder_hidden_states=context, added_cond_kwargs=extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=("sd1", "sdxl"), default="sd1")
    parser.add_argument("--steps", type=int, default=50, help="denoising steps of one image (the presets': 50)")
    parser.add_argument("--timed-steps", type=int, default=None,
                        help="U-Net calls actually timed (default: --steps); every call costs the same, so the "
                             "image's time is scaled from them")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    import sdprobe

    unet = sdprobe.load_pipeline(f"random:{args.family}", device=str(device), dtype="fp16" if dtype == torch.float16 else "fp32").unet
    side = 1024 if args.family == "sdxl" else 512
    extra = {}
    if args.family == "sdxl":
        extra = {"text_embeds": torch.randn(2, 1280, device=device, dtype=dtype),
                 "time_ids": torch.tensor([[side, side, 0, 0, side, side]] * 2, device=device, dtype=dtype)}
    owl, sam, clip = judge_models(device, dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    read_once(owl, sam, clip, device, dtype)  # warm-up
    draw_once(unet, 1, side, device, dtype, extra)
    timed = args.timed_steps or args.steps
    judge, draw = [], []
    for _ in range(args.repeats):  # interleaved, so both see the same machine
        sync(); t = time.perf_counter(); read_once(owl, sam, clip, device, dtype); sync(); judge.append(time.perf_counter() - t)
        sync(); t = time.perf_counter(); draw_once(unet, timed, side, device, dtype, extra); sync()
        draw.append((time.perf_counter() - t) * args.steps / timed)
    record = {"family": args.family, "image": f"{side} x {side}", "steps": args.steps, "timed_steps": timed,
              "device": str(device),
              "dtype": str(dtype).removeprefix("torch."), "threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "repeats": args.repeats,
              "judge_s": statistics.median(judge), "draw_s": statistics.median(draw),
              "judge_over_draw": statistics.median(judge) / statistics.median(draw)}
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
