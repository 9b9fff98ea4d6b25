"""Model access: load a pipeline, name its layers, move between pixels and latents, read tokens.

* :mod:`~sdprobe.models.loading`: :func:`load_pipeline` for ``toy``, ``random:<family>``, local
  folders and Hub ids (safetensors only);
* :mod:`~sdprobe.models.layers`: the papers' block names (``IN0``…``OUT11``) on any U-Net;
* :mod:`~sdprobe.models.latents`: the VAE's encoder and decoder, and the latent scale;
* :mod:`~sdprobe.models.tokens`: which context positions hold which word; prompt lengths;
* :mod:`~sdprobe.models.diffusion`: the noise schedule and the forward process.
"""

from sdprobe.models.loading import (
    HUB_MODELS, RANDOM_FAMILIES, SCHEDULERS, ModelNotAvailableError, family_of, load_pipeline, model_label,
    resolve_device, resolve_dtype, set_scheduler, unet_fingerprint,
)

__all__ = [
    "HUB_MODELS", "RANDOM_FAMILIES", "SCHEDULERS", "ModelNotAvailableError", "family_of", "load_pipeline",
    "model_label", "resolve_device", "resolve_dtype", "set_scheduler", "unet_fingerprint",
]
