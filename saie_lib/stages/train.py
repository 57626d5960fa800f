"""Stage: train one learner (warm-up, then discussion rounds) into a run dir, then evaluate it.

seed -> data -> learner + partner -> warm-up -> discussion -> save adapter -> evaluate. Checkpoints every
`checkpoint_every` batches; a restarted run continues from the last one, reusing cached partner remarks.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import artifacts
from ..artifacts import append_jsonl, read_jsonl, run_file, write_jsonl
from ..checkpoints import latest_checkpoint, restore_checkpoint, save_checkpoint
from ..conditions import condition_name
from ..config import TrainConfig
from ..config_checks import check_fits_context
from ..data import load_task
from ..discussion import DiscussionState, advance, checked_remarks, draw_stances, transcript_rows
from ..engines import generation_record, planned_generation, trained_learner_generator
from ..evaluation import evaluate
from ..generation import Decoding, model_context
from ..learner import LoraSettings, load_learner, prepare_backend
from ..partners import Sampling
from ..paths import remark_cache_file
from ..progress import progress_bar
from ..remark_cache_server import open_remark_cache
from ..stance import CHECKER_VERSION, fidelity, learner_turns
from ..tasks import get_task
from ..training import (
    NonFiniteLossError,
    batched,
    discussion_features,
    discussion_targets,
    optimizer_step,
    plain_features,
    split_warmup,
)
from ..training_partner import open_partner, partner_summary
from . import (
    UnfinishedRunError,
    named_run_dir,
    open_run,
    record_session,
    report_warnings,
    run_prompt_version,
    single_writer,
    stage_identity,
    starting,
    weights_record,
    write_metrics,
)


def run_identity(cfg: TrainConfig) -> dict[str, Any]:
    return stage_identity(cfg)


def training_run_dir(cfg: TrainConfig) -> Path:
    condition = condition_name(cfg.remark_policy, cfg.update_target, cfg.partner)
    return named_run_dir(cfg, f"{cfg.task}-{condition}-{artifacts.slug(cfg.model)}", run_identity(cfg))


@dataclass
class Session:
    """Everything a training run holds while it runs."""

    cfg: TrainConfig
    out: Path
    learner: Any
    partner: Any
    optimizer: Any
    schedule: list[tuple[str, list]]
    step: int = 0
    counters: Counter = field(default_factory=Counter)


def load_examples(cfg: TrainConfig, split: str, limit: int | None):
    return load_task(cfg.task, split, data_dir=cfg.data_dir, limit=limit, seed=cfg.seed)


def open_session(cfg: TrainConfig, out: Path) -> Session:
    import torch

    examples = load_examples(cfg, get_task(cfg.task).train_split, cfg.limit)
    warmup, discussion = split_warmup(examples, cfg.warmup_fraction, cfg.seed)
    schedule = [("warmup", b) for b in batched(warmup, cfg.batch_size)]
    schedule += [("discussion", b) for b in batched(discussion, cfg.batch_size)]
    cache = open_remark_cache(cfg.remark_cache or remark_cache_file())  # a bad path fails before the model loads
    lora = LoraSettings(r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout)
    # no max_seq_length: Unsloth then covers the model's context window, which discussion prompts need; training
    # sequences are cut to cfg.max_seq_len by the features themselves
    learner = load_learner(cfg.model, lora, backend=cfg.backend, device=cfg.device, load_in_4bit=cfg.load_in_4bit,
                           source=cfg.model_source, dtype=cfg.dtype,
                           trust_remote_code=cfg.trust_remote_code, seed=cfg.seed,
                           gradient_checkpointing=cfg.gradient_checkpointing)
    check_fits_context(cfg, model_context(learner.model))
    optimizer = torch.optim.AdamW(learner.trainable_parameters(), lr=cfg.learning_rate,
                                  weight_decay=cfg.weight_decay)
    return Session(cfg, out, learner, open_partner(cfg, learner, cache), optimizer, schedule)


def warmup_batch(s: Session, examples: list, index: int) -> list[dict]:
    result = optimizer_step(s.learner, s.optimizer, plain_features(s.learner.tokenizer, examples, s.cfg.max_seq_len),
                            s.cfg.max_grad_norm, s.cfg.micro_batch_tokens)
    s.step += 1
    return [{"phase": "warmup", "batch": index, "step": s.step, **result}]


def conventional_batch(s: Session, examples: list, index: int) -> list[dict]:
    """remark_policy none: `rounds` plain steps on the batch, the same budget as a discussion."""
    rows = []
    for round_index in range(1, s.cfg.rounds + 1):
        row = warmup_batch(s, examples, index)[0]
        rows.append({**row, "phase": "discussion", "round": round_index, "stances": {}})
    return rows


def discussion_batch(s: Session, examples: list, index: int) -> tuple[list[dict], list[dict]]:
    cfg, logs, transcript = s.cfg, [], []
    state = DiscussionState(examples)
    learner_decoding = Decoding(max_new_tokens=cfg.learner_max_new_tokens)
    responses = s.learner.generate(state.conversations, learner_decoding, batch_size=cfg.eval_batch_size,
                                   merged=cfg.merged_generation)
    for round_index in range(1, cfg.rounds + 1):
        log, rows, responses = discussion_round(s, state, responses, index, round_index)
        logs.append(log)
        transcript += rows
    return logs, transcript


def discussion_round(s: Session, state: DiscussionState, responses: list, index: int,
                     round_index: int) -> tuple[dict, list[dict], list]:
    """Stances, checked remarks (re-asked up to `stance_retries`), the learner's revisions, one step."""
    cfg, examples = s.cfg, list(state.examples)
    sampling = Sampling(max_new_tokens=cfg.partner_max_new_tokens, temperature=cfg.partner_temperature,
                        seed=cfg.seed)
    stances = draw_stances(cfg.remark_policy, len(examples), seed=cfg.seed, batch_index=index,
                           round_index=round_index)
    checked = checked_remarks(s.partner, examples, responses, stances, sampling, sees_gold=cfg.partner_sees_gold,
                              retries=cfg.stance_retries)
    rows = transcript_rows(examples, responses, stances, checked.remarks, step=s.step + 1, batch_index=index,
                           round_index=round_index, checked=checked)
    advance(state, responses, checked.remarks)
    revisions = s.learner.generate(state.conversations, Decoding(max_new_tokens=cfg.learner_max_new_tokens),
                                   batch_size=cfg.eval_batch_size, merged=cfg.merged_generation)
    targets = discussion_targets(examples, revisions, cfg.update_target)
    features = discussion_features(s.learner.tokenizer, examples, state.conversations, targets, cfg.update_target,
                                   cfg.max_seq_len)
    result = optimizer_step(s.learner, s.optimizer, features, cfg.max_grad_norm, cfg.micro_batch_tokens)
    s.step += 1
    after = transcript_rows(examples, revisions, stances, checked.remarks, step=s.step, batch_index=index,
                            round_index=round_index)
    from_revision = cfg.update_target == "self_revision_if_correct"
    for row, revised in zip(rows, after):
        row.update(revision=revised["learner"], revision_correct=revised["correct"],
                   target="revision" if from_revision and revised["correct"] else "gold")
    return round_log(index, round_index, s.step, result, rows), rows, revisions


