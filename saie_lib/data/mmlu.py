"""MMLU: headerless CSVs `{split}/{subject}_{split}.csv` with columns question, A, B, C, D, answer."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from pathlib import Path

from saie_lib.data.checks import Located, require_choices, require_text
from saie_lib.data.hub import hub_records
from saie_lib.data.io import DataUnavailableError, Location, list_folder, read_csv, require
from saie_lib.tasks import Example, get_task

TASK = get_task("mmlu")
OPTIONS = ("subjects",)  # load_task options, passed on to from_files / from_hub
STRATIFY_BY_SUBJECT = True

HUB_SPLITS = {"dev": "dev", "val": "validation", "test": "test"}
N_COLUMNS = 1 + len(TASK.labels) + 1  # question, one column per choice, answer letter


def subject_files(data_dir: Path, split: str) -> dict[str, Path]:
    """Subject name -> CSV path for one split, in alphabetical order of subject."""
    folder = data_dir / "mmlu" / split
    suffix = f"_{split}.csv"
    files = {path.name[: -len(suffix)]: path for path in list_folder(folder) if path.name.endswith(suffix)}
    files = {subject: path for subject, path in files.items() if subject}
    if not files:
        raise DataUnavailableError(f"no MMLU files {folder}/<subject>{suffix} found")
    return files


def select_subjects(requested: Iterable[str] | str | None, available: Collection[str]) -> list[str]:
    """The requested subjects (all when None) in alphabetical order; an unknown one raises ValueError."""
    if requested is None:
        return sorted(available)
    requested = [requested] if isinstance(requested, str) else list(requested)
    if not requested:
        raise ValueError("subjects is empty; pass subjects=None for all subjects")
    unknown = [subject for subject in requested if subject not in available]
    if unknown:
        raise ValueError(f"unknown MMLU subjects {unknown}; valid subjects: {', '.join(sorted(available))}")
    return sorted(set(requested))


def example_id(split: str, subject: str, index: int) -> str:
    """Unique per split: the index (digits only) follows the last '-', so (subject, index) is recoverable."""
    return f"mmlu-{split}-{subject}-{index}"


def _example(
    *, split: str, subject: str, index: int, question: str, choices: list, answer: str, where: Location
) -> Example:
    return Example(
        id=example_id(split, require_text(subject, "subject", where), index),
        task=TASK.name,
        question=require_text(question, "question", where),
        answer=answer,
        choices=require_choices(choices, TASK.labels, where),
        subject=subject,
    )


def example_from_row(row: list[str], split: str, subject: str, index: int, where: Location) -> Example:
    """One Example from a CSV row; index is the row's 0-based position in its subject file."""
    question, *choices, answer = row
    if answer not in TASK.labels:
        raise where.error(f"answer {answer!r} is not one of {', '.join(TASK.labels)}")
    return _example(
        split=split, subject=subject, index=index, question=question, choices=choices, answer=answer, where=where
    )


def example_from_hub_row(row: dict, split: str, index: int, where: Location) -> Example:
    """One Example from a cais/mmlu row (answer is an int 0-3); index is the row's position within its subject."""
    choices = require(row, "choices", list, where)
    answer = require(row, "answer", int, where)
    if isinstance(answer, bool) or not 0 <= answer < len(TASK.labels):
        raise where.error(f"answer {answer!r} should be an index 0-{len(TASK.labels) - 1}")
    return _example(
        split=split,
        subject=require(row, "subject", str, where),
        index=index,
        question=require(row, "question", str, where),
        choices=choices,
        answer=TASK.labels[answer],
        where=where,
    )


def _subject_file(path: Path, split: str, subject: str) -> list[Located]:
    rows = enumerate(read_csv(path, N_COLUMNS))
    return [(where, example_from_row(row, split, subject, index, where)) for index, (where, row) in rows]


def from_files(data_dir: Path, split: str, subjects: Iterable[str] | str | None = None) -> list[Located]:
    """Every row of the chosen subjects' files; an empty subject file raises (read_csv), never drops the subject."""
    files = subject_files(data_dir, split)
    chosen = select_subjects(subjects, files)
    return [located for subject in chosen for located in _subject_file(files[subject], split, subject)]


def from_hub(split: str, subjects: Iterable[str] | str | None = None) -> list[Located]:
    located: list[Located] = []
    rows_per_subject: Counter[str] = Counter()
    for where, row in hub_records(TASK.hub_id, TASK.hub_config, HUB_SPLITS[split]):
        subject = require(row, "subject", str, where)
        located.append((where, example_from_hub_row(row, split, rows_per_subject[subject], where)))
        rows_per_subject[subject] += 1
    chosen = set(select_subjects(subjects, rows_per_subject))
    return [(where, example) for where, example in located if example.subject in chosen]
