"""The toy world: the generated scenes the embedded model was trained on, their captions, and the
exact reading of a picture (:func:`segment`) that judges the toy's images.

It sits low in the package (above ``sdprobe.models``, below ``sdprobe.analysis``), so the
judges, harnesses and chapters can all use it. The drawing and reading live in
``sdprobe.world.scenes``, importable from here; :mod:`sdprobe.world.tokenizer` is the toy's
CLIP tokenizer, learned from the world's captions.
"""

from sdprobe.world.scenes import *  # noqa: F403  (the world's public names, listed in scenes.__all__)
from sdprobe.world.scenes import __all__  # noqa: F401
