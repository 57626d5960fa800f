"""CommonsenseQA v1.11 (random split) with CoS-E or ECQA rationales joined by question id.

Rationales for the train split never come from a CSQA dev question: ECQA's own split mixes CSQA train
and dev, and dev is the evaluation set.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from saie_lib.data.hub import hub_records
from saie_lib.data.io import DataUnavailableError, Location, read_csv, read_jsonl, require
from saie_lib.tasks import Example, get_task

TASK = get_task("commonsense_qa")
RATIONALE_SOURCES = ("cos_e", "ecqa")
OPTIONS = ("rationale_source",)  # load_task options, passed on to from_files / from_hub
STRATIFY_BY_SUBJECT = False

HUB_SPLITS = {"train": "train", "dev": "validation"}
COS_E_HUB_ID = "Salesforce/cos_e"
COS_E_HUB_CONFIG = "v1.11"
ECQA_FILES = ("cqa_data_val.csv", "cqa_data_test.csv")
ECQA_HEADER = [""] + "q_no q_concept q_text q_op1 q_op2 q_op3 q_op4 q_op5 q_ans taskA_pos taskA_neg taskB".split()


def split_path(data_dir: Path, split: str) -> Path:
    return data_dir / "commonsense_qa" / f"{split}_rand_split.jsonl"


def _example(
    *, qid: str, stem: str, concept: str, labels: list, texts: list, answer_key: str, where: Location
) -> Example:
    if not qid:
        raise where.error("empty id")
    if tuple(labels) != TASK.labels or len(texts) != len(labels) or not all(isinstance(text, str) for text in texts):
        raise where.error(f"choices should be {len(TASK.labels)} texts labelled {', '.join(TASK.labels)}")
    if answer_key not in TASK.labels:
        raise where.error(f"answerKey {answer_key!r} is not one of {', '.join(TASK.labels)}")
    return Example(id=qid, task=TASK.name, question=stem, answer=answer_key, choices=tuple(texts), subject=concept)


def example_from_record(record: dict, where: Location) -> Example:
    """One Example (no rationale yet) from a row of the original JSONL."""
    question = require(record, "question", dict, where)
    choices = require(question, "choices", list, where)
    if not all(isinstance(choice, dict) for choice in choices):
        raise where.error("each choice should be an object with 'label' and 'text'")
    return _example(
        qid=require(record, "id", str, where),
        stem=require(question, "stem", str, where),
        concept=require(question, "question_concept", str, where),
        labels=[require(choice, "label", str, where) for choice in choices],
        texts=[require(choice, "text", str, where) for choice in choices],
        answer_key=require(record, "answerKey", str, where),
        where=where,
    )


def example_from_hub_row(row: dict, where: Location) -> Example:
    """One Example (no rationale yet) from a tau/commonsense_qa row."""
    choices = require(row, "choices", dict, where)
    return _example(
        qid=require(row, "id", str, where),
        stem=require(row, "question", str, where),
        concept=require(row, "question_concept", str, where),
        labels=require(choices, "label", list, where),
        texts=require(choices, "text", list, where),
        answer_key=require(row, "answerKey", str, where),
        where=where,
    )


def cos_e_from_hub_row(row: dict, where: Location) -> tuple[str, str]:
    """(question id, open-ended explanation) from a Salesforce/cos_e row."""
    return require(row, "id", str, where), require(row, "abstractive_explanation", str, where)


def _rationale_map(pairs: Iterable[tuple[Location, str, str]]) -> dict[str, str]:
    rationales: dict[str, str] = {}
    for where, qid, text in pairs:
        text = text.strip()
        if not text:
            raise where.error(f"empty rationale for id {qid!r}")
        if rationales.setdefault(qid, text) != text:  # ECQA val and test share 11 ids, with the same text
            raise where.error(f"a second, different rationale for id {qid!r}")
    return rationales


def _cos_e_file_pairs(data_dir: Path, split: str) -> Iterator[tuple[Location, str, str]]:
    path = data_dir / "commonsense_qa" / "rationales" / "cos_e" / "v1.11" / f"cose_{split}_v1.11.jsonl"
    for where, record in read_jsonl(path):
        explanation = require(record, "explanation", dict, where)
        yield where, require(record, "id", str, where), require(explanation, "open-ended", str, where)


def _ecqa_file_pairs(data_dir: Path, split: str) -> Iterator[tuple[Location, str, str]]:
    """ECQA rows for every CSQA split alike; which ids may be used is decided by the caller."""
    for name in ECQA_FILES:
        path = data_dir / "commonsense_qa" / "rationales" / "ecqa" / name
        rows = read_csv(path, len(ECQA_HEADER))
        where, header = next(rows, (Location(str(path), 1), None))
        if header != ECQA_HEADER:
            raise where.error(f"expected the header {ECQA_HEADER}, got {header}")
        for where, row in rows:
            yield where, row[ECQA_HEADER.index("q_no")], row[ECQA_HEADER.index("taskB")]


def _cos_e_hub_pairs(split: str) -> Iterator[tuple[Location, str, str]]:
    for where, row in hub_records(COS_E_HUB_ID, COS_E_HUB_CONFIG, HUB_SPLITS[split]):
        yield (where, *cos_e_from_hub_row(row, where))


FILE_RATIONALES: dict[str, Callable[[Path, str], Iterable]] = {"cos_e": _cos_e_file_pairs, "ecqa": _ecqa_file_pairs}
HUB_RATIONALES: dict[str, Callable[[str], Iterable]] = {"cos_e": _cos_e_hub_pairs}


def ensure_no_rationales_from(examples: Iterable[Example], forbidden_ids: Collection[str]) -> None:
    """Guard: raise if any example carries a rationale written for a forbidden (e.g. CSQA dev) question."""
    leaked = [example.id for example in examples if example.rationale is not None and example.id in forbidden_ids]
    if leaked:
        raise RuntimeError(f"{len(leaked)} examples carry rationales of forbidden ids, e.g. {leaked[:3]}")


def attach_rationales(
    examples: list[Example], rationales: dict[str, str], forbidden_ids: Collection[str]
) -> list[Example]:
    """Each example with its rationale (None where there is none); forbidden ids' rationales are never used."""
    usable = {qid: text for qid, text in rationales.items() if qid not in forbidden_ids}
    attached = [replace(example, rationale=usable.get(example.id)) for example in examples]
    ensure_no_rationales_from(attached, forbidden_ids)
    return attached


