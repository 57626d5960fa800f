"""Benchmark loading: `load_task(name, split)` gives a list of Examples, read from a data folder laid out like
the original distributions (argument `data_dir`, else $SAIE_DATA_DIR) or, failing both, the Hugging Face Hub.

Each task has one module here (gsm8k, commonsense_qa, mmlu) with the same interface: OPTIONS,
STRATIFY_BY_SUBJECT, from_files(data_dir, split, **options) and from_hub(split, **options), both giving
(Location, Example) pairs. Nothing is guessed: a bad row, a repeated id, an empty file or missing rationales
raise, naming the file and line(s); rows repeated under distinct ids are kept and counted in the LoadReport.
"""

from __future__ import annotations

import os
from pathlib import Path

from saie_lib.data import commonsense_qa, gsm8k, mmlu
from saie_lib.data.checks import DUPLICATE_ROW_POLICIES, Located, check_unique_ids, find_duplicate_rows
from saie_lib.data.io import DataFormatError, DataUnavailableError, resolve_data_dir
from saie_lib.data.report import LoadedExamples, LoadReport, make_report
from saie_lib.data.subsets import check_limit, sample_rows, sample_stratified
from saie_lib.tasks import TaskSpec, get_task

__all__ = [
    "DataFormatError",
    "DataUnavailableError",
    "LoadReport",
    "LoadedExamples",
    "load_task",
    "parse_splits",
]

TASK_MODULES = {"gsm8k": gsm8k, "commonsense_qa": commonsense_qa, "mmlu": mmlu}
SPLIT_JOINER = "+"
HUB_SOURCE = "Hugging Face Hub"


def parse_splits(spec: TaskSpec, split: str) -> list[str]:
    """The splits named by "a" or "a+b"; unknown, unlabelled or repeated splits raise ValueError."""
    parts = split.split(SPLIT_JOINER)
    for part in parts:
        if part in spec.unlabelled_splits:
            raise ValueError(
                f"{spec.name} split {part!r} has no gold labels; use {spec.eval_split!r} for evaluation"
            )
        if part not in spec.splits:
            raise ValueError(
                f"unknown {spec.name} split {part!r}; valid splits: {', '.join(spec.splits)} "
                f"(or several joined by {SPLIT_JOINER!r})"
            )
    if len(set(parts)) != len(parts):
        raise ValueError(f"split {split!r} names a split twice")
    return parts


def _check_options(task: str, options: dict, accepted: tuple[str, ...], duplicate_rows: str) -> None:
    for option in options:
        if option not in accepted:
            raise ValueError(
                f"unknown option {option!r} for task {task!r}; accepted options: {', '.join(accepted) or 'none'}"
            )
    if duplicate_rows not in DUPLICATE_ROW_POLICIES:
        raise ValueError(f"duplicate_rows must be one of {', '.join(DUPLICATE_ROW_POLICIES)}, got {duplicate_rows!r}")


def _load_parts(module, spec: TaskSpec, parts: list[str], root: Path | None, options: dict) -> list[Located]:
    """Every row of the splits, in order; a split with no rows raises, and ids must be unique across all."""
    located: list[Located] = []
    for part in parts:
        rows = module.from_hub(part, **options) if root is None else module.from_files(root, part, **options)
        if not rows:
            raise DataFormatError(f"{spec.name} {part} from {root or HUB_SOURCE}: no rows (options {options})")
        located += rows
    check_unique_ids(located)
    return located


def load_task(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    seed: int = 0,
    duplicate_rows: str = "count",
    **options,
) -> LoadedExamples:
    """The task's examples for `split` ("a+b" concatenates), all rows in file order or a seeded subset of `limit`.

    The result is a list with a `.report` (LoadReport: rows loaded, repeated rows, examples without rationale).
    duplicate_rows: "count" keeps rows repeating another row's question, choices and answer under another id
    (real MMLU has such rows) and lists them in the report; "error" raises. Repeated ids always raise.
    Options: mmlu `subjects` (list of subject names, default all); commonsense_qa `rationale_source`
    ("cos_e", the default, or "ecqa") and `require_rationales` (default True: missing rationale files raise).
    """
    spec = get_task(name)
    module = TASK_MODULES[spec.name]
    parts = parse_splits(spec, split)
    _check_options(spec.name, options, module.OPTIONS, duplicate_rows)
    check_limit(limit)
    root = resolve_data_dir(data_dir)
    located = _load_parts(module, spec, parts, root, options)
    duplicates = find_duplicate_rows(located, duplicate_rows)
    examples = [example for _, example in located]
    if module.STRATIFY_BY_SUBJECT:
        chosen = sample_stratified(examples, limit, seed, group_of=lambda example: example.subject)
    else:
        chosen = sample_rows(examples, limit, seed)
    source = HUB_SOURCE if root is None else str(root)
    report = make_report(
        task=spec.name, split=split, source=source, n_loaded=len(examples), duplicates=duplicates,
        returned=chosen, options={**options, "duplicate_rows": duplicate_rows, "limit": limit, "seed": seed},
    )
    return LoadedExamples(chosen, report)