def round_log(index: int, round_index: int, step: int, result: dict, rows: list[dict]) -> dict:
    flips = Counter(f"{r['stance']}:{_flip(r['correct'], r['revision_correct'])}" for r in rows if r["stance"])
    return {
        "phase": "discussion", "batch": index, "round": round_index, "step": step, **result,
        "stances": dict(Counter(r["stance"] for r in rows if r["stance"])),
        "correct_before_remark": sum(r["correct"] for r in rows) / len(rows),
        "correct_after_remark": sum(r["revision_correct"] for r in rows) / len(rows),
        "flips": dict(flips), "partner_cache_hits": sum(bool(r["cache_hit"]) for r in rows),
        "stance_holds": dict(Counter(f"{r['stance']}:{r['stance_holds']}" for r in rows
                                     if r.get("stance_holds") is not None)),
        "partner_tries": sum(len(r.get("stance_tries") or [None]) for r in rows if r.get("stance_holds") is not None),
    }


def _flip(before: bool, after: bool) -> str:
    return {(True, True): "kept_right", (True, False): "broke", (False, True): "fixed",
            (False, False): "stayed_wrong"}[(before, after)]


def resume(s: Session) -> int:
    """Restore the last checkpoint (if any) and drop log rows written after it; return the next batch."""
    path = latest_checkpoint(s.out)
    if path is None:
        for kind in ("train_log", "transcripts"):
            run_file(s.out, kind).unlink(missing_ok=True)
        return 0
    cursor = restore_checkpoint(path, s.learner, s.optimizer)
    s.step = cursor["step"]
    for kind in ("train_log", "transcripts"):
        kept = [r for r in read_jsonl(run_file(s.out, kind), allow_torn_tail=True) if r["batch"] < cursor["next_batch"]]
        write_jsonl(run_file(s.out, kind), kept)
    return cursor["next_batch"]


def expected_steps(s: Session) -> int:
    """Optimiser steps the schedule implies: one per warm-up batch, `rounds` per discussion batch."""
    return sum(1 if phase == "warmup" else s.cfg.rounds for phase, _ in s.schedule)


def check_trained(s: Session) -> None:
    """A run that took fewer steps than its schedule, or never updated the adapter, is not finished."""
    updates = [r for r in read_jsonl(run_file(s.out, "train_log")) if r.get("loss") is not None]
    if s.step != expected_steps(s) or not updates:
        raise UnfinishedRunError(f"{s.out}: took {s.step} of {expected_steps(s)} scheduled steps, {len(updates)} "
                                 "of them with a loss (no target tokens in the others); the run stays unfinished")


