"""saie_lib.data: every split of the data folder (real, else fixtures), real-data counts, the fixtures themselves,
options, subsets, the ECQA dev-id guard, malformed files, Hub path."""

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from fixtures.make_data_fixtures import build as build_fixtures
from fixtures.make_data_fixtures import csv_records

from saie_lib.data import DataFormatError, DataUnavailableError, commonsense_qa, gsm8k, load_task, mmlu
from saie_lib.data.io import Location
from saie_lib.data.subsets import sample_stratified
from saie_lib.parsing import normalize_number
from saie_lib.tasks import Example

REAL_COUNTS = {
    ("gsm8k", "train"): 7473,
    ("gsm8k", "test"): 1319,
    ("commonsense_qa", "train"): 9741,
    ("commonsense_qa", "dev"): 1221,
    ("mmlu", "dev"): 285,
    ("mmlu", "val"): 1531,
    ("mmlu", "test"): 14042,
}
REAL_REPEATED_ROWS = {  # rows repeating another row's question, choices and answer under another id
    ("mmlu", "dev"): 1,  # college_physics lines 1 and 4
    ("mmlu", "val"): 2,  # clinical_knowledge = college_medicine
    ("mmlu", "test"): 105,  # 78 clinical_knowledge = college_medicine, 27 within one subject
}
HERE = Location("test", 1)


@pytest.fixture(scope="module")
def loaded(data_dir):
    """Every labelled split of the data folder (real data, else the fixtures), parsed once."""
    return {key: load_task(*key, data_dir=data_dir) for key in REAL_COUNTS}


@pytest.fixture
def no_data_env(monkeypatch):
    monkeypatch.delenv("SAIE_DATA_DIR", raising=False)


def write_jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def csqa_record(qid, answer="A"):
    choices = [{"label": label, "text": f"choice {label}"} for label in "ABCDE"]
    return {"answerKey": answer, "id": qid, "question": {"question_concept": "c", "choices": choices, "stem": "q?"}}


# --- the data folder: the real data, else the tiny fixtures of real rows --------------------------------------


@pytest.mark.parametrize("key", list(REAL_COUNTS))
def test_every_split_loads_with_unique_ids_and_valid_golds(loaded, key):
    examples = loaded[key]
    assert examples and len(examples) == examples.report.n_loaded
    assert len({example.id for example in examples}) == len(examples)
    for example in examples:
        assert example.task == key[0] and example.question.strip() and not example.question.startswith("\ufeff")
        if example.task == "gsm8k":
            assert normalize_number(example.answer) == example.answer and example.choices == ()
            assert example.rationale and "<<" not in example.rationale and "####" not in example.rationale
        else:
            labels = "ABCDE" if example.task == "commonsense_qa" else "ABCD"
            assert example.answer in labels and len(example.choices) == len(labels)
            assert all(choice.strip() for choice in example.choices)
    if key[0] == "commonsense_qa":
        assert examples.report.without_rationale == 0  # CoS-E covers every question
    if key[0] == "mmlu":
        assert all(example.rationale is None and example.subject for example in examples)


def test_first_rows_and_fields(loaded):
    """The fixtures keep each file's first rows, so these hold on both folders."""
    natalia = loaded["gsm8k", "train"][0]
    assert natalia.id == "gsm8k-train-0" and natalia.answer == "72"
    assert natalia.rationale.startswith("Natalia sold 48/2 = 24 clips in May.")
    first = loaded["commonsense_qa", "train"][0]
    assert (first.id, first.subject, first.answer) == ("075e483d21c29a511267ef62bedc0461", "punishing", "A")
    assert first.choices == ("ignore", "enforce", "authoritarian", "yell at", "avoid")
    assert loaded["mmlu", "dev"][0].id == "mmlu-dev-abstract_algebra-0"


def test_joined_splits_concatenate_in_order(loaded, data_dir):
    joined = load_task("mmlu", "dev+val", data_dir=data_dir)
    assert joined == loaded["mmlu", "dev"] + loaded["mmlu", "val"]
    assert joined.report.n_loaded == len(loaded["mmlu", "dev"]) + len(loaded["mmlu", "val"])


