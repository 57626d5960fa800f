"""Stage: evaluate a model on a task (individual inference): seed -> data -> model -> evaluate -> save."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any, Sequence

from .. import artifacts
from ..artifacts import run_file
from ..config import EvalConfig
from ..config_checks import check_fits_context
from ..data import load_task
from ..engines import generation_record, open_engine
from ..evaluation import evaluate
from ..generation import model_context
from ..learner import load_as_learner, loads_as_learner
from ..models import load_model
from ..tasks import get_task
from . import (
    named_run_dir,
    open_run,
    record_session,
    run_prompt_version,
    single_writer,
    stage_identity,
    starting,
    weights_record,
    write_metrics,
)


def resolved_split(cfg: EvalConfig) -> str:
    return cfg.split or get_task(cfg.task).eval_split


def run_identity(cfg: EvalConfig) -> dict[str, Any]:
    return stage_identity(cfg, split=resolved_split(cfg))


def eval_run_dir(cfg: EvalConfig) -> Path:
    prefix = f"{cfg.task}-{resolved_split(cfg)}-{artifacts.slug(cfg.model)}"
    return named_run_dir(cfg, prefix, run_identity(cfg))


def load_examples(cfg: EvalConfig):
    options = {"subjects": list(cfg.subjects)} if cfg.subjects else {}
    return load_task(cfg.task, resolved_split(cfg), data_dir=cfg.data_dir, limit=cfg.limit, seed=cfg.seed,
                     **options)


class LazyModel:
    """Loads the model on first use only, so a study whose runs are all finished loads nothing. With
    backend "peft" a plain transformers model; otherwise the model is loaded the way the trained conditions'
    learner is (Unsloth, 4-bit, its dtype) and evaluated with its adapters off, so base vs trained compares
    training only, not quantisation."""

    def __init__(self, cfg: EvalConfig):
        self.cfg, self._bundle, self.adapters_off = cfg, None, contextlib.nullcontext

    def get(self):
        if self._bundle is None:
            c = self.cfg
            if c.generation == "vllm":  # a vLLM server on the base model (saie_lib.engines)
                engine = open_engine(c)
                self._bundle = (engine, engine.tokenizer, engine.model_info)
            elif loads_as_learner(c):
                learner = load_as_learner(c)
                self._bundle, self.adapters_off = (learner.model, learner.tokenizer, learner.info), \
                    learner.adapters_disabled
            else:
                self._bundle = load_model(c.model, source=c.model_source, dtype=c.dtype, device=c.device,
                                          trust_remote_code=c.trust_remote_code)
        return self._bundle


@single_writer(eval_run_dir)
def run_evaluation(cfg: EvalConfig, model: LazyModel | None = None, *, progress: bool = True) -> Path:
    """Evaluate cfg.model on cfg.task; an identical finished run is returned as it is, an unfinished one resumes."""
    out = eval_run_dir(cfg)
    if not open_run(out, run_identity(cfg), cfg):
        return out
    with starting(out):
        examples = load_examples(cfg)
        loaded = model or LazyModel(cfg)
        net, tokenizer, model_info = loaded.get()
        check_fits_context(cfg, model_context(net))
        record_session(out, cfg, model=model_info, resolved={"model_source": model_info["source"]},
                       **generation_record(net))
    started = time.perf_counter()
    with loaded.adapters_off():
        metrics, rows = evaluate(net, tokenizer, examples, batch_size=cfg.batch_size,
                                 max_new_tokens=cfg.max_new_tokens, sample_log=run_file(out, "samples_partial"),
                                 progress=progress)
    artifacts.write_jsonl(run_file(out, "samples"), rows)
    write_metrics(out, cfg, {
        **metrics, "task": cfg.task, "split": resolved_split(cfg), "model": cfg.model,
        "model_source": model_info["source"], **weights_record(cfg), "prompt_version": run_prompt_version(cfg),
        "run_id": out.name,
        "seed": cfg.seed, "limit": cfg.limit, "eval_seconds": round(time.perf_counter() - started, 1),
        **generation_record(net),
    })
    run_file(out, "samples_partial").unlink(missing_ok=True)
    return out


def run_evaluations(cfg: EvalConfig, tasks: Sequence[str], *, progress: bool = True) -> list[Path]:
    """The same model and settings on several tasks; the model is loaded at most once."""
    model = LazyModel(cfg)
    return [run_evaluation(dataclasses.replace(cfg, task=t), model, progress=progress) for t in tasks]
