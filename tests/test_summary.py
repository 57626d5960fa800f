"""Paired comparisons and verdicts of the summary step."""

import pytest

from saie_lib.stats import mcnemar_exact
from saie_lib.summary import paired, verdict


@pytest.mark.parametrize("a_only, b_only, expected", [
    (0, 0, 1.0), (0, 5, 0.0625), (6, 0, 0.03125), (3, 3, 1.0), (1, 9, 0.021484375),
])
def test_mcnemar_exact_matches_the_binomial_test(a_only, b_only, expected):
    assert mcnemar_exact(a_only, b_only) == pytest.approx(expected)


def test_paired_counts_discordant_examples_and_gives_a_verdict():
    a = {str(i): i < 8 for i in range(10)}  # 8 right
    b = {str(i): i < 1 for i in range(10)}  # 1 right, a subset of a's
    result = paired(a, b)
    assert (result["a_only"], result["b_only"], result["accuracy_a"], result["accuracy_b"]) == (7, 0, 0.8, 0.1)
    assert verdict(result) == "holds"
    assert verdict(paired(b, a)) == "reversed"
    assert verdict(paired(a, a)) == "not resolved at this n"


def test_paired_refuses_different_examples():
    with pytest.raises(ValueError, match="same examples"):
        paired({"1": True}, {"2": True})


def test_min_discordant_is_the_first_count_that_reaches_significance():
    from saie_lib.stats import ALPHA, min_discordant

    k = min_discordant()
    assert mcnemar_exact(k, 0) < ALPHA <= mcnemar_exact(k - 1, 0)


# ---------------------------------------------------------------- several seeds, Holm, ROUGE, letters (synthetic runs)

import json  # noqa: E402
from pathlib import Path  # noqa: E402

from saie_lib.stats import holm, wilcoxon_signed_rank  # noqa: E402

CONDS = ("base", "none", "supportive", "adversarial", "saie")


def _write_run(folder: Path, condition: str, seed: int, correct: list[bool], letters: list[str | None],
               rouge: list[float] | None) -> str:
    name = f"commonsense_qa-{condition}-s{seed}"
    run = folder / name
    run.mkdir(parents=True)
    ids = [f"q{i}" for i in range(len(correct))]
    gold = ["C"] * len(correct)
    samples = [{"id": i, "output": "x", "parsed": p, "parsed_strict": p, "gold": g, "correct": c,
                "correct_strict": c, "choices": list("abcde")} for i, p, g, c in zip(ids, letters, gold, correct)]
    (run / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    n = len(correct)
    rouge_metrics = {"rouge1": None, "rouge2": None, "rougeL": None, "n": 0, "skipped": n}
    if rouge is not None:
        rouge_metrics = {"rouge1": sum(rouge) / n, "rouge2": 0.0, "rougeL": sum(rouge) / n, "n": n, "skipped": 0,
                         "per_example": {i: {"rouge1": r, "rouge2": 0.0, "rougeL": r} for i, r in zip(ids, rouge)}}
    metrics = {"task": "commonsense_qa", "split": "validation", "model": "m", "model_source": "hub", "n": n,
               "accuracy": sum(correct) / n, "ci95": [0.0, 1.0], "accuracy_strict": sum(correct) / n,
               "invalid_rate": letters.count(None) / n, "invalid_rate_strict": letters.count(None) / n,
               "seed": seed, "rouge": rouge_metrics, "steps": 3,
               **({} if condition == "base" else {"remark_policy": condition})}
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "config.json").write_text(json.dumps({"identity": {}, "config": {"seed": seed}}))
    return name


def _study(root: Path, outcomes: dict[int, dict[str, list[bool]]], *, rouge: bool = True,
           marker_seeds: bool = True) -> Path:
    """A finished 'commonsense' experiment of profile 'p' with the given per-seed correctness per condition."""
    folder = root / "runs" / "p" / "commonsense"
    names = {}
    for seed, by_condition in outcomes.items():
        names[str(seed)] = {}
        for c in CONDS:
            correct = by_condition[c]
            letters = ["C" if ok else ("A" if c == "none" else None) for ok in correct]
            scores = [0.5 if ok else 0.1 for ok in correct] if rouge else None
            names[str(seed)][c] = _write_run(folder, c, seed, correct, letters, scores)
    marker = {"experiment": "commonsense", "title": "CSQA", "profile": "p", "task": "commonsense_qa",
              "kind": "training", "conditions": names[str(next(iter(outcomes)))]}
    if marker_seeds:
        marker["seeds"] = names
    (folder / "experiment.json").write_text(json.dumps(marker))
    return folder


