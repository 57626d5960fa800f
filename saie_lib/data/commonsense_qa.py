"""CommonsenseQA v1.11 (random split) with CoS-E or ECQA rationales joined by question id.

Rationales for the train split never come from a CSQA dev question: ECQA's own split mixes CSQA train
and dev, and dev is the evaluation set. Missing rationale files raise DataUnavailableError unless the caller
passes require_rationales=False; CoS-E must cover every question, ECQA (partial by design) at least one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import replace
from itertools import chain
from pathlib import Path

from saie_lib.data.checks import Located, check_unique_ids, require_choices, require_text
from saie_lib.data.hub import hub_records
from saie_lib.data.io import (
    DATA_LAYOUT_HELP,
    DataUnavailableError,
    Location,
    file_exists,
    no_rows_error,
    read_csv,
    read_jsonl,
    require,
)
from saie_lib.tasks import Example, get_task

TASK = get_task("commonsense_qa")
RATIONALE_SOURCES = ("cos_e", "ecqa")
OPTIONS = ("rationale_source", "require_rationales")  # load_task options, passed on to from_files / from_hub
STRATIFY_BY_SUBJECT = False

HUB_SPLITS = {"train": "train", "dev": "validation"}
COS_E_HUB_ID = "Salesforce/cos_e"
COS_E_HUB_CONFIG = "v1.11"
ECQA_FILES = ("cqa_data_val.csv", "cqa_data_test.csv")
ECQA_HEADER = [""] + "q_no q_concept q_text q_op1 q_op2 q_op3 q_op4 q_op5 q_ans taskA_pos taskA_neg taskB".split()
OPT_OUT_HINT = "pass require_rationales=False to load without them (rationale None, counted in the LoadReport)"


def split_path(data_dir: Path, split: str) -> Path:
    return data_dir / "commonsense_qa" / f"{split}_rand_split.jsonl"


def rationale_files(data_dir: Path, split: str, rationale_source: str) -> tuple[Path, ...]:
    """The files holding `rationale_source` rationales for a split (ECQA: both files, for every split)."""
    folder = data_dir / "commonsense_qa" / "rationales"
    if rationale_source == "cos_e":
        return (folder / "cos_e" / "v1.11" / f"cose_{split}_v1.11.jsonl",)
    return tuple(folder / "ecqa" / name for name in ECQA_FILES)


def _example(
    *, qid: str, stem: str, concept: str, labels: list, texts: list, answer_key: str, where: Location
) -> Example:
    require_text(qid, "id", where)
    choices = require_choices(texts, TASK.labels, where)
    if tuple(labels) != TASK.labels:
        raise where.error(f"choices should be {len(TASK.labels)} texts labelled {', '.join(TASK.labels)}")
    if answer_key not in TASK.labels:
        raise where.error(f"answerKey {answer_key!r} is not one of {', '.join(TASK.labels)}")
    stem = require_text(stem, "question", where)
    return Example(id=qid, task=TASK.name, question=stem, answer=answer_key, choices=choices, subject=concept)


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
    first_at: dict[str, Location] = {}
    for where, qid, text in pairs:
        require_text(qid, "id", where)
        text = text.strip()
        if not text:
            raise where.error(f"empty rationale for id {qid!r}")
        if rationales.setdefault(qid, text) != text:  # ECQA val and test share 11 ids, with the same text
            raise where.error(f"a second, different rationale for id {qid!r} (the first is at {first_at[qid]})")
        first_at.setdefault(qid, where)
    return rationales


def _cos_e_file_pairs(path: Path) -> Iterator[tuple[Location, str, str]]:
    for where, record in read_jsonl(path):
        explanation = require(record, "explanation", dict, where)
        yield where, require(record, "id", str, where), require(explanation, "open-ended", str, where)


def _ecqa_file_pairs(path: Path) -> Iterator[tuple[Location, str, str]]:
    """ECQA rows for every CSQA split alike; which ids may be used is decided by the caller."""
    rows = read_csv(path, len(ECQA_HEADER))
    where, header = next(rows)
    if header != ECQA_HEADER:
        raise where.error(f"expected the header {ECQA_HEADER}, got {header}")
    n_rows = 0
    for n_rows, (where, row) in enumerate(rows, start=1):
        yield where, row[ECQA_HEADER.index("q_no")], row[ECQA_HEADER.index("taskB")]
    if not n_rows:
        raise no_rows_error(path, "the file holds a header but no rows")


def _cos_e_hub_pairs(split: str) -> Iterator[tuple[Location, str, str]]:
    for where, row in hub_records(COS_E_HUB_ID, COS_E_HUB_CONFIG, HUB_SPLITS[split]):
        yield (where, *cos_e_from_hub_row(row, where))


FILE_RATIONALES: dict[str, Callable[[Path], Iterable]] = {"cos_e": _cos_e_file_pairs, "ecqa": _ecqa_file_pairs}
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


def check_rationale_coverage(
    located: list[Located], rationale_source: str, origin: str, forbidden_ids: Collection[str]
) -> None:
    """CoS-E holds a rationale for every CSQA question, ECQA for some: raise if CoS-E misses any, ECQA all."""
    lacking = [(where, example) for where, example in located if example.rationale is None]
    lacking = [(where, example) for where, example in lacking if example.id not in forbidden_ids]
    if not lacking or (rationale_source == "ecqa" and len(lacking) < len(located)):
        return
    where, example = lacking[0]
    raise DataUnavailableError(
        f"{where}: no {rationale_source} rationale for id {example.id!r} in {origin} "
        f"({len(lacking)} of the split's {len(located)} questions have none). "
        + ("CoS-E covers every CommonsenseQA question, so " if rationale_source == "cos_e" else "")
        + f"the rationale file is incomplete or belongs to another split. Fix it, or {OPT_OUT_HINT}"
    )


def _check_source(rationale_source: str) -> None:
    if rationale_source not in RATIONALE_SOURCES:
        raise ValueError(f"unknown rationale_source {rationale_source!r}; accepted: {', '.join(RATIONALE_SOURCES)}")


def _present_rationale_files(data_dir: Path, split: str, rationale_source: str, required: bool) -> list[Path]:
    """The rationale files that exist; any missing one raises DataUnavailableError if rationales are required."""
    files = rationale_files(data_dir, split, rationale_source)
    missing = [str(path) for path in files if not file_exists(path)]
    if missing and required:
        raise DataUnavailableError(
            f"CommonsenseQA {split} with rationale_source={rationale_source!r} needs rationale files that are "
            f"missing: {', '.join(missing)}. Put them in place, choose another rationale_source, or "
            f"{OPT_OUT_HINT}. {DATA_LAYOUT_HELP}"
        )
    return [path for path in files if str(path) not in missing]


def _with_rationales(
    located: list[Located], rationales: dict[str, str], forbidden_ids: Collection[str]
) -> list[Located]:
    examples = attach_rationales([example for _, example in located], rationales, forbidden_ids)
    return [(where, example) for (where, _), example in zip(located, examples)]


def _split_from_files(data_dir: Path, split: str) -> list[Located]:
    records = read_jsonl(split_path(data_dir, split))
    return check_unique_ids([(where, example_from_record(record, where)) for where, record in records])


def _split_from_hub(split: str) -> list[Located]:
    rows = hub_records(TASK.hub_id, TASK.hub_config, HUB_SPLITS[split])
    return check_unique_ids([(where, example_from_hub_row(row, where)) for where, row in rows])


def _forbidden_ids(split: str, load_eval_split: Callable[[], list[Located]]) -> set[str]:
    """The eval (dev) split's ids when loading train: their rationales must never reach training."""
    return {example.id for _, example in load_eval_split()} if split == TASK.train_split else set()