def _check_source(rationale_source: str) -> None:
    if rationale_source not in RATIONALE_SOURCES:
        raise ValueError(f"unknown rationale_source {rationale_source!r}; accepted: {', '.join(RATIONALE_SOURCES)}")


def _split_from_files(data_dir: Path, split: str) -> list[Example]:
    return [example_from_record(record, where) for where, record in read_jsonl(split_path(data_dir, split))]


def _split_from_hub(split: str) -> list[Example]:
    rows = hub_records(TASK.hub_id, TASK.hub_config, HUB_SPLITS[split])
    return [example_from_hub_row(row, where) for where, row in rows]


def from_files(data_dir: Path, split: str, rationale_source: str = "cos_e") -> list[Example]:
    _check_source(rationale_source)
    examples = _split_from_files(data_dir, split)
    rationales = _rationale_map(FILE_RATIONALES[rationale_source](data_dir, split))
    is_train = split == TASK.train_split
    dev_ids = {example.id for example in _split_from_files(data_dir, TASK.eval_split)} if is_train else set()
    return attach_rationales(examples, rationales, forbidden_ids=dev_ids)


def from_hub(split: str, rationale_source: str = "cos_e") -> list[Example]:
    _check_source(rationale_source)
    if rationale_source not in HUB_RATIONALES:
        raise DataUnavailableError(f"{rationale_source} rationales are not on the Hub path; pass data_dir instead")
    examples = _split_from_hub(split)
    rationales = _rationale_map(HUB_RATIONALES[rationale_source](split))
    is_train = split == TASK.train_split
    dev_ids = {example.id for example in _split_from_hub(TASK.eval_split)} if is_train else set()
    return attach_rationales(examples, rationales, forbidden_ids=dev_ids)