def run_batch(s: Session, phase: str, examples: list, index: int) -> tuple[list[dict], list[dict]]:
    try:
        if phase == "warmup":
            return warmup_batch(s, examples, index), []
        if s.cfg.remark_policy == "none":
            return conventional_batch(s, examples, index), []
        return discussion_batch(s, examples, index)
    except NonFiniteLossError as error:
        raise UnfinishedRunError(f"{s.out}: training diverged at step {s.step + 1} (batch {index}, {phase}): "
                                 f"{error}. Nothing after the last checkpoint was kept; lower 'learning_rate' "
                                 f"(now {s.cfg.learning_rate}) or 'max_grad_norm' and run again") from None


def run_schedule(s: Session, start: int, *, progress: bool = True) -> None:
    bar = progress_bar(total=len(s.schedule), initial=start, desc=f"train {s.cfg.remark_policy}", unit="batch",
                       disable=not progress)
    for index in range(start, len(s.schedule)):
        phase, examples = s.schedule[index]
        logs, transcript = run_batch(s, phase, examples, index)
        append_jsonl(run_file(s.out, "train_log"), logs)
        append_jsonl(run_file(s.out, "transcripts"), transcript)
        bar.update(1)
        bar.set_postfix(loss=logs[-1]["loss"])
        done = index + 1
        if done % s.cfg.checkpoint_every == 0 or done == len(s.schedule):
            save_checkpoint(s.out, s.learner, s.optimizer, {"next_batch": done, "step": s.step})
    bar.close()


def finish(s: Session, started: float, *, progress: bool = True) -> None:
    """Save the final adapter, evaluate the trained learner, write metrics.json last (the finished marker)."""
    check_trained(s)
    s.learner.save_adapter(run_file(s.out, "adapter"))
    if s.cfg.save_merged:
        s.learner.save_merged(run_file(s.out, "merged"))
    train_seconds = time.perf_counter() - started
    examples = load_examples(s.cfg, get_task(s.cfg.task).eval_split, s.cfg.eval_limit)
    s.learner.for_inference()
    eval_started = time.perf_counter()
    with trained_learner_generator(s.cfg, s.learner, run_file(s.out, "adapter")) as model:
        metrics, rows = evaluate(model, s.learner.tokenizer, examples, batch_size=s.cfg.eval_batch_size,
                                 max_new_tokens=s.cfg.eval_max_new_tokens, progress=progress,
                                 sample_log=run_file(s.out, "samples_partial"))
        metrics.update(generation_record(model))
    write_jsonl(run_file(s.out, "samples"), rows)
    write_metrics(s.out, s.cfg, {
        **metrics, "task": s.cfg.task, "split": get_task(s.cfg.task).eval_split, "model": s.cfg.model,
        "model_source": s.learner.info["source"], **weights_record(s.cfg), "backend": s.learner.info["backend"],
        "remark_policy": s.cfg.remark_policy, "update_target": s.cfg.update_target,
        "condition": condition_name(s.cfg.remark_policy, s.cfg.update_target, s.cfg.partner), "run_id": s.out.name,
        "prompt_version": run_prompt_version(s.cfg), "seed": s.cfg.seed, "steps": s.step,
        "train_seconds_this_session": round(train_seconds, 1),
        "eval_seconds": round(time.perf_counter() - eval_started, 1), **discussion_summary(s)})
    run_file(s.out, "samples_partial").unlink(missing_ok=True)


def discussion_summary(s: Session) -> dict[str, Any]:
    """The partner's remarks (saie_lib.training_partner.partner_summary) and the stance fidelity
    (saie_lib.stance.fidelity) with the `stance_retries` it was reached under."""
    rows = read_jsonl(run_file(s.out, "transcripts"))
    return {"partner": partner_summary(s.cfg, s.partner, rows),
            "learner_turns": learner_turns([r.get("stated") for r in rows]),
            "stance_fidelity": {**fidelity(rows), "stance_retries": s.cfg.stance_retries, "checker": CHECKER_VERSION}}


@single_writer(training_run_dir)
def train(cfg: TrainConfig, *, progress: bool = True) -> Path:
    """Train and evaluate one learner; a finished identical run is returned untouched, an unfinished one resumes."""
    out = training_run_dir(cfg)
    if artifacts.is_finished(out):
        report_warnings(out)
        return out
    prepare_backend(cfg.backend, cfg.device)  # Unsloth first, before this process loads transformers
    open_run(out, run_identity(cfg), cfg)
    started = time.perf_counter()
    with starting(out):
        s = open_session(cfg, out)
        record_session(out, cfg, model=s.learner.info, partner=s.partner.model_id,
                       resolved={"model_source": s.learner.info["source"], "partner": s.partner.model_id},
                       **planned_generation(cfg))
    run_schedule(s, resume(s), progress=progress)
    finish(s, started, progress=progress)
    return out
