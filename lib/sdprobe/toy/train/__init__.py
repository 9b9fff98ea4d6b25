"""Train the toy model from scratch: ``python -m sdprobe.toy.train [--stage …]`` (``make toy``).

Stages, each deterministic from its seed and resumable from its checkpoint in ``.toytrain/``:

* ``vae``: an 8×-downsampling AutoencoderKL, on 64-pixel crops and then whole scenes: L1 with
  object pixels and a band around each outline weighted up, an L1 on image gradients (edges stay
  sharp) and a small KL term, as in the latent diffusion paper's autoencoders but without the GAN.
* ``clip``: a small CLIP (contrastive image-text model) for the toy CLIP score, independent of
  the generator.
* ``unet``: the U-Net and the CLIP text encoder together, on VAE latents of a pool of training
  scenes, with SD's epsilon objective weighted by Min-SNR-γ, offset noise, 10 % empty captions
  for classifier-free guidance, warm-up then cosine decay, and an exponential moving average
  (EMA) of the weights; judged samples at milestones.
* ``ground``: the U-Net continued with the grounding losses of :mod:`sdprobe.toy.grounding`.
* ``export``: the diffusers pipeline into ``data/models/toy`` (U-Net and VAE in fp16
  safetensors, text encoders in fp32), plus ``clip/``, ``world.json`` and the training log.

Scenes are drawn from seeds; no dataset is stored. ``--device cuda`` trains the same recipe on
a GPU (the arithmetic differs, so the weights do not match a CPU run bit for bit).

The stages live in one module each (``vae``, ``unet``, ``clip``, ``export``), beside the data
they draw (``data``), the checkpoints and schedule they share (``checkpoints``), the milestone
samples (``samples``) and the command line (``cli``).
"""

from sdprobe.toy.train.clip import train_clip
from sdprobe.toy.train.data import OUT, WORK, outline_band, render_scenes, scene_batch
from sdprobe.toy.train.export import export, training_log
from sdprobe.toy.train.samples import SAMPLE_PROMPTS
from sdprobe.toy.train.unet import (
    CALIBRATION_STEPS, ema_decay, judge_milestone, min_snr_weights, train_grounding, train_unet,
)
from sdprobe.toy.train.vae import train_vae

__all__ = ["CALIBRATION_STEPS", "OUT", "SAMPLE_PROMPTS", "WORK", "ema_decay", "export", "judge_milestone",
           "min_snr_weights", "outline_band", "render_scenes", "scene_batch", "train_clip", "train_grounding",
           "train_unet", "train_vae", "training_log"]
