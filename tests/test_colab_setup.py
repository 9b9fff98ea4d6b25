"""The Colab set-up installs the project's dependencies but leaves Colab's own torch alone."""

from __future__ import annotations

from sdprobe.book.colab_setup import requirements


def test_colab_requirements_are_the_project_dependencies_without_torch():
    reqs = requirements()
    assert not [r for r in reqs if r.startswith("torch")]
    assert any(r.startswith("diffusers") for r in reqs) and any(r.startswith("transformers") for r in reqs)
