"""The robustness experiment over several training seeds: one challenge run per seed and condition with that seed's
adapters (the same items for every seed, the first seed's runs keeping their identity), and its report: tests per
seed and pooled over item × seed pairs under one Holm correction, the table pooled over seeds, a single-seed
marker's report unchanged."""

import csv
import dataclasses
import json
from pathlib import Path

import pytest
from conftest import REPO

from saie_lib import robustness_report
from saie_lib.challenge import task_metrics
from saie_lib.reporting import mde_text
from saie_lib.stats import holm

TASK = "commonsense_qa"
ITEMS = 12


def _answer(value):
    return {"parsed": value, "parsed_strict": value, "output": ""}


def _rows(switched: set[int]) -> list[dict]:
    """ITEMS items, every first answer the gold B; under the disagreeing remark the items in `switched` move to the
    challenger C, the rest keep B; under the agreeing remark every item keeps B."""
    return [{"id": f"q{i}", "gold": "B", "challenger": "C", "first": _answer("B"),
             "disagree": _answer("C" if i in switched else "B"), "agree": _answer("B")} for i in range(ITEMS)]


def _write_run(folder: Path, name: str, rows: list[dict]) -> str:
    run = folder / name
    run.mkdir(parents=True, exist_ok=True)
    (run / f"samples.{TASK}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = {"tasks": {TASK: {**task_metrics(rows), "n": len(rows), "challenge_set": "same-items"}}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    return name


# which items each condition's model switches on, per seed; the base model's run is shared by both seeds
SWITCHED = {0: {"none": set(range(10)), "saie": set()}, 1: {"none": set(range(4, 12)), "saie": {0}}}


def _marker(root: Path, seeds: tuple[int, ...] = (0, 1)) -> dict:
    """A finished robustness experiment of base, none and saie over `seeds` (synthetic run dirs)."""
    folder = root / "runs" / "p" / "robustness"
    base = _write_run(folder, "challenge-base", _rows(set()))
    names = {str(s): {"base": base, **{c: _write_run(folder, f"challenge-{c}-seed{s}", _rows(SWITCHED[s][c]))
                                      for c in ("none", "saie")}} for s in seeds}
    marker = {"experiment": "robustness", "title": "Robustness to remarks", "profile": "p", "task": TASK,
              "kind": robustness_report.KIND, "conditions": names[str(seeds[0])], "seeds": names}
    (folder / "experiment.json").write_text(json.dumps(marker))
    return {**marker, "folder": folder}


def _key(test):
    return test["task"], test["remark"], test["measure"], test["a"], test["b"]


def test_pooled_tests_sum_the_seeds_and_share_one_holm_correction(tmp_path):
    checked = robustness_report.tests(_marker(tmp_path))
    per_scope = 2 * (3 + 2)  # saie vs base and vs none; 3 measures under the disagreeing remark, 2 under agree
    assert len(checked) == 3 * per_scope and {t["seed"] for t in checked} == {"pooled", 0, 1}
    assert [t["p_holm"] for t in checked] == holm([t["p_value"] for t in checked])  # one family: all of them
    pooled = [t for t in checked if t["seed"] == "pooled"]
    for test in pooled:  # a pooled pair is one item in one seed: its counts are the per-seed counts summed
        seeds = [t for t in checked if t["seed"] != "pooled" and _key(t) == _key(test)]
        assert len(seeds) == 2
        assert (test["n"], test["a_only"], test["b_only"]) == tuple(
            sum(t[k] for t in seeds) for k in ("n", "a_only", "b_only"))
    switched = next(t for t in pooled if _key(t) == (TASK, "disagree", "switched_to_challenger", "saie", "none"))
    assert (switched["n"], switched["a_only"], switched["b_only"]) == (24, 1, 18)
    assert (switched["share_a"], switched["share_b"]) == (1 / 24, 18 / 24)
    # 1:18 over 24 pairs resolves after Holm over 30 tests; each seed alone (0:10, 1:8) does not
    assert switched["verdict"] == "none higher"
    resolved = [t for t in checked if t["verdict"] != "not resolved at this n"]
    assert {t["seed"] for t in resolved} == {"pooled"}
    assert {t["measure"] for t in resolved} == {"switched_to_challenger", "kept_correct", "final_correct"}


def test_every_resolved_pooled_test_is_a_sentence_and_each_test_states_its_own_power(tmp_path):
    checked = robustness_report.tests(_marker(tmp_path))
    lines = robustness_report.statements(checked)
    assert lines[0].startswith("Paired tests per seed and pooled over item × seed pairs (exact McNemar, "
                               "Holm–Bonferroni over all 30 tests") and lines[0].endswith("3 resolved.")
    assert any(line.startswith(
        "- commonsense_qa, disagreeing remark, pooled over seeds: **none switched to the challenger's wrong answer "
        "more often than saie** (0.75 vs 0.04 of the 24 item × seed pairs where neither first answer was the "
        "challenger's; 1:18 discordant, p = 7.6e-05") for line in lines)
    assert any(line.startswith("- commonsense_qa, disagreeing remark, pooled over seeds: **saie kept a correct first "
                               "answer more often than none** (0.96 vs 0.25 of the 24 item × seed pairs both answered")
               for line in lines)
    assert any(line.startswith("- Not resolved at this n — commonsense_qa, disagreeing remark, seed 1, switched to "
                               "challenger: saie vs base 0.08 vs 0.00 (n = 12, 1:0") for line in lines)
    power = robustness_report.power_lines(checked)
    pooled = next(line for line in power if "pooled over seeds, switched to challenger" in line)
    assert f"saie vs none n = 24 (79% discordant) {mde_text(24, 19 / 24)}" in pooled
    assert "saie vs base n = 24 (4% discordant) none detectable" in pooled
    seed_0 = next(line for line in power if "remark, seed 0, switched to challenger" in line)
    assert f"saie vs none n = 12 (83% discordant) {mde_text(12, 10 / 12)}" in seed_0
    assert "saie vs base n = 12 (no discordant pair)" in seed_0
    assert len(power) == 3 * 5  # one line per scope and measure


def test_table_pools_the_seeds_and_the_outputs_name_the_seed(tmp_path):
    marker = _marker(tmp_path)
    table = robustness_report.rows(marker)
    none = next(r for r in table if (r["condition"], r["remark"]) == ("none", "disagree"))
    assert (none["seeds"], none["n"], none["kept_of"]) == (2, 24, 24)
    assert (none["switched_to_challenger"], none["kept_correct"]) == (0.75, 0.25)
    assert (none["switched_per_seed"], none["kept_correct_per_seed"]) == ("0.83 / 0.67", "0.17 / 0.33")
    assert none["run"].endswith("challenge-none-seed0 (+1 more seeds)")
    outputs = robustness_report.write_outputs("p", marker, tmp_path)
    with open(outputs["tests_csv"], newline="") as handle:
        assert csv.DictReader(handle).fieldnames[:3] == ["task", "remark", "seed"]
    page = "\n".join(robustness_report.page_lines("p", {"robustness": marker}))
    assert "### Robustness to remarks (commonsense_qa n = 12 items × 2 seeds)" in page
    assert "Seeds: 2 (0, 1)." in page and "at the discordance each test shows" in page


def test_a_single_seed_marker_gives_the_single_seed_report(tmp_path):
    one = robustness_report.tests(_marker(tmp_path / "one", seeds=(0,)))
    two = robustness_report.tests(_marker(tmp_path / "two"))
    assert all("seed" not in t for t in one) and len(one) == 10
    seed_0 = [t for t in two if t["seed"] == 0]
    assert [(_key(t), t["n"], t["a_only"], t["b_only"], t["p_value"]) for t in one] == \
        [(_key(t), t["n"], t["a_only"], t["b_only"], t["p_value"]) for t in seed_0]
    marker = _marker(tmp_path / "one", seeds=(0,))
    assert "seeds" not in robustness_report.rows(marker)[0]
    outputs = robustness_report.write_outputs("p", marker, tmp_path / "one")
    with open(outputs["tests_csv"], newline="") as handle:
        assert tuple(csv.DictReader(handle).fieldnames) == robustness_report.TEST_COLUMNS
    page = "\n".join(robustness_report.page_lines("p", {"robustness": marker}))
    assert "### Robustness to remarks (commonsense_qa n = 12)" in page
    assert "seed" not in page.lower() and "at the discordance each measure's tests show" in page


def test_committed_single_seed_robustness_section_renders_as_committed():
    """cpu-small's committed robustness experiment (one seed): its runs are still the ones the profile implies,
    and its section of the results page is rendered exactly as the committed page has it."""
    from saie_lib.profiles import load_profile
    from saie_lib.reproduce import experiment_finished
    from saie_lib.summary import finished_experiments

    root = REPO / "results"
    if not (root / "runs" / "cpu-small" / "robustness" / "experiment.json").is_file():
        pytest.skip("no committed cpu-small robustness experiment")
    assert experiment_finished(load_profile("cpu-small"), "robustness", results_root=str(root))
    marker = finished_experiments("cpu-small", root)["robustness"]
    section = "\n".join(robustness_report.page_lines("cpu-small", {"robustness": marker}))
    assert section.startswith("### Robustness to remarks (commonsense_qa n = 200)")
    assert section in (root / "README.md").read_text()


def test_cpu_sycophancy_profile():
    from saie_lib.profiles import load_profile

    profile, small = load_profile("cpu-sycophancy"), load_profile("cpu-small")
    assert profile.seeds == (0, 1, 2) and profile.experiments == ("commonsense", "robustness")
    assert profile.conditions == ("base", "none", "placebo", "saie", "saie_mixed")
    challenge = profile.challenge_config()
    assert (challenge.tasks, challenge.limits, challenge.seed) == (("commonsense_qa",), (100,), 0)
    assert dataclasses.replace(challenge, limits=(200,)) == small.challenge_config()  # cpu-small's, on 100 items
    for condition in ("none", "saie"):  # cpu-small's training settings: seed 0 repeats them
        ours, theirs = (p.training_config("commonsense_qa", condition).identity() for p in (profile, small))
        assert ours == theirs


# ---------------------------------------------------------------- the experiment on the tiny model

@pytest.mark.slow  # trains two seeds of two conditions on the tiny model, then challenges them
def test_every_seed_challenges_its_own_adapters_on_the_same_items(data_dir, tmp_path):
    from saie_lib import artifacts
    from saie_lib.experiment_registry import get_experiment
    from saie_lib.experiments import challenge_configs, read_marker, run_robustness_experiment, run_training_experiment
    from saie_lib.profiles import load_profile
    from saie_lib.reproduce import experiment_finished
    from saie_lib.stages.challenge import challenge_run_dir

    tiny = load_profile("tiny")
    profile = dataclasses.replace(tiny, seeds=(0, 1), conditions=("base", "none", "saie"), robustness={
        **tiny.robustness, "tasks": [TASK], "limits": [3], "max_new_tokens": [6]})
    one_seed = dataclasses.replace(profile, seeds=(0,))
    locations = {"data_dir": str(data_dir), "results_root": str(tmp_path)}
    commonsense = get_experiment("commonsense")
    run_training_experiment(one_seed, commonsense, progress=False, **locations)
    with pytest.raises(RuntimeError, match=r"have not finished: \{'seed 1, commonsense_qa': \['none', 'saie'\]\}"):
        challenge_configs(profile, **locations)
    run_training_experiment(profile, commonsense, progress=False, **locations)  # seed 0 reused, seed 1 trained
    trained = read_marker("tiny", "commonsense", tmp_path)["seeds"]

    configs = challenge_configs(profile, **locations)
    assert configs[0] == challenge_configs(one_seed, **locations)[0]  # the first seed's identity is unchanged
    assert configs[0]["base"] == configs[1]["base"]  # the same items, no adapter: one run for both seeds
    assert {c.seed for by_condition in configs.values() for c in by_condition.values()} == {0}
    runs = run_robustness_experiment(profile, progress=False, **locations)
    marker = read_marker("tiny", "robustness", tmp_path)
    assert runs == {c: tmp_path / "runs" / "tiny" / "robustness" / n for c, n in marker["conditions"].items()}
    assert marker["conditions"] == marker["seeds"]["0"] and set(marker["seeds"]) == {"0", "1"}
    assert marker["seeds"]["0"]["base"] == marker["seeds"]["1"]["base"]
    hashes = set()
    for seed, names in marker["seeds"].items():
        for condition in ("none", "saie"):
            assert names[condition] != marker["seeds"][str(1 - int(seed))][condition]
            metrics = artifacts.read_json(tmp_path / "runs" / "tiny" / "robustness" / names[condition] / "metrics.json")
            assert Path(metrics["tasks"][TASK]["adapter"]).parent.name == trained[seed][condition]  # its own seed's
            hashes.add(metrics["tasks"][TASK]["challenge_set"])
            assert names[condition] == challenge_run_dir(configs[int(seed)][condition]).name
    assert len(hashes) == 1  # every seed met the same challenge items
    assert experiment_finished(profile, "robustness", **locations)
    assert not experiment_finished(dataclasses.replace(profile, seeds=(0, 1, 2)), "robustness", **locations)

    checked = robustness_report.tests({**marker, "folder": tmp_path / "runs" / "tiny" / "robustness"})
    assert len(checked) == 3 * 2 * (3 + 2)  # pooled and two seeds; saie vs base and none; five measures
    for test in (t for t in checked if t["seed"] == "pooled"):
        seeds = [t for t in checked if t["seed"] != "pooled" and _key(t) == _key(test)]
        assert len(seeds) == 2 and (test["n"], test["a_only"], test["b_only"]) == tuple(
            sum(t[k] for t in seeds) for k in ("n", "a_only", "b_only"))
        assert test["n"] == 2 * 3 or test["measure"] != "final_correct"  # every item of both seeds
    (tmp_path / "runs" / "tiny" / "robustness" / marker["seeds"]["1"]["saie"] / "metrics.json").unlink()
    assert not experiment_finished(profile, "robustness", **locations)