def test_mmlu_subjects_option(data_dir):
    examples = load_task("mmlu", "val", data_dir=data_dir, subjects=["virology", "abstract_algebra"])
    assert {example.subject for example in examples} == {"abstract_algebra", "virology"}
    assert examples[0].id == "mmlu-val-abstract_algebra-0"  # file order: subjects alphabetically


def test_ecqa_train_rationales_never_come_from_dev_ids(loaded, data_dir):
    dev_ids = {example.id for example in loaded["commonsense_qa", "dev"]}
    dev = load_task("commonsense_qa", "dev", data_dir=data_dir, rationale_source="ecqa")
    assert any(example.rationale is not None for example in dev)  # ECQA does hold dev questions
    train = load_task("commonsense_qa", "train", data_dir=data_dir, rationale_source="ecqa")
    with_rationale = [example for example in train if example.rationale is not None]
    assert with_rationale and not {example.id for example in with_rationale} & dev_ids


# --- the real data only: counts over whole files ------------------------------------------------------------


@pytest.fixture(scope="module")
def real(real_data_dir, loaded):
    """Every labelled split of the real data (skips without it); `data_dir` is the real data whenever it is found."""
    return loaded


def test_real_counts_repeated_rows_and_subjects(real):
    """Whole real files: rows per split, rows repeating another row's question, choices and answer under another
    id (kept and counted), and MMLU's 57 subjects in every split."""
    found = {key: (len(examples), examples.report.n_duplicate_rows) for key, examples in real.items()}
    assert found == {key: (REAL_COUNTS[key], REAL_REPEATED_ROWS.get(key, 0)) for key in REAL_COUNTS}
    assert all(len({example.subject for example in real["mmlu", split]}) == 57 for split in ("dev", "val", "test"))


def test_real_ecqa_counts(real, real_data_dir):
    dev = load_task("commonsense_qa", "dev", data_dir=real_data_dir, rationale_source="ecqa")
    assert sum(example.rationale is not None for example in dev) == 369
    train = load_task("commonsense_qa", "train", data_dir=real_data_dir, rationale_source="ecqa")
    assert sum(example.rationale is not None for example in train) == 2904


# --- the fixtures themselves -----------------------------------------------------------------------------------


def test_fixtures_are_small_and_load(fixture_data_dir):
    files = [path for path in fixture_data_dir.rglob("*") if path.is_file()]
    assert sum(path.stat().st_size for path in files) < 200_000
    for task, split in REAL_COUNTS:
        examples = load_task(task, split, data_dir=fixture_data_dir)
        assert 0 < len(examples) < REAL_COUNTS[task, split] / 10  # a few rows, never a whole file


