"""Bad inputs never load silently: each raises a typed error naming the file and line(s) (issue "Never a silent
wrong result"). A small valid copy of the real layout is built in tmp_path, then one thing is broken per case."""

import builtins
import csv
import io
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

import saie_lib.data.io as data_io
from saie_lib.data import DataFormatError, DataUnavailableError, LoadedExamples, commonsense_qa, load_task, mmlu
from saie_lib.data.io import Location

HERE = Location("hub", 4, unit="row")
BAD_BYTE = b"\xff"
BOM = "\ufeff"

# --- a small valid data folder in the real layout (rows copied from the real files) ----------------------------

GSM8K_ROWS = [
    {
        "question": "A robe takes 2 bolts of blue fiber and half that much white fiber.  How many bolts in total "
        "does it take?",
        "answer": "It takes 2/2=<<2/2=1>>1 bolt of white fiber\nSo the total amount of fabric is 2+1=<<2+1=3>>3 "
        "bolts of fabric\n#### 3",
    },
    {"question": "Janet\u2019s ducks lay 16 eggs per day. How many are left after she eats 3?", "answer": "#### 13"},
    {"question": "What is 2 + 2?", "answer": "2+2=<<2+2=4>>4\n#### 4"},
]
CSQA_IDS = {"train": ["075e483d21c29a511267ef62bedc0461", "61fe6e879ff18686d7552425a36344c8"],
            "dev": ["1afa02df02c908a558b4036e80242fac", "a7ab086045575bb497933726e4e6ad28"]}
ECQA_HEADER = ",q_no,q_concept,q_text,q_op1,q_op2,q_op3,q_op4,q_op5,q_ans,taskA_pos,taskA_neg,taskB\r\n"
MMLU_ROWS = [
    ["Which of the following terms describes the body's ability to maintain its normal state?",
     "Anabolism", "Catabolism", "Tolerance", "Homeostasis", "D"],
    ["Which of the following structures travel through the substance of the parotid gland?",
     "The maxillary artery", "The maxillary artery and retromandibular vein",
     "The maxillary artery, retromandibular vein and\nfacial artery", "The facial artery", "B"],
]


def csqa_row(qid, stem=None, texts=("bank", "library", "department store", "mall", "new york"), answer="A"):
    choices = [{"label": label, "text": text} for label, text in zip("ABCDE", texts)]
    stem = f"A revolving door serves as a security measure at a what? ({qid[:4]})" if stem is None else stem
    return {"answerKey": answer, "id": qid, "question": {"question_concept": "revolving door", "choices": choices,
                                                         "stem": stem}}


def cose_row(qid, text="Wooden area is only the place for the beaver supplies."):
    return {"id": qid, "explanation": {"open-ended": text, "selected": "bank"}}


def ecqa_row(index, qid, explanation="Have knowledge means information."):
    return [str(index), qid, "in charge", "q?", "a", "b", "c", "d", "e", "a", "pos\nmore", "neg", explanation]


def jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def csv_text(rows):
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def csqa_dir(root):
    return root / "commonsense_qa"


def cose_path(root, split):
    return csqa_dir(root) / "rationales" / "cos_e" / "v1.11" / f"cose_{split}_v1.11.jsonl"


def ecqa_path(root, name):
    return csqa_dir(root) / "rationales" / "ecqa" / name


def mmlu_path(root, split, subject="anatomy"):
    return root / "mmlu" / split / f"{subject}_{split}.csv"


