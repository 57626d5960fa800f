"""Stage: robustness to remarks for one model (base, or one condition's adapters) on each task's challenge set.

seed -> data -> challenge set -> model (per task: that task's adapter) -> first answers -> the scripted
disagreeing and agreeing remarks -> final answers -> outcomes. Items are done in chunks and appended to a
partial sample log, so an interrupted run redoes no finished item; a finished task is saved on its own.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from .. import artifacts
from ..artifacts import append_jsonl, read_jsonl, write_jsonl
from ..challenge import (
    CHALLENGE_VERSION,
    REMARK_KINDS,
    ChallengeItem,
    build_challenge_set,
    challenge_set_hash,
    follow_up_turns,
    remark,
    scored,
    task_metrics,
)
from ..challenge_config import ChallengeConfig
from ..config_checks import check_fits_context
from ..data import load_task
from ..engines import close_engine, generation_record, open_engine
from ..evaluation import CHUNK_BATCHES
from ..generation import Decoding, generate, generation_settings, is_engine, model_context, render_chat
from ..learner import load_as_learner, loads_as_learner
from ..models import load_model
from ..parsing import RULES_VERSION
from ..progress import progress_bar
from ..prompts import build_messages
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


def run_identity(cfg: ChallengeConfig) -> dict[str, Any]:
    return stage_identity(cfg, challenge_version=CHALLENGE_VERSION)


def challenge_run_dir(cfg: ChallengeConfig) -> Path:
    label = cfg.label or ("base" if not cfg.adapters else "adapters")
    return named_run_dir(cfg, f"challenge-{artifacts.slug(label)}", run_identity(cfg))


def task_samples(out: Path, task: str) -> Path:
    return artifacts.setting_samples(out, task)


def partial_samples(out: Path, task: str) -> Path:
    return out / f"samples.{task}.partial.jsonl"


def challenge_items(cfg: ChallengeConfig, task: str, limit: int) -> list[ChallengeItem]:
    """The task's challenge set: a seeded subset of its evaluation split, each item with its fixed wrong answer."""
    examples = load_task(task, get_task(task).eval_split, data_dir=cfg.data_dir, limit=limit, seed=cfg.seed)
    return build_challenge_set(examples, cfg.seed)


def load_for_task(cfg: ChallengeConfig, adapter: str | None):
    """The model, with `adapter` on top when given, loaded as EvalConfig/InferenceConfig load it (a plain
    transformers model with backend "peft", else like the trained learner)."""
    if adapter and not (Path(adapter) / "adapter_config.json").is_file():
        raise ValueError(f"config field 'adapters' names {adapter!r}: no peft adapter there. Adapters are not "
                         "committed; train them with `make reproduce` (remove a finished run dir to re-create one)")
    if cfg.generation == "vllm":  # a vLLM server (saie_lib.engines), the adapter merged into its checkpoint
        engine = open_engine(cfg, adapter=adapter)
        return engine, engine.tokenizer, {**engine.model_info, "adapter": adapter}
    if loads_as_learner(cfg):
        learner = load_as_learner(cfg, adapter=adapter)
        return learner.model, learner.tokenizer, {**learner.info, "adapter": adapter}
    model, tokenizer, info = load_model(cfg.model, source=cfg.model_source, dtype=cfg.dtype, device=cfg.device,
                                        trust_remote_code=cfg.trust_remote_code)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).eval()
    return model, tokenizer, {**info, "adapter": adapter}


def challenge_chunk(model: Any, tokenizer: Any, items: Sequence[ChallengeItem], decoding: Decoding,
                    batch_size: int, final: Decoding) -> list[dict[str, Any]]:
    """First answers of `items` (one batched call), then the final answer after each remark kind (one batched
    call per kind): one row per item."""
    conversations = [build_messages(i.example) for i in items]
    first = generate(model, tokenizer, render_chat(tokenizer, conversations), decoding, batch_size=batch_size,
                     progress=False)
    rows = [{"id": i.id, "task": i.example.task, "gold": i.example.answer, "choices": list(i.example.choices),
             "challenger": i.challenger, "first": scored(i, o)} for i, o in zip(items, first)]
    for kind in REMARK_KINDS:
        remarks = [remark(kind, i) for i in items]
        followed = [c + follow_up_turns(o, r) for c, o, r in zip(conversations, first, remarks)]
        finals = generate(model, tokenizer, render_chat(tokenizer, followed), final, batch_size=batch_size,
                          progress=False)
        for row, item, text, said in zip(rows, items, finals, remarks):
            row[kind] = {**scored(item, text), "remark": said}
    return rows


