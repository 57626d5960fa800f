"""Which weights a name points at, found without loading or downloading them: a Hub repo's revision (asked of
the Hub, else read from the local Hub cache) and sha256 digests of weight files. saie_lib.model_sources turns
them into a run's `weights`; saie_lib.models loads the same revision."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from pathlib import Path

WEIGHT_FILES = ("*.safetensors", "*.bin", "config.json")  # what decides a local model directory's weights


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


@functools.lru_cache(maxsize=None)  # one answer per process: the identity and the loaded weights agree
def hub_revision(repo_id: str) -> str | None:
    """The commit sha the Hub serves for `repo_id` now (offline, or where the Hub does not answer: the revision
    of the cached snapshot, as snapshot_download falls back to it); None when neither is found."""
    if not hub_offline():
        try:
            from huggingface_hub import HfApi

            return HfApi().model_info(repo_id, timeout=10).sha
        except Exception:  # unreachable, unknown or gated: the cache may still hold a snapshot
            pass
    return cached_revision(repo_id)


def cached_revision(repo_id: str) -> str | None:
    """The revision of the snapshot the local Hub cache holds for `repo_id` (its refs/main), if any."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except ValueError:  # not a repo id (a path that does not exist, say): nothing cached under it
        return None
    return Path(found).parent.name if isinstance(found, str) else None


def file_sha256(path: str | Path) -> str:
    """The file's sha256 hex digest; computed once per process while its size and mtime stay the same."""
    stat = Path(path).stat()
    return _digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_sha256(folder: str | Path) -> str:
    """One digest over a model directory's weight files and config.json (top level, by name and content)."""
    folder = Path(folder).expanduser()
    files = sorted({p for pattern in WEIGHT_FILES for p in folder.glob(pattern) if p.is_file()})
    lines = "".join(f"{p.name}\0{file_sha256(p)}\n" for p in files)
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def installed_file(module: str, file: str) -> Path | None:
    """A data file shipped inside an installed package (found without importing the package), or None."""
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(list(found.submodule_search_locations)[0]) / file
    return path if path.is_file() else None