def build_layout(root):
    for split in ("train", "test"):
        jsonl(root / "gsm8k" / f"{split}.jsonl", GSM8K_ROWS)
    for split, ids in CSQA_IDS.items():
        jsonl(csqa_dir(root) / f"{split}_rand_split.jsonl", [csqa_row(qid) for qid in ids])
        jsonl(cose_path(root, split), [cose_row(qid) for qid in ids])
    ecqa_path(root, "x").parent.mkdir(parents=True)
    for index, name in enumerate(commonsense_qa.ECQA_FILES):
        rows = [ecqa_row(index, CSQA_IDS["train"][0]), ecqa_row(index + 1, CSQA_IDS["dev"][index])]
        ecqa_path(root, name).write_text(ECQA_HEADER + csv_text(rows), encoding="utf-8", newline="")
    for split in ("dev", "val", "test"):
        for subject in ("anatomy", "virology"):
            rows = [[f"{row[0]} ({subject})", *row[1:]] for row in MMLU_ROWS]
            path = mmlu_path(root, split, subject)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(csv_text(rows), encoding="utf-8", newline="")
    return root


@pytest.fixture
def root(tmp_path):
    return build_layout(tmp_path / "data")


# --- ways to break it --------------------------------------------------------------------------------------------


def replace_line(path, number, new: bytes):
    lines = path.read_bytes().splitlines(keepends=True)
    ending = b"\r\n" if lines[number - 1].endswith(b"\r\n") else b"\n"
    lines[number - 1] = new + ending
    path.write_bytes(b"".join(lines))


def append_line(path, new: bytes):
    path.write_bytes(path.read_bytes() + new + b"\n")


def js(record) -> bytes:
    return json.dumps(record).encode()


def deny(monkeypatch, target, name, path):
    """Make target.name raise PermissionError for `path` (tests may run as root, where chmod denies nothing)."""
    original = getattr(target, name, None) or getattr(builtins, name)

    def denied(first, *args, **kwargs):
        if Path(first) == path:
            raise PermissionError(13, "Permission denied", str(path))
        return original(first, *args, **kwargs)

    monkeypatch.setattr(target, name, denied, raising=False)


