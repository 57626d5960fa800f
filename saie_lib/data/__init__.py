"""Benchmark loading: `load_task(name, split)` gives a list of Examples, read from a data folder laid out like
the original distributions (argument `data_dir`, else $SAIE_DATA_DIR) or, failing both, the Hugging Face Hub.

Each task has one module here (gsm8k, commonsense_qa, mmlu) with the same interface: OPTIONS,
STRATIFY_BY_SUBJECT, from_files(data_dir, split, **options) and from_hub(split, **options).
"""

from __future__ import annotations

import os

from saie_lib.data import commonsense_qa, gsm8k, mmlu
from saie_lib.data.io import DataFormatError, DataUnavailableError, resolve_data_dir
from saie_lib.data.subsets import check_limit, sample_rows, sample_stratified
from saie_lib.tasks import Example, TaskSpec, get_task

__all__ = ["DataFormatError", "DataUnavailableError", "load_task", "parse_splits"]

TASK_MODULES = {"gsm8k": gsm8k, "commonsense_qa": commonsense_qa, "mmlu": mmlu}
SPLIT_JOINER = "+"


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


def _check_options(task: str, options: dict, accepted: tuple[str, ...]) -> None:
    for option in options:
        if option not in accepted:
            raise ValueError(
                f"unknown option {option!r} for task {task!r}; accepted options: {', '.join(accepted) or 'none'}"
            )


def load_task(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    seed: int = 0,
    **options,
) -> list[Example]:
    """The task's examples for `split` ("a+b" concatenates), all rows in file order or a seeded subset of `limit`.

    Options: mmlu `subjects` (list of subject names, default all); commonsense_qa `rationale_source`
    ("cos_e", the default, or "ecqa").
    """
    spec = get_task(name)
    module = TASK_MODULES[spec.name]
    splits = parse_splits(spec, split)
    _check_options(spec.name, options, module.OPTIONS)
    check_limit(limit)
    root = resolve_data_dir(data_dir)
    examples: list[Example] = []
    for part in splits:
        examples += module.from_hub(part, **options) if root is None else module.from_files(root, part, **options)
    if module.STRATIFY_BY_SUBJECT:
        return sample_stratified(examples, limit, seed, group_of=lambda example: example.subject)
    return sample_rows(examples, limit, seed)
