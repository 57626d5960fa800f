"""The scripted partner (`partner: scripted`): remarks that hold their stance by construction, checked by the stance
checker on every learner turn the committed transcripts hold, and never reading the gold answer."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest

from saie_lib.artifacts import read_json, read_jsonl
from saie_lib.conditions import SCRIPTED_CONDITIONS, condition_fields, condition_name
from saie_lib.config import TrainConfig
from saie_lib.parsing import stated_answer
from saie_lib.partners import PartnerError, Sampling
from saie_lib.partners.scripted import ScriptedPartner, scripted_remark
from saie_lib.stance import check_stance
from saie_lib.tasks import Example

RUNS = Path(__file__).resolve().parents[1] / "results" / "runs"


def committed_turns():
    """(example, response) for every distinct learner turn and revision of the committed training transcripts,
    and every evaluation output of the committed training experiments."""
    seen, turns = set(), []
    paths = sorted(RUNS.glob("**/transcripts.jsonl")) + sorted(RUNS.glob("cpu-*/[cm]*/*/samples.jsonl"))
    for path in paths:
        task = read_json(path.parent / "metrics.json")["task"]
        for row in read_jsonl(path):
            for text in (row.get("learner"), row.get("revision"), row.get("output")):
                if text is not None and (task, row["id"], text) not in seen:
                    seen.add((task, row["id"], text))
                    example = Example(id=row["id"], task=task, question="?", answer=row["gold"],
                                      choices=tuple(row.get("choices") or ()))
                    turns.append((example, text))
    return turns


def test_every_scripted_remark_holds_its_stance_by_the_checker():
    """Fidelity 1.0 by construction, as the checker reads it, on every committed learner turn (answered or not)."""
    turns = committed_turns()
    assert len(turns) > 700
    answered = Counter()
    for example, response in turns:
        answer = stated_answer(example.task, response, choices=example.choices)
        answered[answer is not None] += 1
        for stance in ("supportive", "adversarial"):
            remark = scripted_remark(example, response, stance, seed=0)
            check = check_stance(example.task, remark, answer, example.choices, learner_text=response)
            assert check.holds(stance), (stance, remark, answer, check.reason)
    assert answered[True] > 100 and answered[False] > 50  # both categories of fidelity are exercised


def _example(task="commonsense_qa", answer="B"):
    choices = ("bank", "library", "water fountain", "park", "continent") if task == "commonsense_qa" else ()
    return Example(id="q1", task=task, question="Where?", answer=answer, choices=choices)


def test_remarks_restate_or_dispute_the_learners_answer():
    example = _example()
    assert scripted_remark(example, "The answer is (C).", "supportive") == (
        "Your answer, (C) water fountain, is right: the reasoning that leads to it holds. The answer is (C).")
    disputed = scripted_remark(example, "The answer is (C).", "adversarial")
    assert disputed.startswith("Your answer, (C) water fountain, is wrong") and "The answer is (C)" not in disputed
    number = scripted_remark(_example("gsm8k", "7"), "So 8 * 2 = 16 barrels.\nThe answer is 16.", "adversarial")
    assert "the step 8 * 2 = 16 is a mistake" in number and "The answer is 16." not in number


def test_the_gold_answer_is_never_read():
    for task, golds in (("commonsense_qa", "ABCDE"), ("gsm8k", ("3", "16", "17"))):
        response = "The answer is (C)." if task == "commonsense_qa" else "8 * 2 = 16.\nThe answer is 16."
        remarks = {scripted_remark(_example(task, g), response, s, seed=3) for g in golds
                   for s in ("adversarial",)}
        assert len(remarks) == 1  # the same remark whatever the gold


def test_argued_options_are_drawn_by_seed_and_hit_the_gold_at_chance():
    """Over many learners that answered wrong, the option argued for is the gold in about 1 of the 4 others."""
    argued = Counter()
    for i in range(2000):
        example = dataclasses.replace(_example(answer="B"), id=f"q{i}")
        remark = scripted_remark(example, "The answer is (C).", "adversarial", seed=1)
        argued[remark.rsplit("(", 1)[1][0]] += 1
    assert set(argued) == {"A", "B", "D", "E"}
    assert abs(argued["B"] / 2000 - 0.25) < 0.04  # binomial sd at n = 2000: 0.0097
    again = scripted_remark(_example(), "The answer is (C).", "adversarial", seed=1)
    assert again == scripted_remark(_example(), "The answer is (C).", "adversarial", seed=1)  # fixed by seed


def test_partner_interface():
    partner = ScriptedPartner(seed=0)
    replies = partner.remarks([_example()], ["The answer is (C)."], ["supportive"])
    assert partner.model_id == "scripted:v1" and replies[0].text.endswith("The answer is (C).")
    assert (replies[0].prompt_tokens, replies[0].completion_tokens, partner.calls_made) == (0, 0, 0)
    with pytest.raises(PartnerError, match="not from chat messages"):
        partner.chat([[{"role": "user", "content": "x"}]], Sampling())


def test_the_scripted_family_of_conditions():
    assert SCRIPTED_CONDITIONS == ("supportive_scripted", "adversarial_scripted", "saie_scripted")
    for condition in SCRIPTED_CONDITIONS:
        fields = condition_fields(condition)
        cfg = TrainConfig(**fields)
        assert condition_name(cfg.remark_policy, cfg.update_target, cfg.partner) == condition
    identity = TrainConfig(partner="scripted", stance_retries=2).identity()
    assert identity["partner_script"] == "1" and "stance_retries" not in identity  # a script is never re-asked
    assert condition_name("none", partner="scripted") == "none"


@pytest.mark.slow
def test_cpu_stance_profile_on_the_tiny_model(data_dir, tmp_path):
    """cpu-stance with the tiny model's settings (its conditions narrowed to the paper's comparison and scripted
    SAIE, which meets both stances, to keep the test short): the scripted run makes no partner call and every
    remark holds its stance."""
    from saie_lib.experiment_registry import get_experiment
    from saie_lib.experiments import run_training_experiment
    from saie_lib.profiles import load_profile

    stance, tiny = load_profile("cpu-stance"), load_profile("tiny")
    assert set(SCRIPTED_CONDITIONS) < set(stance.conditions) and {"supportive", "adversarial"} < set(stance.conditions)
    profile = dataclasses.replace(stance, train=tiny.train, tasks={}, seeds=(0,),
                                  conditions=("base", "none", "saie", "saie_scripted"))
    runs = run_training_experiment(profile, get_experiment("commonsense"), progress=False, data_dir=str(data_dir),
                                   results_root=str(tmp_path), remark_cache=str(tmp_path / "remarks.sqlite"))
    assert list(runs) == ["base", "none", "saie", "saie_scripted"]
    for condition in ("saie_scripted",):
        metrics = read_json(runs[condition] / "metrics.json")
        fidelity = metrics["stance_fidelity"]
        assert metrics["condition"] == condition and metrics["partner"]["model_id"] == "scripted:v1"
        assert metrics["partner"]["calls_this_session"] == 0 and fidelity["remarks"] > 0
        assert {fidelity["overall"], fidelity["no_answer_holds"]} - {None} == {1.0}
        rows = read_jsonl(runs[condition] / "transcripts.jsonl")
        assert all(r["stance_holds"] for r in rows) and all(r["partner_tokens"] == 0 for r in rows)
