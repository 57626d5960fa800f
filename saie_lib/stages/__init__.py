"""Stages: each turns one validated config into one finished run dir under results/runs/<study>/.

- `evaluate`: a model answers a task once per example (individual inference) -> samples + metrics.
- `train`: warm-up, discussion rounds with the partner, adapter, then evaluation of the trained learner.
- `discuss`: discussion at inference time (individual, self-discussion, multi-agent, ...) for one model.

Every stage opens its run the same way, through `open_run` and `record_session` below: run dir from the
config's identity -> finished? (then reuse it) -> prepare (config.json) -> seed -> record the session (env.json).
The helpers they build on (`evaluation`, `training`, `inference`, `discussion`) live beside this package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import artifacts
from ..config import RunConfig, to_dict
from ..data.io import resolve_data_dir
from ..generation import set_seed
from ..paths import run_dir
from ..portable import portable
from ..prompts import PROMPT_VERSION


def stage_identity(cfg: RunConfig, **extra: Any) -> dict[str, Any]:
    """What decides a run's results: the config's identity fields and the prompt version."""
    return {**cfg.identity(), **extra, "prompt_version": PROMPT_VERSION}


def named_run_dir(cfg: RunConfig, prefix: str, identity: dict[str, Any]) -> Path:
    """results/runs/<study>/<prefix>-<hash of the identity>: equal configs meet in one dir."""
    return run_dir(cfg.study, f"{prefix}-{artifacts.stable_hash(identity)}", cfg.results_root)


def open_run(out: Path, identity: dict[str, Any], cfg: RunConfig) -> bool:
    """False when `out` holds a finished run (reuse it as it is); else write its config and seed: True."""
    if artifacts.is_finished(out):
        return False
    artifacts.prepare_run_dir(out, identity, portable_record(cfg, to_dict(cfg)))
    set_seed(cfg.seed)
    return True


def record_session(out: Path, cfg: RunConfig, *, resolved: dict[str, Any], **facts: Any) -> Path:
    """This session's environment record, with the seed, prompt version and data source."""
    env = artifacts.env_record(seed=cfg.seed, prompt_version=PROMPT_VERSION, data_source=data_source(cfg), **facts)
    return artifacts.record_session(out, portable_record(cfg, env), resolved=resolved)


def write_metrics(out: Path, cfg: RunConfig, metrics: dict[str, Any]) -> Path:
    """metrics.json, written last: its presence marks the run finished."""
    path = artifacts.run_file(out, "metrics")
    artifacts.write_json(path, portable_record(cfg, metrics))
    return path


def portable_record(cfg: RunConfig, record: dict[str, Any]) -> dict[str, Any]:
    """`record` with absolute paths under the results root, data dir, cache or home made portable."""
    return portable(record, results_root=cfg.results_root, data_dir=cfg.data_dir)


def data_source(cfg: RunConfig) -> str:
    """The data folder actually read, or 'huggingface-hub'."""
    folder = resolve_data_dir(cfg.data_dir)
    return str(folder) if folder else "huggingface-hub"
