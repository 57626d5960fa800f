"""Google Colab: what the notebooks' setup cell calls once the project is installed. It prints what this
runtime has (versions, GPU, memory), stops with a clear message when the GPU is gone (a pip install that
replaced Colab's CUDA torch, or a CPU runtime), and optionally keeps results and caches on Google Drive so a
disconnected run resumes where it stopped.

The repository URL and ref live in one place: the setup cell's form fields (`SAIE_REPO`, `SAIE_REF`), which
tests/test_notebook_sources.py keeps identical in every notebook and equal to the README's Colab badges.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__
from .artifacts import package_versions

KEPT_PACKAGES = ("torch", "torchvision", "torchaudio")  # Colab's CUDA builds: never replaced by our install
DRIVE_MOUNT = Path("/content/drive")
DRIVE_FOLDER = DRIVE_MOUNT / "MyDrive" / "saie"


class NoGpuError(RuntimeError):
    """The runtime has no usable CUDA device."""


def kept_requirements() -> list[str]:
    """`name==version` for each of Colab's torch packages that is installed, so pip resolves around them."""
    kept = []
    for name in KEPT_PACKAGES:
        try:
            kept.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return kept


def install_command(repo_dir: str | Path, *, extra: str = "colab") -> list[str]:
    """pip install of this project (editable, with `extra`) that keeps the installed torch packages."""
    return [sys.executable, "-m", "pip", "install", "--quiet", "-e", f"{repo_dir}[{extra}]", *kept_requirements()]


INSTALLED_MARK = ".saie-installed"  # in the checkout: the commit whose install finished


def _head(repo_dir: str | Path) -> str:
    done = subprocess.run(["git", "-C", str(repo_dir), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def install(repo_dir: str | Path) -> bool:
    """pip install of the checkout, once per commit: skipped when the last install of this commit finished,
    redone after a failed one (the mark is written only on success). Runs before the project's dependencies
    exist: uses the standard library only. True when it installed."""
    mark = Path(repo_dir) / INSTALLED_MARK
    head = _head(repo_dir)
    if mark.is_file() and mark.read_text().strip() == head:
        return False
    mark.unlink(missing_ok=True)
    done = subprocess.run(install_command(repo_dir), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"installing {repo_dir} failed (pip exit {done.returncode}); pip's message is above. "
                           f"The install keeps {kept_requirements()}: a conflict with them is named there. "
                           "Run this cell again to retry the install.")
    mark.write_text(head + "\n")
    return True


def runtime_report() -> dict[str, Any]:
    """Versions of the stack, and the GPU with its memory when there is one."""
    import torch

    report: dict[str, Any] = {"saie": __version__, "torch": torch.__version__, "cuda": torch.cuda.is_available(),
                              "torch_cuda_build": torch.version.cuda,
                              **{k: v for k, v in package_versions().items() if k != "saie"}}
    if report["cuda"]:
        props = torch.cuda.get_device_properties(0)
        report.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                      bf16=torch.cuda.is_bf16_supported())
    return report


def require_gpu(report: dict[str, Any]) -> None:
    if report["cuda"]:
        return
    if report.get("torch_cuda_build") is None:
        raise NoGpuError(f"torch {report['torch']} is a CPU build: an install replaced Colab's CUDA torch. "
                         "Runtime > Disconnect and delete runtime, then run this cell again (the project's "
                         "package only states version ranges and keeps the torch it finds).")
    raise NoGpuError("no GPU in this runtime: Runtime > Change runtime type > T4 GPU (or better), then run "
                     "this cell again. To run on the CPU instead, untick NEEDS_GPU in this cell, run it again, and "
                     "set profile = 'cpu-small' (or 'cpu-quick') in the parameters cell.")


def use_drive(folder: Path = DRIVE_FOLDER) -> dict[str, str]:
    """Mount Google Drive and point the results root and caches there (env SAIE_RESULTS_DIR, SAIE_CACHE_DIR),
    so runs, checkpoints and partner remarks survive a disconnect."""
    from google.colab import drive  # only exists on Colab

    drive.mount(str(DRIVE_MOUNT))
    return point_results_to(folder)


def point_results_to(folder: Path) -> dict[str, str]:
    places = {"SAIE_RESULTS_DIR": str(folder / "results"), "SAIE_CACHE_DIR": str(folder / "cache")}
    for variable, path in places.items():
        Path(path).mkdir(parents=True, exist_ok=True)
        os.environ[variable] = path
    return places


def setup(*, on_drive: bool = False, need_gpu: bool = True) -> dict[str, Any]:
    """The setup cell's last step: report the runtime, refuse a runtime without its GPU, optionally use Drive."""
    report = runtime_report()
    print("\n".join(f"{key}: {value}" for key, value in report.items() if value is not None))
    if need_gpu:
        require_gpu(report)
    elif not report["cuda"]:
        print("no GPU (NEEDS_GPU unticked): choose a CPU profile, e.g. profile = 'cpu-small'")
    if on_drive:
        print(use_drive())
    return report