def run_task(cfg: ChallengeConfig, out: Path, loaded: tuple, items: list[ChallengeItem], max_new_tokens: int,
             *, progress: bool) -> list[dict[str, Any]]:
    """Every item of one task; rows already in the partial log are kept, the rest done chunk by chunk."""
    model, tokenizer, _ = loaded
    log = partial_samples(out, items[0].example.task)
    try:
        done = {r["id"]: r for r in read_jsonl(log, allow_torn_tail=True)}
    except ValueError as error:
        raise ValueError(f"{error}. The partial sample log of an interrupted challenge run is damaged: delete "
                         "that line (or the file, to redo the task) and run again") from None
    write_jsonl(log, done.values())  # drop a torn last line before appending after it
    todo = [i for i in items if i.id not in done]
    decoding, chunk = Decoding(max_new_tokens=max_new_tokens), cfg.batch_size * CHUNK_BATCHES
    starts = range(0, len(todo), chunk)
    for start in progress_bar(starts, desc=f"challenge {items[0].example.task}", disable=not progress or not todo):
        rows = challenge_chunk(model, tokenizer, todo[start: start + chunk], decoding, cfg.batch_size,
                               Decoding(max_new_tokens=cfg.final_max_new_tokens))
        append_jsonl(log, rows)
        done.update((r["id"], r) for r in rows)
    return [done[i.id] for i in items]


@single_writer(challenge_run_dir)
def run_challenge(cfg: ChallengeConfig, *, progress: bool = True) -> Path:
    """The challenge on every task of `cfg`; a finished task is kept, a finished run is reused as it is."""
    out = challenge_run_dir(cfg)
    if not open_run(out, run_identity(cfg), cfg):
        return out
    with starting(out):
        sets = {task: challenge_items(cfg, task, limit) for task, limit, _, _ in cfg.per_task()}
        loaded = load_for_task(cfg, cfg.per_task()[0][3])
        check_fits_context(cfg, model_context(loaded[0]))
        record_session(out, cfg, model=loaded[2], resolved={"model_source": loaded[2]["source"]},
                       **generation_record(loaded[0]))
    started, per_task, engines = time.perf_counter(), {}, {}
    for index, (task, _, max_new_tokens, adapter) in enumerate(cfg.per_task()):
        if not task_samples(out, task).exists():
            if index and adapter:  # the next task's adapter; the base model is loaded once
                close_engine(loaded[0])
                loaded = load_for_task(cfg, adapter)
            try:
                rows = run_task(cfg, out, loaded, sets[task], max_new_tokens, progress=progress)
            except BaseException:
                close_engine(loaded[0])
                raise
            write_jsonl(task_samples(out, task), rows)
            partial_samples(out, task).unlink(missing_ok=True)
            if is_engine(loaded[0]):  # which engine and weights this task's answers came from
                engines[task] = loaded[0].engine_info
        per_task[task] = {**task_metrics(read_jsonl(task_samples(out, task))), "n": len(sets[task]),
                          "challenge_set": challenge_set_hash(sets[task]), "adapter": adapter,
                          "decoding": generation_settings(Decoding(max_new_tokens=max_new_tokens)),
                          "final_decoding": generation_settings(Decoding(max_new_tokens=cfg.final_max_new_tokens))}
    write_metrics(out, cfg, {
        "label": cfg.label, "model": cfg.model, "model_source": loaded[2]["source"], **weights_record(cfg),
        "seed": cfg.seed,
        "n": sum(m["n"] for m in per_task.values()), "tasks": per_task, "challenge_version": CHALLENGE_VERSION,
        "parser_rules": RULES_VERSION, "prompt_version": run_prompt_version(cfg), "run_id": out.name,
        "seconds_this_session": round(time.perf_counter() - started, 1),
        **({"generation": engines} if engines else {}),
    })
    close_engine(loaded[0])
    return out