def test_fixture_rows_are_verbatim_real_rows(fixture_data_dir, real_data_dir, tmp_path):
    """Each fixture file holds whole records of its real file, byte for byte: the first rows (CoS-E and ECQA: the
    header and the rows of the kept ids); and the builder, run on the real data, gives exactly the fixtures."""
    for fixture in sorted(path for path in fixture_data_dir.rglob("*") if path.is_file()):
        if fixture.name == "README.md":
            continue
        kept, source = fixture.read_bytes(), (real_data_dir / fixture.relative_to(fixture_data_dir)).read_bytes()
        if fixture.suffix not in (".jsonl", ".csv"):  # licence files: whole copies
            assert kept == source, fixture
        elif "rationales" not in fixture.parts:
            assert kept and len(kept) < len(source) and source.startswith(kept), fixture
        else:
            records = csv_records if fixture.suffix == ".csv" else lambda data: data.splitlines(keepends=True)
            source_records = set(records(source))
            assert 0 < len(records(kept)) < len(source_records)
            assert all(record in source_records for record in records(kept)), fixture
    build_fixtures(real_data_dir, tmp_path)
    rebuilt = {path.relative_to(tmp_path): path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    committed = {path.relative_to(fixture_data_dir): path.read_bytes() for path in fixture_data_dir.rglob("*")
                 if path.is_file() and path.name != "README.md"}
    assert rebuilt == committed


# --- errors in arguments -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, options, message",
    [
        (("nope", "train"), {}, "unknown task 'nope'"),
        (("gsm8k", "dev"), {}, "valid splits: train, test"),
        (("gsm8k", "train+train"), {}, "twice"),
        (("commonsense_qa", "test"), {}, "no gold labels; use 'dev'"),
        (("gsm8k", "train"), {"subjects": ["x"]}, "unknown option 'subjects' for task 'gsm8k'"),
        (("commonsense_qa", "dev"), {"seeds": 1}, "accepted options: rationale_source"),
        (("commonsense_qa", "dev"), {"rationale_source": "gpt"}, "accepted: cos_e, ecqa"),
        (("mmlu", "dev"), {"subjects": ["astrology"]}, "unknown MMLU subjects ['astrology']; valid subjects: abstract"),
        (("mmlu", "dev"), {"subjects": []}, "subjects is empty"),
        (("gsm8k", "test"), {"limit": 0}, "positive integer"),
    ],
)
def test_bad_arguments_raise_value_error(data_dir, args, options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_task(*args, data_dir=data_dir, **options)


# --- subsets -----------------------------------------------------------------------------------------------


def test_limit_is_a_deterministic_subset_in_file_order(loaded, data_dir):
    every = loaded["gsm8k", "test"]
    limit = min(50, len(every) // 2)
    first = load_task("gsm8k", "test", data_dir=data_dir, limit=limit, seed=1)
    assert first == load_task("gsm8k", "test", data_dir=data_dir, limit=limit, seed=1)
    assert first != load_task("gsm8k", "test", data_dir=data_dir, limit=limit, seed=2)
    positions = [every.index(example) for example in first]
    assert len(first) == limit and positions == sorted(positions)
    assert load_task("gsm8k", "test", data_dir=data_dir, limit=10**6) == every


@pytest.mark.parametrize("size", ["fewer_than_subjects", "one_per_subject", "more_than_subjects"])
def test_mmlu_limit_is_stratified_by_subject(loaded, data_dir, size):
    n_subjects = len({example.subject for example in loaded["mmlu", "test"]})  # 57 real, 3 in the fixtures
    limit = {"fewer_than_subjects": max(2, n_subjects // 5), "one_per_subject": n_subjects,
             "more_than_subjects": 2 * n_subjects + 1}[size]
    assert limit < len(loaded["mmlu", "test"])
    examples = load_task("mmlu", "test", data_dir=data_dir, limit=limit, seed=3)
    assert len(examples) == limit and len({example.subject for example in examples}) == min(limit, n_subjects)
    every = loaded["mmlu", "test"]
    position = {example.id: index for index, example in enumerate(every)}
    assert [position[example.id] for example in examples] == sorted(position[example.id] for example in examples)

    def drawn(seed):  # what load_task draws, without parsing the files again
        return sample_stratified(every, limit, seed, group_of=lambda example: example.subject)

    assert examples == drawn(3) and examples != drawn(4)


# --- the dev-id guard (synthetic data) ----------------------------------------------------------------------


def test_guard_rejects_a_train_example_carrying_a_dev_rationale():
    leaked = Example(id="d" * 32, task="commonsense_qa", question="q", answer="A", rationale="from dev")
    with pytest.raises(RuntimeError, match="forbidden"):
        commonsense_qa.ensure_no_rationales_from([leaked], {"d" * 32})
    attached = commonsense_qa.attach_rationales([leaked], {"d" * 32: "from dev"}, forbidden_ids={"d" * 32})
    assert attached[0].rationale is None


def test_ecqa_rows_of_dev_ids_are_dropped_from_train_even_if_train_repeats_them(tmp_path):
    root = tmp_path / "commonsense_qa"
    shared, train_only = "a" * 32, "b" * 32
    write_jsonl(root / "train_rand_split.jsonl", [csqa_record(shared), csqa_record(train_only)])
    write_jsonl(root / "dev_rand_split.jsonl", [csqa_record(shared)])
    ecqa = root / "rationales" / "ecqa"
    ecqa.mkdir(parents=True)
    header = ",".join(commonsense_qa.ECQA_HEADER)
    for name, qid in zip(commonsense_qa.ECQA_FILES, [shared, train_only]):
        (ecqa / name).write_text(f"{header}\n0,{qid},c,q?,a,b,c,d,e,a,pos,neg,explains {qid[0]}\n")
    train = load_task("commonsense_qa", "train", data_dir=tmp_path, rationale_source="ecqa")
    assert [example.rationale for example in train] == [None, "explains b"]
    dev = load_task("commonsense_qa", "dev", data_dir=tmp_path, rationale_source="ecqa")
    assert [example.rationale for example in dev] == ["explains a"]


# --- malformed files -----------------------------------------------------------------------------------------


GOOD_GSM8K = {"question": "q", "answer": "1 + 1 = <<1+1=2>>2\n#### 2"}


@pytest.mark.parametrize(
    "third_line, problem",
    [
        ("{not json", "line 3: invalid JSON"),
        (json.dumps({"question": "q", "answer": "no final answer"}), "line 3: answer has no '####'"),
        (json.dumps({"question": "q", "answer": "x\n#### about 3"}), "line 3: final answer 'about 3' is not a number"),
        (json.dumps({"question": "q"}), "line 3: missing key 'answer'"),
        (json.dumps({"question": 7, "answer": "#### 1"}), "line 3: 'question' should be str, got int"),
        ("[]", "line 3: expected a JSON object"),
    ],
)
def test_malformed_gsm8k_names_file_and_line(tmp_path, third_line, problem):
    path = write_jsonl(tmp_path / "gsm8k" / "train.jsonl", [GOOD_GSM8K, GOOD_GSM8K])
    path.write_text(path.read_text() + third_line + "\n")
    with pytest.raises(DataFormatError, match=f"train.jsonl, {problem}"):
        load_task("gsm8k", "train", data_dir=tmp_path)


def test_malformed_csqa_names_file_and_line(tmp_path):
    write_jsonl(tmp_path / "commonsense_qa" / "dev_rand_split.jsonl", [csqa_record("a" * 32, answer="F")])
    with pytest.raises(DataFormatError, match="dev_rand_split.jsonl, line 1: answerKey 'F'"):
        load_task("commonsense_qa", "dev", data_dir=tmp_path)


@pytest.mark.parametrize(
    "bad_row, problem",
    [("q,a,b,c,A", "expected 6 columns, got 5"), ("q,a,b,c,d,E", "answer 'E' is not one of A, B, C, D")],
)
def test_malformed_mmlu_names_file_and_line(tmp_path, bad_row, problem):
    folder = tmp_path / "mmlu" / "test"
    folder.mkdir(parents=True)
    (folder / "anatomy_test.csv").write_text(f'"two\r\nlines",a,b,c,d,A\r\n{bad_row}\r\n', newline="")
    with pytest.raises(DataFormatError, match=f"anatomy_test.csv, line 3: {problem}"):
        load_task("mmlu", "test", data_dir=tmp_path)


# --- missing data and the Hub ----------------------------------------------------------------------------


def test_missing_data_dir_or_file_names_the_path(tmp_path, no_data_env, monkeypatch):
    with pytest.raises(DataUnavailableError, match=f"{re.escape(str(tmp_path / 'absent'))}.*does not exist"):
        load_task("gsm8k", "test", data_dir=tmp_path / "absent")
    monkeypatch.setenv("SAIE_DATA_DIR", str(tmp_path))
    with pytest.raises(DataUnavailableError, match=re.escape(f"missing data file {tmp_path / 'gsm8k' / 'test.jsonl'}")):
        load_task("gsm8k", "test")
    with pytest.raises(DataUnavailableError, match="no MMLU files"):
        load_task("mmlu", "test")


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_offline_hub_without_data_dir_explains_how_to_point_at_data(no_data_env, monkeypatch, variable):
    for other in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):  # the message names the first one set
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(variable, "1")
    monkeypatch.setitem(sys.modules, "datasets", None)  # importing datasets would fail: it must not be reached
    with pytest.raises(DataUnavailableError, match=f"{variable}=1.*SAIE_DATA_DIR.*gsm8k/.*commonsense_qa/.*mmlu/"):
        load_task("gsm8k", "test")


def fake_datasets(tables):
    """A stand-in `datasets` module serving {(hub_id, config, split): rows}, or raising ConnectionError."""

    def load_dataset(hub_id, config, split):
        if tables is None:
            raise ConnectionError(f"Couldn't reach '{hub_id}' on the Hub")
        return tables[hub_id, config, split]

    return SimpleNamespace(load_dataset=load_dataset)


@pytest.fixture
def online_hub(no_data_env, monkeypatch):
    for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    return lambda tables: monkeypatch.setitem(sys.modules, "datasets", fake_datasets(tables))


def test_unreachable_hub_raises_data_unavailable(online_hub):
    online_hub(None)
    with pytest.raises(DataUnavailableError, match="unreachable.*SAIE_DATA_DIR"):
        load_task("gsm8k", "test")


def csqa_hub_row(qid):
    choices = {"label": list("ABCDE"), "text": [f"t{label}" for label in "ABCDE"]}
    return {"id": qid, "question": "q?", "question_concept": "c", "choices": choices, "answerKey": "B"}


def test_hub_rows_become_examples(online_hub):
    mmlu_row = {"question": "q", "subject": "virology", "choices": ["a", "b", "c", "d"], "answer": 3}
    cos_e = [{"id": qid, "abstractive_explanation": f"why {qid[0]} "} for qid in ("a" * 32, "b" * 32)]
    online_hub(
        {
            ("cais/mmlu", "all", "validation"): [mmlu_row, {**mmlu_row, "subject": "anatomy"}, mmlu_row],
            ("tau/commonsense_qa", None, "train"): [csqa_hub_row("a" * 32), csqa_hub_row("b" * 32)],
            ("tau/commonsense_qa", None, "validation"): [csqa_hub_row("a" * 32)],
            ("Salesforce/cos_e", "v1.11", "train"): cos_e,
        }
    )
    virology = load_task("mmlu", "val", subjects=["virology"])
    assert [example.id for example in virology] == ["mmlu-val-virology-0", "mmlu-val-virology-1"]
    assert virology[0].answer == "D" and virology[0].choices == ("a", "b", "c", "d")
    train = load_task("commonsense_qa", "train")
    assert [example.rationale for example in train] == [None, "why b"]  # dev id "a..." is never a train rationale
    with pytest.raises(DataUnavailableError, match="ecqa rationales are not on the Hub"):
        load_task("commonsense_qa", "train", rationale_source="ecqa")


def test_hub_row_converters():
    example = gsm8k.example_from_record(GOOD_GSM8K, "test", 4, HERE)
    assert (example.id, example.answer, example.rationale) == ("gsm8k-test-4", "2", "1 + 1 = 2")
    example = commonsense_qa.example_from_hub_row(csqa_hub_row("c" * 32), HERE)
    assert (example.id, example.question, example.answer, example.subject) == ("c" * 32, "q?", "B", "c")
    assert example.choices == ("tA", "tB", "tC", "tD", "tE")
    assert commonsense_qa.cos_e_from_hub_row({"id": "x", "abstractive_explanation": "y"}, HERE) == ("x", "y")
    row = {"question": "q", "subject": "anatomy", "choices": ["a", "b", "c", "d"], "answer": 0}
    assert mmlu.example_from_hub_row(row, "test", 2, HERE).id == "mmlu-test-anatomy-2"
    with pytest.raises(DataFormatError, match="test, line 1: answer 4 should be an index 0-3"):
        mmlu.example_from_hub_row({**row, "answer": 4}, "test", 0, HERE)


def test_importing_saie_lib_data_stays_light():
    code = "import sys, saie_lib.data; print(sorted({'torch', 'datasets', 'transformers'} & set(sys.modules)))"
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo)
    assert result.stdout.strip() == "[]"
