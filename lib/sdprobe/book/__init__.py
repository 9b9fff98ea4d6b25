"""The book's plumbing: what the chapter notebooks share.

* :mod:`~sdprobe.book.notebook`: checked parameters and the reproduction report;
* :mod:`~sdprobe.book.plots`: figures that display without pyplot;
* :mod:`~sdprobe.book.tables`: the tables the explainer chapter shows;
* :mod:`~sdprobe.book.runs`: executing chapters, and batch reruns over presets
  (``python -m sdprobe.book.runs``);
* :mod:`~sdprobe.book.scenes`: the demo picture; :mod:`~sdprobe.book.colab_setup`: Colab's install.
* :mod:`~sdprobe.book.findings`: every chapter's verdicts on one page; :mod:`~sdprobe.book.lab`: the
  project's Jupyter kernel (``make lab``).
"""