def _outcomes() -> dict[str, list[bool]]:
    saie = [True] * 8 + [False] * 2
    none = [True] * 2 + [False] * 8  # saie right, none wrong on 6 per seed
    return {"base": [False] * 10, "none": none, "supportive": saie, "adversarial": saie[::-1], "saie": saie}


def test_findings_pool_seeds_and_correct_with_holm(tmp_path):
    from saie_lib.summary import findings

    _study(tmp_path, {0: _outcomes(), 1: _outcomes()})
    checked = {f["claim"]: f for f in findings("p", tmp_path)}
    saie_none = checked["SAIE beats conventional fine-tuning"]
    assert (saie_none["seeds"], saie_none["n"], saie_none["a_only"], saie_none["b_only"]) == (2, 20, 12, 0)
    assert saie_none["p_value"] == mcnemar_exact(12, 0)
    family = [f for f in checked.values()]
    assert len(family) == 5  # four accuracy claims and the ROUGE claim, one Holm family
    assert [f["p_holm"] for f in family] == pytest.approx(holm([f["p_value"] for f in family]))
    assert saie_none["verdict"] == "holds"  # 12:0 over two seeds survives the correction; 6:0 alone does not


def test_holm_can_turn_a_raw_win_into_not_resolved(tmp_path):
    from saie_lib.summary import findings

    _study(tmp_path, {0: _outcomes()}, rouge=False)  # 6:0 -> p = 0.031, four claims
    row = next(f for f in findings("p", tmp_path) if f["claim"] == "SAIE beats conventional fine-tuning")
    assert row["p_value"] < 0.05 <= row["p_holm"]
    assert row["verdict"] == "not resolved at this n"


def test_rouge_claim_is_a_paired_wilcoxon_test_over_seeds(tmp_path):
    from saie_lib.summary import findings, rouge_findings

    _study(tmp_path, {0: _outcomes(), 1: _outcomes()})
    row = next(f for f in findings("p", tmp_path) if f["measure"] == "ROUGE-L")
    saie = [0.5] * 8 + [0.1] * 2
    none = [0.5] * 2 + [0.1] * 8
    expected = wilcoxon_signed_rank(saie * 2, none * 2)
    assert (row["n"], row["a_only"], row["b_only"], row["p_value"]) == (20, 12, 0, expected["p_value"])
    assert rouge_findings("p", tmp_path)[0]["tested"] is True


def test_without_per_example_rouge_the_claim_is_descriptive_only(tmp_path):
    from saie_lib.summary import findings, rouge_findings

    folder = _study(tmp_path, {0: _outcomes()})
    for metrics_path in folder.glob("*/metrics.json"):
        metrics = json.loads(metrics_path.read_text())
        metrics["rouge"].pop("per_example")
        metrics_path.write_text(json.dumps(metrics))
    assert not [f for f in findings("p", tmp_path) if f["measure"] == "ROUGE-L"]
    assert rouge_findings("p", tmp_path)[0]["tested"] is False


def test_condition_rows_pool_seeds(tmp_path):
    from saie_lib.stats import wilson_interval
    from saie_lib.summary import condition_rows, finished_experiments

    first, second = _outcomes(), _outcomes()
    second["none"] = [True] * 6 + [False] * 4
    _study(tmp_path, {0: first, 1: second})
    rows = {r["condition"]: r for r in condition_rows(finished_experiments("p", tmp_path)["commonsense"])}
    none = rows["none"]
    assert (none["n"], none["seeds"], none["accuracy"], none["per_seed"]) == (20, 2, 0.4, "0.200 / 0.600")
    assert (none["ci95_low"], none["ci95_high"]) == pytest.approx(wilson_interval(8, 20))
    assert none["invalid_rate"] == 0.0 and rows["base"]["invalid_rate"] == 1.0
    assert none["run"].endswith("(+1 more seeds)")


def test_a_marker_without_seeds_reads_as_its_runs_seed(tmp_path):
    from saie_lib.experiments import marker_seed_run_dirs

    folder = _study(tmp_path, {4: _outcomes()}, marker_seeds=False)
    marker = json.loads((folder / "experiment.json").read_text())
    runs = marker_seed_run_dirs(marker, folder)
    assert list(runs) == [4] and runs[4]["saie"] == folder / "commonsense_qa-saie-s4"


