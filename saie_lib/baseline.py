"""Stage: evaluate a model on a task (individual inference) into a run dir. seed -> data -> model -> evaluate -> save."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Sequence

from . import artifacts
from .artifacts import run_file
from .config import EvalConfig, RunConfig, to_dict
from .paths import run_dir as make_run_dir
from .prompts import PROMPT_VERSION
from .tasks import get_task


def resolved_split(cfg: EvalConfig) -> str:
    return cfg.split or get_task(cfg.task).eval_split


def run_identity(cfg: EvalConfig) -> dict[str, Any]:
    return {**cfg.identity(), "split": resolved_split(cfg), "prompt_version": PROMPT_VERSION}


def baseline_run_dir(cfg: EvalConfig) -> Path:
    identity = run_identity(cfg)
    name = f"{cfg.task}-{identity['split']}-{artifacts.slug(cfg.model)}-{artifacts.stable_hash(identity)}"
    return make_run_dir(cfg.study, name, cfg.results_root)


def load_examples(cfg: EvalConfig):
    from .data import load_task

    options = {"subjects": list(cfg.subjects)} if cfg.subjects else {}
    return load_task(cfg.task, resolved_split(cfg), data_dir=cfg.data_dir, limit=cfg.limit, seed=cfg.seed,
                     **options)


def data_source(cfg: RunConfig) -> str:
    """The data folder actually read, or 'huggingface-hub'."""
    from .data.io import resolve_data_dir

    folder = resolve_data_dir(cfg.data_dir)
    return str(folder) if folder else "huggingface-hub"


class LazyModel:
    """Loads the model on first use only, so a study whose runs are all finished loads nothing."""

    def __init__(self, cfg: EvalConfig):
        self.cfg, self._bundle = cfg, None

    def get(self):
        if self._bundle is None:
            from .models import load_model

            c = self.cfg
            self._bundle = load_model(c.model, source=c.model_source, dtype=c.dtype, device=c.device,
                                      trust_remote_code=c.trust_remote_code)
        return self._bundle


def run_baseline(cfg: EvalConfig, model: LazyModel | None = None, *, progress: bool = True) -> Path:
    """Evaluate cfg.model on cfg.task; an identical finished run is returned as it is, an unfinished one resumes."""
    out = baseline_run_dir(cfg)
    if artifacts.is_finished(out):
        return out
    from .generation import set_seed
    from .evaluation import evaluate

    artifacts.prepare_run_dir(out, run_identity(cfg), to_dict(cfg))
    set_seed(cfg.seed)
    examples = load_examples(cfg)
    net, tokenizer, model_info = (model or LazyModel(cfg)).get()
    artifacts.record_session(out, artifacts.env_record(
        seed=cfg.seed, prompt_version=PROMPT_VERSION, model=model_info, data_source=data_source(cfg)),
        resolved={"model_source": model_info["source"]})
    started = time.perf_counter()
    metrics, rows = evaluate(net, tokenizer, examples, batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                             sample_log=run_file(out, "samples_partial"), progress=progress)
    artifacts.write_jsonl(run_file(out, "samples"), rows)
    artifacts.write_json(run_file(out, "metrics"), {
        **metrics, "task": cfg.task, "split": resolved_split(cfg), "model": cfg.model,
        "model_source": model_info["source"], "prompt_version": PROMPT_VERSION, "run_id": out.name,
        "seed": cfg.seed, "limit": cfg.limit, "eval_seconds": round(time.perf_counter() - started, 1),
    })
    run_file(out, "samples_partial").unlink(missing_ok=True)
    return out


def run_baselines(cfg: EvalConfig, tasks: Sequence[str], *, progress: bool = True) -> list[Path]:
    """The same model and settings on several tasks; the model is loaded at most once."""
    model = LazyModel(cfg)
    return [run_baseline(dataclasses.replace(cfg, task=t), model, progress=progress) for t in tasks]
