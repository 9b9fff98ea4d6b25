"""environment.yml mirrors pyproject.toml."""

from __future__ import annotations

import tomllib

import yaml

from sdprobe.paths import REPO_ROOT


def pyproject_requirements() -> set[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return set(project["dependencies"]) | {req for group in extras.values() for req in group}


def environment_requirements() -> tuple[set[str], list[str]]:
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    return {p for p in pip if not p.startswith("-e")}, conda


def test_environment_lists_exactly_the_pyproject_requirements():
    pip, _ = environment_requirements()
    assert pip == pyproject_requirements(), (
        f"only in environment.yml: {sorted(pip - pyproject_requirements())}; "
        f"only in pyproject.toml: {sorted(pyproject_requirements() - pip)}")


def test_environment_pins_the_python_the_project_supports():
    _, conda = environment_requirements()
    python = next(d for d in conda if d.startswith("python"))
    minimum = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert minimum == ">=3.10" and python.split("=")[-1] >= "3.10"


def test_torch_is_pinned_to_one_build_in_both():
    pip, _ = environment_requirements()
    assert "torch==2.13.0" in pip and "torch==2.13.0" in pyproject_requirements()