def from_files(
    data_dir: Path, split: str, rationale_source: str = "cos_e", require_rationales: bool = True
) -> list[Located]:
    _check_source(rationale_source)
    located = _split_from_files(data_dir, split)
    present = _present_rationale_files(data_dir, split, rationale_source, require_rationales)
    rationales = _rationale_map(chain.from_iterable(FILE_RATIONALES[rationale_source](path) for path in present))
    forbidden = _forbidden_ids(split, lambda: _split_from_files(data_dir, TASK.eval_split))
    located = _with_rationales(located, rationales, forbidden)
    if require_rationales:
        check_rationale_coverage(located, rationale_source, " and ".join(map(str, present)), forbidden)
    return located


def from_hub(split: str, rationale_source: str = "cos_e", require_rationales: bool = True) -> list[Located]:
    _check_source(rationale_source)
    on_hub = rationale_source in HUB_RATIONALES
    if not on_hub and require_rationales:
        raise DataUnavailableError(
            f"{rationale_source} rationales are not on the Hub path; pass data_dir instead, or {OPT_OUT_HINT}"
        )
    located = _split_from_hub(split)
    rationales = _rationale_map(HUB_RATIONALES[rationale_source](split) if on_hub else ())
    forbidden = _forbidden_ids(split, lambda: _split_from_hub(TASK.eval_split))
    located = _with_rationales(located, rationales, forbidden)
    if require_rationales:
        check_rationale_coverage(located, rationale_source, f"Hugging Face Hub {COS_E_HUB_ID}", forbidden)
    return located
