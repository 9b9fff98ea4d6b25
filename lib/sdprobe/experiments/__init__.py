"""Each chapter's measurement as a tested function: generate the conditions in batches, judge,
aggregate, test. The notebooks call these and show the results; the verdicts come from
:mod:`sdprobe.analysis.claims`.

* :mod:`~sdprobe.experiments.denoising`: chapter 00, the forward process, x̂0 and guidance;
* :mod:`~sdprobe.experiments.attribution`: chapter 01, DAAM heat maps against true outlines;
* :mod:`~sdprobe.experiments.stories`: chapter 02, story pictures under the hopping mask;
* :mod:`~sdprobe.experiments.transplant`: chapter 03, TAUE's Table 1;
* :mod:`~sdprobe.experiments.edits`: chapter 04, U-Net feature swaps over many edit pairs.
"""
