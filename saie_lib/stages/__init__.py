"""Stages: each turns one validated config into one finished run dir under results/runs/<study>/.

- `evaluate`: a model answers a task once per example (individual inference) -> samples + metrics.
- `train`: warm-up, discussion rounds with the partner, adapter, then evaluation of the trained learner.
- `discuss`: discussion at inference time (individual, self-discussion, multi-agent, ...) for one model.

Every stage opens its run the same way, through `open_run` and `record_session` below: run dir from the
config's identity -> finished? (then reuse it) -> the run's lock (`single_writer`: one process writes a run)
-> prepare (config.json) -> seed -> record the session (env.json) -> ... -> consistent? -> metrics.json.
The helpers they build on (`evaluation`, `training`, `inference`, `discussion`) live beside this package.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from .. import artifacts, run_lock
from ..config import RunConfig, TrainConfig, to_dict
from ..data.io import resolve_data_dir
from ..generation import set_seed
from ..model_sources import partner_weights_fields, weights_fields
from ..models import uses_plain_prompts
from ..paths import remark_cache_file, run_dir
from ..portable import portable
from ..progress import warn
from ..prompts import prompt_version
from ..resources import peak_memory
from ..run_consistency import check_consistent
from ..run_warnings import describe, recorded_warnings, with_warnings
from ..write_errors import REMARK_CACHE_SETTING, check_writable_folder, naming_write_errors

T = TypeVar("T")


def stage_identity(cfg: RunConfig, **extra: Any) -> dict[str, Any]:
    """What decides a run's results: the config's identity fields and the prompt version."""
    return {**cfg.identity(), **extra, "prompt_version": run_prompt_version(cfg)}


def run_prompt_version(cfg: RunConfig) -> str:
    """PROMPT_VERSION, with the plain rendering's version for a model without a chat template (Flan-T5)."""
    return prompt_version(plain=uses_plain_prompts(cfg.model))


def named_run_dir(cfg: RunConfig, prefix: str, identity: dict[str, Any]) -> Path:
    """results/runs/<study>/<prefix>-<hash of the identity>: equal configs meet in one dir."""
    return run_dir(cfg.study, f"{prefix}-{artifacts.stable_hash(identity)}", cfg.results_root)


class UnfinishedRunError(RuntimeError):
    """A run that produced nothing valid (no examples, no steps, a diverged loss): never marked finished."""


def single_writer(run_dir_of: Callable[[Any], Path]) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator of a stage `stage(cfg, ...)`: the stage writes its run dir `run_dir_of(cfg)` holding the run's
    lock (`run_lock`). Another process writing that run is waited for; the run is then reused if it finished,
    resumed if not. A finished run is returned without taking the lock, so finished records are read even from
    a read-only copy; a full disk or read-only file system met while writing is named (`write_errors`)."""
    def decorate(stage: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(stage)
        def run(cfg: Any, *args: Any, **kwargs: Any) -> T:
            out = run_dir_of(cfg)
            if artifacts.is_finished(out):
                return stage(cfg, *args, **kwargs)
            with run_lock.hold(out, what="run"), naming_write_errors(out, certain=False):
                return stage(cfg, *args, **kwargs)
        return run
    return decorate


def open_run(out: Path, identity: dict[str, Any], cfg: RunConfig) -> bool:
    """False when `out` holds a finished run (reuse it as it is); else check that the folders it will write
    can be written, write its config, clear what an interrupted write left behind, and seed: True."""
    if artifacts.is_finished(out):
        report_warnings(out)
        return False
    if isinstance(cfg, TrainConfig):  # partner remarks are cached as they come: fail now, not after a batch
        check_writable_folder(Path(cfg.remark_cache or remark_cache_file()).parent, REMARK_CACHE_SETTING)
    artifacts.prepare_run_dir(out, identity, portable_record(cfg, to_dict(cfg)))
    artifacts.remove_stale_temp_files(out)
    set_seed(cfg.seed)
    return True


@contextmanager
def starting(out: Path) -> Iterator[None]:
    """Around a stage's setup (data, model, session record): a start that fails before anything was recorded
    removes the run dir it created, so a bad model name or data folder leaves no half-made run behind."""
    try:
        yield
    except BaseException:
        if out.is_dir() and {p.name for p in out.iterdir()} <= {artifacts.RUN_FILES["config"], run_lock.LOCK_NAME}:
            shutil.rmtree(out)
        raise


def record_session(out: Path, cfg: RunConfig, *, resolved: dict[str, Any], **facts: Any) -> Path:
    """This session's environment record, with the seed, prompt version and data source; `resolved` (the weights
    source, partner) is pinned with the weights the run identity named (`weights_record`)."""
    env = artifacts.env_record(seed=cfg.seed, prompt_version=run_prompt_version(cfg), data_source=data_source(cfg),
                               **facts)
    return artifacts.record_session(out, portable_record(cfg, env), resolved={**resolved, **weights_record(cfg)})


def weights_record(cfg: RunConfig) -> dict[str, Any]:
    """`weights` (and a training partner's `partner_weights`) where they are not the reference weights: the source
    and digest or revision the run identity holds (saie_lib.model_sources), for the run's records."""
    partner = partner_weights_fields(cfg.partner) if isinstance(cfg, TrainConfig) else {}
    return {**weights_fields(cfg.model, cfg.model_source), **partner}


def write_metrics(out: Path, cfg: RunConfig, metrics: dict[str, Any]) -> Path:
    """metrics.json, written last: its presence marks the run finished, so a run that evaluated nothing, whose
    logs hold a row twice or out of order, or whose lock this process no longer holds is refused here and
    stays unfinished. A degenerate run (every answer invalid, no remark) finishes with `warnings` in its
    metrics, printed here (saie_lib.run_warnings)."""
    if not metrics.get("n"):
        raise UnfinishedRunError(f"{out}: evaluated 0 examples (task {cfg.task}); check the split, limit and "
                                 "data: the run stays unfinished")
    run_lock.ensure_held(out)
    check_consistent(out)
    path = artifacts.run_file(out, "metrics")
    metrics = with_warnings(metrics)
    artifacts.write_json(path, portable_record(cfg, {**metrics, "resources": peak_memory()}))
    for line in describe(out, recorded_warnings(metrics)):
        warn(line)
    return path


def report_warnings(out: Path) -> None:
    """Print the warnings a finished run recorded (a reused degenerate run stays loud)."""
    for line in describe(out, recorded_warnings(artifacts.read_json(artifacts.run_file(out, "metrics")))):
        warn(line)


def portable_record(cfg: RunConfig, record: dict[str, Any]) -> dict[str, Any]:
    """`record` with absolute paths under the results root, data dir, cache or home made portable."""
    return portable(record, results_root=cfg.results_root, data_dir=cfg.data_dir)


def data_source(cfg: RunConfig) -> str:
    """The data folder actually read, or 'huggingface-hub'."""
    folder = resolve_data_dir(cfg.data_dir)
    return str(folder) if folder else "huggingface-hub"