def test_committed_single_seed_markers_still_read():
    from saie_lib.experiments import marker_run_dirs, marker_seed_run_dirs

    folder = Path(__file__).resolve().parents[1] / "results" / "runs" / "cpu-small" / "commonsense"
    if not (folder / "experiment.json").is_file():
        pytest.skip("no committed cpu-small commonsense experiment")
    marker = json.loads((folder / "experiment.json").read_text())
    assert marker_seed_run_dirs(marker, folder) == {0: marker_run_dirs(marker, folder)}


def test_letter_distribution_counts_and_figure(tmp_path):
    from saie_lib.plotting import plot_letter_distribution
    from saie_lib.summary import letter_distributions

    _study(tmp_path, {0: _outcomes(), 1: _outcomes()})
    table = letter_distributions("p", tmp_path)["commonsense_qa"]
    assert list(table) == [*CONDS, "gold"]
    assert table["none"] == {"A": 16, "B": 0, "C": 4, "D": 0, "E": 0, "invalid": 0}
    assert table["base"]["invalid"] == 20 and table["gold"]["C"] == 20
    path = plot_letter_distribution({"commonsense_qa": table}, "letters", results_root=tmp_path)
    assert path == tmp_path / "figures" / "letters.png" and path.stat().st_size > 1000


def test_letters_outside_the_task_labels_are_refused(tmp_path):
    from saie_lib.summary import letter_distributions

    folder = _study(tmp_path, {0: _outcomes()})
    samples = folder / "commonsense_qa-saie-s0" / "samples.jsonl"
    samples.write_text(samples.read_text().replace('"parsed": "C"', '"parsed": "Z"', 1))
    with pytest.raises(ValueError, match="Z"):
        letter_distributions("p", tmp_path)


def test_power_and_discordance_sentences_are_computed():
    from saie_lib.reporting import discordance_note, power_line
    from saie_lib.stats import min_detectable_difference

    checked = [{"measure": "accuracy", "n": 30, "a_only": 5, "b_only": 1},
               {"measure": "accuracy", "n": 30, "a_only": 2, "b_only": 4}]
    line = power_line([30, 30], checked)
    assert f"{min_detectable_difference(30):.2f} at n = 30" in line and "20% of examples" in line
    note = discordance_note(checked)
    assert "with 6 discordant examples" in note and "6:0 is the most even split" in note


def test_inference_rows_show_strict_accuracy_when_recorded(tmp_path):
    from saie_lib.reporting import inference_rows

    final = {"n": 10, "accuracy": 0.4, "ci95": [0.1, 0.7], "invalid_rate": 0.1}
    settings = {"individual": {"final": final, "final_strict": {**final, "accuracy": 0.2, "invalid_rate": 0.5},
                               "generations_per_example": 1.0, "rouge": {"rouge1": None, "rouge2": None,
                                                                         "rougeL": None}},
                "self_discussion": {"final": final, "generations_per_example": 3.0,
                                    "rouge": {"rouge1": None, "rouge2": None, "rougeL": None}}}
    (tmp_path / "metrics.json").write_text(json.dumps({"task": "commonsense_qa", "label": "saie",
                                                      "settings": settings}))
    rows = {r["setting"]: r for r in inference_rows([tmp_path])}
    assert (rows["individual"]["accuracy_strict"], rows["individual"]["invalid_rate_strict"]) == (0.2, 0.5)
    assert rows["self_discussion"]["accuracy_strict"] is None  # recorded before rows kept the strict parse


def test_profiles_table_states_seeds_and_the_mde_of_every_profile(tmp_path):
    from saie_lib.profiles import available_profiles, load_profile
    from saie_lib.results_page import profiles_table
    from saie_lib.stats import min_detectable_difference

    text = profiles_table(tmp_path).read_text()
    seeds_row = next(line for line in text.splitlines() if line.startswith("| seeds |"))
    mde_row = next(line for line in text.splitlines() if line.startswith("| MDE at 80% power, training"))
    assert seeds_row.count("|") == len(available_profiles()) + 2 and "2 (0, 1)" in seeds_row
    cpu = load_profile("cpu-small").training_config("commonsense_qa", "saie").eval_limit
    assert f"{min_detectable_difference(cpu):.2f} (n = {cpu})" in mde_row