def fake_hub(monkeypatch, tables):
    for variable in ("SAIE_DATA_DIR", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    load = lambda hub_id, config, split: tables[hub_id, config, split]  # noqa: E731
    monkeypatch.setitem(sys.modules, "datasets", SimpleNamespace(load_dataset=load))


def hub_csqa(qid, question="q?", texts=("a", "b", "c", "d", "e")):
    choices = {"label": list("ABCDE"), "text": list(texts)}
    return {"id": qid, "question": question, "question_concept": "c", "choices": choices, "answerKey": "A"}


HUB_MMLU = {"question": "q", "subject": "virology", "choices": ["a", "b", "c", "d"], "answer": 1}


@dataclass
class Case:
    name: str
    task: str
    split: str
    breaks: object  # (root, monkeypatch) -> None
    error: type
    fragments: list  # each must appear in the message; "{root}" stands for the data folder
    options: dict = field(default_factory=dict)
    hub: bool = False


def csqa_file(root, split):
    return csqa_dir(root) / f"{split}_rand_split.jsonl"


DEV_0, DEV_1 = CSQA_IDS["dev"]
TRAIN_1 = CSQA_IDS["train"][1]
ECQA = {"rationale_source": "ecqa"}
STRICT = {"duplicate_rows": "error"}
HUB_CSQA_DUPLICATE = {
    ("tau/commonsense_qa", None, "validation"): [hub_csqa("a" * 32), hub_csqa("a" * 32, "r?")],
    ("Salesforce/cos_e", "v1.11", "validation"): [],
}
HUB_MMLU_EMPTY_CHOICE = {("cais/mmlu", "all", "validation"): [HUB_MMLU, {**HUB_MMLU, "choices": ["a", "", "c", "d"]}]}
NON_UTF8_GSM8K = b'{"question": "caf' + BAD_BYTE + b'", "answer": "#### 1"}'

CASES = [
    # 1. bytes that are not UTF-8
    Case("gsm8k non-utf8", "gsm8k", "test",
         lambda r, m: replace_line(r / "gsm8k/test.jsonl", 2, NON_UTF8_GSM8K),
         DataFormatError, ["test.jsonl, line 2: not valid UTF-8 (bytes ff at byte 18 of the line)"]),
    Case("csqa non-utf8", "commonsense_qa", "dev",
         lambda r, m: append_line(csqa_file(r, "dev"), BAD_BYTE * 2),
         DataFormatError, ["dev_rand_split.jsonl, line 3: not valid UTF-8"]),
    Case("cos-e non-utf8", "commonsense_qa", "train",
         lambda r, m: replace_line(cose_path(r, "train"), 1, b"\xc3\x28"),
         DataFormatError, ["cose_train_v1.11.jsonl, line 1: not valid UTF-8"]),
    Case("ecqa csv non-utf8", "commonsense_qa", "dev",
         lambda r, m: replace_line(ecqa_path(r, "cqa_data_val.csv"), 2, b"0,\x80"),
         DataFormatError, ["cqa_data_val.csv, line 2: not valid UTF-8"], ECQA),
    Case("mmlu csv non-utf8 after a two-line field", "mmlu", "val",
         lambda r, m: append_line(mmlu_path(r, "val", "virology"), b"q\xe9,a,b,c,d,A"),
         DataFormatError, ["virology_val.csv, line 4: not valid UTF-8"]),
    # 3. empty question, choices or choice text
    Case("gsm8k empty question", "gsm8k", "train",
         lambda r, m: append_line(r / "gsm8k/train.jsonl", js({"question": "  ", "answer": "#### 1"})),
         DataFormatError, ["train.jsonl, line 4: empty question"]),
    Case("csqa empty stem", "commonsense_qa", "dev",
         lambda r, m: replace_line(csqa_file(r, "dev"), 2, js(csqa_row(DEV_1, stem=""))),
         DataFormatError, ["dev_rand_split.jsonl, line 2: empty question"]),
    Case("csqa no choices", "commonsense_qa", "dev",
         lambda r, m: replace_line(csqa_file(r, "dev"), 1, js(csqa_row(DEV_0, texts=()))),
         DataFormatError, ["dev_rand_split.jsonl, line 1: no choices"]),
    Case("csqa empty choice text", "commonsense_qa", "train",
         lambda r, m: replace_line(csqa_file(r, "train"), 2, js(csqa_row(TRAIN_1, texts=("a", "b", " ", "d", "e")))),
         DataFormatError, ["train_rand_split.jsonl, line 2: empty text for choice C"]),
    Case("mmlu empty question", "mmlu", "test",
         lambda r, m: append_line(mmlu_path(r, "test"), b",a,b,c,d,A"),
         DataFormatError, ["anatomy_test.csv, line 4: empty question"]),
    Case("mmlu empty choice text", "mmlu", "dev",
         lambda r, m: replace_line(mmlu_path(r, "dev", "virology"), 1, b"q,a,,c,d,A"),
         DataFormatError, ["virology_dev.csv, line 1: empty text for choice B"]),
    # 4. repeated ids and rows
    Case("csqa duplicate id", "commonsense_qa", "dev",
         lambda r, m: append_line(csqa_file(r, "dev"), js(csqa_row(DEV_0, stem="other?"))),
         DataFormatError, [f"dev_rand_split.jsonl, line 3: id '{DEV_0}' appears at lines 1 and 3"]),
    Case("csqa train id repeated in train+dev", "commonsense_qa", "train+dev",
         lambda r, m: [append_line(csqa_file(r, "dev"), js(csqa_row(TRAIN_1, stem="x?"))),
                       append_line(cose_path(r, "dev"), js(cose_row(TRAIN_1)))],
         DataFormatError, ["dev_rand_split.jsonl, line 3: id", "train_rand_split.jsonl, line 2 and"]),
    Case("gsm8k same question, two gold answers", "gsm8k", "test",
         lambda r, m: append_line(r / "gsm8k/test.jsonl", js({**GSM8K_ROWS[2], "answer": "#### 5"})),
         DataFormatError, ["test.jsonl, line 4: the same question and choices appear at lines 3 and 4 with different"]),
    Case("gsm8k repeated row, duplicate_rows='error'", "gsm8k", "train",
         lambda r, m: append_line(r / "gsm8k/train.jsonl", js(GSM8K_ROWS[0])),
         DataFormatError, ["train.jsonl, line 4: ids 'gsm8k-train-0' and 'gsm8k-train-3' hold the same row",
                           "at lines 1 and 4"], STRICT),
    Case("mmlu repeated row across subjects, duplicate_rows='error'", "mmlu", "val",
         lambda r, m: mmlu_path(r, "val", "virology").write_bytes(mmlu_path(r, "val", "anatomy").read_bytes()),
         DataFormatError, ["virology_val.csv, line 1: ids", "anatomy_val.csv, line 1 and", "virology_val.csv, line 1"],
         STRICT),
    Case("cos-e two different rationales for one id", "commonsense_qa", "dev",
         lambda r, m: append_line(cose_path(r, "dev"), js(cose_row(DEV_0, "another"))),
         DataFormatError, ["cose_dev_v1.11.jsonl, line 3: a second, different", "cose_dev_v1.11.jsonl, line 1)"]),
    # 5. empty files
    Case("mmlu empty subject file", "mmlu", "test",
         lambda r, m: mmlu_path(r, "test", "virology").write_bytes(b""),
         DataFormatError, ["virology_test.csv, line 1: the file holds no rows"]),
    Case("gsm8k empty file", "gsm8k", "train",
         lambda r, m: (r / "gsm8k/train.jsonl").write_bytes(b""),
         DataFormatError, ["train.jsonl, line 1: the file holds no rows"]),
    Case("ecqa header only", "commonsense_qa", "train",
         lambda r, m: ecqa_path(r, "cqa_data_test.csv").write_text(ECQA_HEADER),
         DataFormatError, ["cqa_data_test.csv, line 1: the file holds a header but no rows"], ECQA),
    # 6. missing or mismatched rationales
    Case("cos-e file missing", "commonsense_qa", "dev",
         lambda r, m: cose_path(r, "dev").unlink(),
         DataUnavailableError, ["missing: {root}/commonsense_qa/rationales/cos_e/v1.11/cose_dev_v1.11.jsonl",
                                "require_rationales=False"]),
    Case("ecqa files missing", "commonsense_qa", "train",
         lambda r, m: [ecqa_path(r, name).unlink() for name in commonsense_qa.ECQA_FILES],
         DataUnavailableError, ["cqa_data_val.csv, {root}/commonsense_qa/rationales/ecqa/cqa_data_test.csv"], ECQA),
    Case("cos-e file misses a question", "commonsense_qa", "train",
         lambda r, m: jsonl(cose_path(r, "train"), [cose_row(CSQA_IDS["train"][0])]),
         DataUnavailableError, [f"train_rand_split.jsonl, line 2: no cos_e rationale for id '{TRAIN_1}'"]),
    Case("ecqa covers no question of the split", "commonsense_qa", "dev",
         lambda r, m: [ecqa_path(r, name).write_text(ECQA_HEADER + csv_text([ecqa_row(0, "f" * 32)]))
                       for name in commonsense_qa.ECQA_FILES],
         DataUnavailableError, ["dev_rand_split.jsonl, line 1: no ecqa rationale", "cqa_data_test.csv"], ECQA),
    # 7. unreadable folders and files
    Case("data_dir is a file", "gsm8k", "test",
         lambda r, m: None,
         DataUnavailableError, ["{root}/gsm8k/test.jsonl (from data_dir) is a file, not a folder"],
         {"data_dir": "{root}/gsm8k/test.jsonl"}),
    Case("data folder permission denied", "gsm8k", "test",
         lambda r, m: deny(m, data_io.os, "listdir", r),
         DataUnavailableError, ["cannot read data folder (from data_dir) {root} (Permission denied)"]),
    Case("data file permission denied", "gsm8k", "test",
         lambda r, m: deny(m, data_io, "open", r / "gsm8k" / "test.jsonl"),
         DataUnavailableError, ["cannot read data file {root}/gsm8k/test.jsonl (Permission denied)"]),
    Case("mmlu split folder permission denied", "mmlu", "dev",
         lambda r, m: deny(m, Path, "iterdir", r / "mmlu" / "dev"),
         DataUnavailableError, ["cannot read data folder {root}/mmlu/dev (Permission denied)"]),
    # 8. sizes and marks: a row or a file above its bound, two final-answer marks
    Case("gsm8k 2 MB single line", "gsm8k", "train",
         lambda r, m: replace_line(r / "gsm8k/train.jsonl", 2, js({"question": "x" * 2_000_000, "answer": "#### 1"})),
         DataFormatError, ["train.jsonl, line 2: the row has 2,000,", "characters; a row may have at most 65,536"]),
    Case("mmlu csv record above the row bound", "mmlu", "test",
         lambda r, m: append_line(mmlu_path(r, "test"), b"q" * 40_000 + b"," + b"a" * 40_000 + b",b,c,d,A"),
         DataFormatError, ["anatomy_test.csv, line 4: the row has 80,004 characters"]),
    Case("data file above the file bound", "gsm8k", "test",
         lambda r, m: m.setattr(data_io, "MAX_FILE_BYTES", 100),
         DataFormatError, ["gsm8k/test.jsonl: the file has", "bytes; a data file may have at most 100"]),
    Case("gsm8k answer with two #### lines", "gsm8k", "test",
         lambda r, m: append_line(r / "gsm8k/test.jsonl", js({"question": "q?", "answer": "x\n#### 3\ny\n#### 4"})),
         DataFormatError, ["test.jsonl, line 4: answer has 2 '####' final-answer marks (on lines 2, 4 of the answer)"]),
    # Hub fallback: the row converters get the same checks
    Case("hub csqa duplicate id", "commonsense_qa", "dev",
         lambda r, m: fake_hub(m, HUB_CSQA_DUPLICATE),
         DataFormatError, [f"Hub tau/commonsense_qa (validation), row 2: id '{'a' * 32}' appears at rows 1 and 2"],
         hub=True),
    Case("hub mmlu empty choice", "mmlu", "val",
         lambda r, m: fake_hub(m, HUB_MMLU_EMPTY_CHOICE),
         DataFormatError, ["Hugging Face Hub cais/mmlu (validation), row 2: empty text for choice B"], hub=True),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_raises_naming_file_and_line(root, monkeypatch, case):
    monkeypatch.delenv("SAIE_DATA_DIR", raising=False)
    case.breaks(root, monkeypatch)
    options = {key: value.format(root=root) if isinstance(value, str) else value for key, value in case.options.items()}
    if not case.hub:
        options.setdefault("data_dir", root)
    with pytest.raises(case.error) as caught:
        load_task(case.task, case.split, **options)
    for fragment in case.fragments:
        assert fragment.format(root=root) in str(caught.value)


def test_the_table_is_big_enough():
    assert len(CASES) >= 15 and len({case.name for case in CASES}) == len(CASES)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_real_permission_denied_on_a_file(root):
    path = root / "gsm8k" / "test.jsonl"
    path.chmod(0)
    with pytest.raises(DataUnavailableError, match=re.escape(f"cannot read data file {path}")):
        load_task("gsm8k", "test", data_dir=root)


# --- what still loads, and what the report says ----------------------------------------------------------------


def test_the_valid_layout_loads_every_split(root):
    for task, splits in {"gsm8k": ["train", "test"], "commonsense_qa": ["train", "dev"],
                         "mmlu": ["dev", "val", "test"]}.items():
        for split in splits:
            examples = load_task(task, split, data_dir=root)
            assert isinstance(examples, LoadedExamples) and examples.report.n_duplicate_rows == 0
    assert load_task("mmlu", "val", data_dir=root)[1].choices[2].endswith("and\nfacial artery")


def test_a_leading_bom_is_stripped_everywhere(root):
    for path in [root / "gsm8k/test.jsonl", csqa_dir(root) / "dev_rand_split.jsonl", mmlu_path(root, "test"),
                 ecqa_path(root, "cqa_data_val.csv")]:
        path.write_bytes(BOM.encode() + path.read_bytes())
    assert not load_task("gsm8k", "test", data_dir=root)[0].question.startswith(BOM)
    assert not load_task("commonsense_qa", "dev", data_dir=root)[0].question.startswith(BOM)
    assert load_task("mmlu", "test", data_dir=root)[0].question.startswith("Which of the following terms")
    with_ecqa = load_task("commonsense_qa", "dev", data_dir=root, rationale_source="ecqa")  # header still matches
    assert [example.rationale for example in with_ecqa] == ["Have knowledge means information."] * 2


def test_repeated_rows_under_distinct_ids_are_kept_and_counted(root):
    append_line(mmlu_path(root, "dev", "virology"), mmlu_path(root, "dev", "anatomy").read_bytes().split(b"\r\n")[0])
    examples = load_task("mmlu", "dev", data_dir=root)
    assert len(examples) == 5 and examples.report.n_duplicate_rows == 1
    repeat = examples.report.duplicate_rows[0]
    assert (repeat.first_id, repeat.repeat_id) == ("mmlu-dev-anatomy-0", "mmlu-dev-virology-2")
    assert repeat.repeat.endswith("virology_dev.csv, line 4")
    assert examples.report.as_dict()["duplicate_rows"][0]["first"].endswith("anatomy_dev.csv, line 1")
    assert load_task("mmlu", "dev", data_dir=root, limit=4, seed=0).report.n_duplicate_rows == 1
    with pytest.raises(ValueError, match="duplicate_rows must be one of count, error"):
        load_task("mmlu", "dev", data_dir=root, duplicate_rows="drop")


def test_missing_rationales_can_be_waived_explicitly(root, monkeypatch):
    cose_path(root, "dev").unlink()
    dev = load_task("commonsense_qa", "dev", data_dir=root, require_rationales=False)
    assert [example.rationale for example in dev] == [None, None] and dev.report.without_rationale == 2
    assert dev.report.options["require_rationales"] is False
    ecqa_path(root, "cqa_data_test.csv").unlink()  # the other ECQA file is still read
    dev = load_task("commonsense_qa", "dev", data_dir=root, rationale_source="ecqa", require_rationales=False)
    assert [example.rationale for example in dev] == ["Have knowledge means information.", None]
    fake_hub(monkeypatch, {("tau/commonsense_qa", None, "validation"): [hub_csqa("a" * 32)]})
    hub = load_task("commonsense_qa", "dev", rationale_source="ecqa", require_rationales=False)
    assert hub[0].rationale is None and hub.report.source == "Hugging Face Hub"


def test_hub_row_converters_check_text():
    with pytest.raises(DataFormatError, match="hub, row 4: empty question"):
        commonsense_qa.example_from_hub_row(hub_csqa("b" * 32, question=" "), HERE)
    with pytest.raises(DataFormatError, match="hub, row 4: no choices"):
        commonsense_qa.example_from_hub_row({**hub_csqa("b" * 32), "choices": {"label": [], "text": []}}, HERE)
    with pytest.raises(DataFormatError, match="hub, row 4: empty question"):
        mmlu.example_from_hub_row({**HUB_MMLU, "question": ""}, "test", 0, HERE)
    with pytest.raises(DataFormatError, match="hub, row 4: expected 4 choices"):
        mmlu.example_from_hub_row({**HUB_MMLU, "choices": ["a", "b"]}, "test", 0, HERE)


# The real files (counts, repeated rows, subjects): tests/test_data.py::test_real_counts_repeated_rows_and_subjects.
