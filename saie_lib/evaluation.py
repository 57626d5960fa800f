"""Individual-inference evaluation: batched generation, strict and flexible scoring, metrics with CIs."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from .artifacts import append_jsonl, read_jsonl, write_jsonl
from .generation import Decoding, generate, generation_settings, render_chat
from .parsing import RULES_VERSION, grade
from .progress import progress_bar
from .prompts import build_messages
from .stats import reasoning_rouge, wilson_interval
from .tasks import Example

CHUNK_BATCHES = 4  # batches generated between two appends to the partial sample log


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def score_sample(example: Example, prompt: str, output: str) -> dict[str, Any]:
    """One per-sample row: raw output, both parses, gold, correctness, and the choice texts the flexible parse
    read (so the row can be re-scored on its own, saie_lib.rescore). Invalid is never correct."""
    strict, correct_strict = grade(example.task, output, example.answer, mode="strict", choices=example.choices)
    flexible, correct = grade(example.task, output, example.answer, choices=example.choices)
    return {
        "id": example.id, "task": example.task, "subject": example.subject,
        "prompt_hash": prompt_hash(prompt), "output": output,
        "parsed_strict": strict.value, "parsed": flexible.value, "method": flexible.method,
        "gold": example.answer, "choices": list(example.choices),
        "correct_strict": correct_strict, "correct": correct,
    }


def compute_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy (flexible and strict) with 95% CIs, invalid rates, n, and which parse rule fired."""
    n = len(rows)
    metrics: dict[str, Any] = {"n": n, "methods": dict(Counter(r["method"] for r in rows)),
                               "parser_rules": RULES_VERSION}
    for suffix, correct_key, parsed_key in (("", "correct", "parsed"), ("_strict", "correct_strict", "parsed_strict")):
        correct = sum(bool(r[correct_key]) for r in rows)
        low, high = wilson_interval(correct, n)
        metrics[f"accuracy{suffix}"] = correct / n if n else 0.0
        metrics[f"ci95{suffix}"] = [low, high]
        metrics[f"invalid_rate{suffix}"] = sum(r[parsed_key] is None for r in rows) / n if n else 0.0
    return metrics


def evaluate(model: Any, tokenizer: Any, examples: Sequence[Example], *, batch_size: int = 8,
             max_new_tokens: int = 256, sample_log: str | Path | None = None,
             progress: bool = True) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Answer every example once (greedy) and score it. With `sample_log`, rows are appended as they
    finish and a restarted evaluation skips the examples already there."""
    check_unique_ids(examples)
    done = {r["id"]: r for r in _resumed_rows(sample_log)} if sample_log else {}
    if sample_log and done:
        write_jsonl(sample_log, done.values())  # drop a torn last line before appending after it
    todo = [e for e in examples if e.id not in done]
    prompts = render_chat(tokenizer, [build_messages(e) for e in todo])
    decoding = Decoding(max_new_tokens=max_new_tokens)
    chunk = batch_size * CHUNK_BATCHES
    for start in _progress(range(0, len(todo), chunk), progress, len(todo), chunk):
        part, part_prompts = todo[start: start + chunk], prompts[start: start + chunk]
        outputs = generate(model, tokenizer, part_prompts, decoding, batch_size=batch_size, progress=False)
        rows = [score_sample(e, p, o) for e, p, o in zip(part, part_prompts, outputs)]
        done.update((r["id"], r) for r in rows)
        if sample_log:
            append_jsonl(sample_log, rows)
    ordered = [done[e.id] for e in examples]
    rouge = reasoning_rouge([r["output"] for r in ordered], [e.rationale for e in examples],
                            ids=[e.id for e in examples])  # per example too: the CoT claim is tested paired
    return {**compute_metrics(ordered), "rouge": rouge, "decoding": generation_settings(decoding)}, ordered


def check_unique_ids(examples: Sequence[Example]) -> None:
    """Outputs are keyed by example id: two examples with one id would silently share one output."""
    seen = Counter(e.id for e in examples)
    repeated = sorted(i for i, count in seen.items() if count > 1)
    if repeated:
        raise ValueError(f"{len(repeated)} example id(s) appear more than once: {repeated[:5]}; ids must be unique")


def _resumed_rows(sample_log: str | Path) -> list[dict[str, Any]]:
    try:
        return read_jsonl(sample_log, allow_torn_tail=True)
    except ValueError as error:
        raise ValueError(f"{error}. The partial sample log of an interrupted evaluation is damaged: delete that "
                         f"line (or the file, to redo every example) and run again") from None


def _progress(chunks: range, enabled: bool, total: int, step: int):
    bar = progress_bar(total=total, desc="evaluate", unit="ex", disable=not enabled or total == 0)
    for start in chunks:
        yield start
        bar.update(min(step, total - start))
    bar.close()
