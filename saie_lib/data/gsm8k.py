"""GSM8K: JSONL rows {"question", "answer"}; the answer is a worked solution ending in "#### <number>"."""

from __future__ import annotations

import re
from pathlib import Path

from saie_lib.data.checks import Located, require_text
from saie_lib.data.hub import hub_records
from saie_lib.data.io import Location, read_jsonl, require
from saie_lib.parsing import normalize_number
from saie_lib.tasks import Example, get_task

TASK = get_task("gsm8k")
OPTIONS: tuple[str, ...] = ()  # no load_task options
STRATIFY_BY_SUBJECT = False

FINAL_ANSWER_MARK = "####"
CALCULATOR_ANNOTATION_RE = re.compile(r"<<.*?>>")


def split_path(data_dir: Path, split: str) -> Path:
    return data_dir / "gsm8k" / f"{split}.jsonl"


def example_from_record(record: dict, split: str, index: int, where: Location) -> Example:
    """One Example from a row in the file's (and the Hub's) schema; index is the 0-based row number."""
    question = require_text(require(record, "question", str, where), "question", where)
    solution = require(record, "answer", str, where)
    reasoning, mark, final = solution.rpartition(FINAL_ANSWER_MARK)
    if not mark:
        raise where.error(f"answer has no {FINAL_ANSWER_MARK!r} final-answer line")
    if solution.count(FINAL_ANSWER_MARK) > 1:
        lines = [n for n, text in enumerate(solution.splitlines(), start=1) if FINAL_ANSWER_MARK in text]
        raise where.error(f"answer has {solution.count(FINAL_ANSWER_MARK)} {FINAL_ANSWER_MARK!r} final-answer marks "
                          f"(on lines {', '.join(map(str, lines))} of the answer); expected exactly one")
    gold = normalize_number(final)
    if gold is None:
        raise where.error(f"final answer {final.strip()!r} is not a number")
    return Example(
        id=f"gsm8k-{split}-{index}",
        task=TASK.name,
        question=question,
        answer=gold,
        rationale=CALCULATOR_ANNOTATION_RE.sub("", reasoning).strip(),
    )


def _located(records, split: str) -> list[Located]:
    return [(where, example_from_record(record, split, index, where)) for index, (where, record) in enumerate(records)]


def from_files(data_dir: Path, split: str) -> list[Located]:
    return _located(read_jsonl(split_path(data_dir, split)), split)


def from_hub(split: str) -> list[Located]:
    return _located(hub_records(TASK.hub_id, TASK.hub_config, split), split)
