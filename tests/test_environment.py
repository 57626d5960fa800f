"""One pinned environment: pyproject.toml and environment.yml must agree, and the ML stack is pinned exactly."""

import re
import tomllib

import yaml

from conftest import REPO

PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)$")


def _pins(requirements):
    return dict(PIN.match(r).groups() for r in requirements if PIN.match(r))


def test_environment_yml_repeats_pyproject_pins():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = _pins(project["dependencies"])
    for extra in ("api", "dev", "notebook"):
        wanted.update(_pins(project["optional-dependencies"][extra]))
    conda = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == wanted


def test_ml_stack_pinned_within_unsloth_caps():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = _pins(project["dependencies"])
    assert pins["torch"] == "2.13.0"
    assert tuple(map(int, pins["transformers"].split("."))) <= (5, 17, 99)
    assert tuple(map(int, pins["trl"].split("."))) <= (1, 15, 99)
    assert int(pins["datasets"].split(".")[0]) < 5
    assert set(pins) >= {"peft", "accelerate", "papermill", "nbclient", "ipykernel", "matplotlib"}
