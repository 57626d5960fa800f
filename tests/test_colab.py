"""The Colab path, as far as it runs without Colab: the install keeps an existing torch, a runtime without its
GPU is refused with a message that says what to do, and results can be pointed at a folder that survives."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO

from saie_lib import colab


def test_cpu_build_of_torch_is_named_as_the_cause():
    with pytest.raises(colab.NoGpuError, match="CPU build: an install replaced Colab's CUDA torch"):
        colab.require_gpu({"cuda": False, "torch": "2.13.0+cpu", "torch_cuda_build": None})
    with pytest.raises(colab.NoGpuError, match="Change runtime type"):
        colab.require_gpu({"cuda": False, "torch": "2.9.0+cu126", "torch_cuda_build": "12.6"})
    colab.require_gpu({"cuda": True})


def test_runtime_report_names_the_stack():
    report = colab.runtime_report()
    assert report["torch"] and report["transformers"] and report["saie"] and report["cuda"] in (True, False)


def test_auto_profile_on_colab_without_gpu_refuses(monkeypatch):
    import torch

    from saie_lib.profiles import resolve_profile

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_profile("auto") == "cpu-small"
    monkeypatch.setitem(sys.modules, "google.colab", object())
    with pytest.raises(colab.NoGpuError):
        resolve_profile("auto")


def test_results_and_caches_follow_the_chosen_folder(tmp_path, monkeypatch):
    from saie_lib.paths import cache_dir, results_dir

    monkeypatch.delenv("SAIE_RESULTS_DIR", raising=False)
    monkeypatch.delenv("SAIE_CACHE_DIR", raising=False)
    colab.point_results_to(tmp_path / "drive")
    assert results_dir() == tmp_path / "drive" / "results" and results_dir().is_dir()
    assert cache_dir() == tmp_path / "drive" / "cache"


def test_install_command_keeps_the_installed_torch():
    command = colab.install_command("/content/saie")
    assert command[-len(colab.kept_requirements()):] == colab.kept_requirements()
    assert any(r.startswith("torch==") for r in colab.kept_requirements())


def _fake_distribution(folder, name, version, requires=()):
    (folder / name).mkdir(parents=True)
    (folder / name / "__init__.py").write_text(f"__version__ = {version!r}\n")
    (folder / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{name}"
        version = "{version}"
        dependencies = {json.dumps(list(requires))}
        [tool.setuptools]
        packages = ["{name}"]
        """))
    return folder


@pytest.mark.slow
def test_colab_install_into_a_runtime_with_another_torch_keeps_it(tmp_path):
    """A venv holding a CUDA-labelled torch 2.9 and its torchvision, as Colab does: resolving the project's
    `colab` extra through the setup cell's own install command installs neither torch nor torchvision."""
    venv = tmp_path / "colab-like"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    torch_dir = _fake_distribution(tmp_path / "torch-src", "torch", "2.9.0+cu126")
    vision_dir = _fake_distribution(tmp_path / "vision-src", "torchvision", "0.24.0+cu126", ["torch==2.9.0+cu126"])
    subprocess.run([python, "-m", "pip", "install", "--quiet", str(torch_dir), str(vision_dir)], check=True)
    probe = ("import json, sys; sys.path.insert(0, sys.argv[1]); from saie_lib.colab import install_command; "
             "print(json.dumps(install_command(sys.argv[1])))")
    command = json.loads(subprocess.run([python, "-c", probe, str(REPO)], check=True, capture_output=True,
                                        text=True).stdout)
    assert "torch==2.9.0+cu126" in command and "torchvision==0.24.0+cu126" in command
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k != "PIP_CONSTRAINT"}
    subprocess.run([*command, "--dry-run", "--report", str(report)], check=True, env=env)
    installed = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"unsloth", "transformers", "peft"} <= installed
    assert not installed & {"torch", "torchvision"}


def test_install_is_once_per_commit_and_redone_after_a_failure(tmp_path, monkeypatch):
    calls = []

    def fake_run(command, **kwargs):
        if command[:2] == ["git", "-C"]:
            return subprocess.CompletedProcess(command, 0, "abc123\n", "")
        calls.append(command)
        return subprocess.CompletedProcess(command, 1 if len(calls) == 1 else 0)

    monkeypatch.setattr(colab.subprocess, "run", fake_run)
    with pytest.raises(RuntimeError, match="Run this cell again to retry"):
        colab.install(tmp_path)
    assert not (tmp_path / colab.INSTALLED_MARK).exists()
    assert colab.install(tmp_path) is True and len(calls) == 2  # the failed install is redone
    assert colab.install(tmp_path) is False and len(calls) == 2  # this commit is installed: skipped


def test_a_cpu_runtime_is_told_how_to_go_on_from_the_setup_cell():
    with pytest.raises(colab.NoGpuError, match="untick NEEDS_GPU in this cell.*profile = 'cpu-small'"):
        colab.require_gpu({"cuda": False, "torch": "2.9.0+cu126", "torch_cuda_build": "12.6"})
