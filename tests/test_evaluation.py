import pytest

from saie_lib import generation
from saie_lib.artifacts import read_jsonl
from saie_lib.evaluation import compute_metrics, evaluate, score_sample
from saie_lib.stats import wilson_interval
from saie_lib.tasks import Example

EX = Example(id="e1", task="commonsense_qa", question="q", choices=("a", "b", "c", "d", "e"), answer="B")


def test_wilson_interval_known_values():
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0


@pytest.mark.parametrize("output, parsed, strict, correct", [
    ("Thinking... The answer is B.", "B", "B", True),
    ("I pick (B)", "B", None, True),
    ("The answer is C.", "C", "C", False),
    ("no idea", None, None, False),
])
def test_score_sample(output, parsed, strict, correct):
    row = score_sample(EX, "prompt", output)
    assert (row["parsed"], row["parsed_strict"], row["correct"]) == (parsed, strict, correct)
    assert row["correct_strict"] == (strict == "B")


def test_invalid_answers_count_as_wrong_and_are_reported():
    rows = [score_sample(EX, "p", o) for o in ("The answer is B.", "nothing", "nothing", "(B)")]
    metrics = compute_metrics(rows)
    assert metrics["n"] == 4
    assert metrics["accuracy"] == 0.5 and metrics["accuracy_strict"] == 0.25
    assert metrics["invalid_rate"] == 0.5 and metrics["invalid_rate_strict"] == 0.75
    assert metrics["ci95"][0] < 0.5 < metrics["ci95"][1]


def test_evaluate_resumes_from_sample_log(tiny, tmp_path, monkeypatch):
    model, tokenizer, _ = tiny
    examples = [Example(id=f"g{i}", task="gsm8k", question=f"What is {i} + 1?", answer=str(i + 1)) for i in range(5)]
    log = tmp_path / "samples.partial.jsonl"
    metrics, rows = evaluate(model, tokenizer, examples[:3], batch_size=2, max_new_tokens=6, sample_log=log,
                             progress=False)
    assert metrics["n"] == 3 and len(log.read_text().splitlines()) == 3
    with log.open("a") as handle:
        handle.write('{"id": "g3", "outp')  # killed mid-write
    seen = []
    original = generation.generate_batch

    def counting_generate(model, tokenizer, prompts, decoding):
        seen.append(len(prompts))
        return original(model, tokenizer, prompts, decoding)

    monkeypatch.setattr(generation, "generate_batch", counting_generate)
    metrics, rows = evaluate(model, tokenizer, examples, batch_size=2, max_new_tokens=6, sample_log=log,
                             progress=False)
    assert sum(seen) == 2  # only the two new examples were generated
    assert [r["id"] for r in rows] == [e.id for e in examples] and metrics["n"] == 5
    assert len(read_jsonl(log)) == 5  # the torn line is gone, not buried mid-file


def test_evaluate_reports_rouge_of_the_reasoning_where_there_is_a_reference(tiny):
    model, tokenizer, _ = tiny
    examples = [Example(id="a", task="gsm8k", question="What is 1 + 1?", answer="2", rationale="one plus one is two"),
                Example(id="b", task="gsm8k", question="What is 2 + 1?", answer="3")]
    metrics, rows = evaluate(model, tokenizer, examples, batch_size=2, max_new_tokens=6, progress=False)
    rouge = metrics["rouge"]
    assert (rouge["n"], rouge["skipped"]) == (1, 1)
    assert 0.0 <= rouge["rougeL"] <= 1.0


def test_reasoning_rouge_drops_the_answer_line():
    from saie_lib.stats import reasoning_rouge

    same = reasoning_rouge(["one plus one is two\nThe answer is 2."], ["one plus one is two"])
    other = reasoning_rouge(["The answer is 2."], ["one plus one is two"])
    assert same["rougeL"] == 1.0 and other["rougeL"] == 0.0
