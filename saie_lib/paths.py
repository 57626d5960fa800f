"""Every path the project uses comes from here (overridable by environment variables)."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root() -> Path:
    """The checkout holding saie_lib/ (editable install), else the working directory."""
    candidate = PACKAGE_DIR.parent
    return candidate if (candidate / "pyproject.toml").exists() else Path.cwd()


def results_dir() -> Path:
    return Path(os.environ.get("SAIE_RESULTS_DIR") or repo_root() / "results")


def committed_results_dir() -> Path:
    """The results committed with the code (<repo>/results), whatever SAIE_RESULTS_DIR says: what a fresh
    recomputation is compared with."""
    return repo_root() / "results"


def configs_dir() -> Path:
    return repo_root() / "configs"


def cache_dir() -> Path:
    """Built model weights and other derived, re-creatable files."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "saie"
    return Path(os.environ.get("SAIE_CACHE_DIR") or default)


def results_root(root: str | os.PathLike | None = None) -> Path:
    """The results root a caller named, else the default one (env SAIE_RESULTS_DIR, else <repo>/results); made
    absolute, so that a notebook kernel (which runs in notebooks/) writes where the caller meant."""
    return Path(root).expanduser().absolute() if root else results_dir()


def remark_cache_file() -> Path:
    """The default SQLite file of partner remarks (a run's `remark_cache` field overrides it)."""
    return Path(os.environ.get("SAIE_REMARK_CACHE") or cache_dir() / "remarks.sqlite")


def run_dir(study: str, run_id: str, root: str | os.PathLike | None = None) -> Path:
    return results_root(root) / "runs" / study / run_id


def figures_dir(root: str | os.PathLike | None = None) -> Path:
    return results_root(root) / "figures"


def tables_dir(root: str | os.PathLike | None = None) -> Path:
    return results_root(root) / "tables"


def stance_label_files() -> dict[str, Path]:
    """The stance checker's hand-labelled remarks (test fixtures; the results page states the agreement): the set
    its rules were fixed with, and the held-out set labelled after."""
    folder = repo_root() / "tests" / "fixtures"
    return {"development": folder / "stance_labels.jsonl", "held_out": folder / "stance_labels_held_out.jsonl"}
