"""Probes: what watches or changes a generation, all attached through :mod:`sdprobe.probes.hooks`.

* :mod:`~sdprobe.probes.attention`: cross-attention traces and DAAM heat maps (chapter 01);
* :mod:`~sdprobe.probes.trajectory`: x_t and the predicted x0 at every step (chapters 00, 01);
* :mod:`~sdprobe.probes.textmask`: the text encoder under a custom attention mask (chapter 02);
* :mod:`~sdprobe.probes.transplant`: chroma-key noise, seedlings and their transplant (chapter 03);
* :mod:`~sdprobe.probes.swap`: U-Net features recorded in one run and swapped into another (chapter 04).
"""
