"""Analysis: what the probes' outputs are turned into.

* :mod:`~sdprobe.analysis.heatmaps`: aggregate, resize, normalise and threshold maps; region search;
* :mod:`~sdprobe.analysis.metrics`: IoUs, CLIP scores, judged error rates, correlations, AAS;
* :mod:`~sdprobe.analysis.stats`: exact binomial and bootstrap intervals;
* :mod:`~sdprobe.analysis.change`: where and when a generation changes, step by step;
* :mod:`~sdprobe.analysis.consistency`: foregrounds, keep-regions and judges for edits;
* :mod:`~sdprobe.analysis.scorers`: CLIP models and object detectors, loaded offline;
* :mod:`~sdprobe.analysis.boxes`: boxes as fractions of the image.
"""
