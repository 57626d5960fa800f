"""Inference-time discussion: round structure, batching, compute-matched budget, and the stage on the tiny model."""

import pytest

from saie_lib import inference
from saie_lib.artifacts import read_json, read_jsonl, run_file
from saie_lib.config import InferenceConfig, from_dict
from saie_lib.generation import Decoding
from saie_lib.inference import Agent
from saie_lib.tasks import Example

EXAMPLES = [Example(id=f"q{i}", task="commonsense_qa", question=f"Question {i}?", answer="A",
                    choices=("a", "b", "c", "d", "e")) for i in range(3)]


@pytest.fixture
def scripted(monkeypatch):
    """Replace generation by a recorder that answers each prompt with a unique, traceable marker."""
    calls = []

    def fake_generate(model, tokenizer, prompts, decoding, batch_size=8, progress=True, desc=""):
        calls.append(list(prompts))
        return [f"<c{len(calls) - 1}p{i}> The answer is B." for i in range(len(prompts))]

    monkeypatch.setattr(inference, "generate", fake_generate)
    return calls


def _agents(tiny, n):
    _, tokenizer, _ = tiny
    sampled = Decoding(max_new_tokens=4, do_sample=True, temperature=0.7)
    return [Agent(f"a{i}", object.__new__(object), tokenizer, sampled) for i in range(n)]


def test_each_agent_sees_exactly_the_others_previous_answers(tiny, scripted):
    agents = _agents(tiny, 3)
    shared = agents[0].model
    agents = [Agent(a.label, shared, a.tokenizer, a.decoding) for a in agents]
    rows = inference.multi_agent(agents, EXAMPLES, rounds=2, seed=0)
    assert len(scripted) == 3  # one batched call per round, across agents and examples
    assert all(len(call) == 3 * 3 for call in scripted)
    by = {(r["round"], r["agent"], r["id"]): r["output"] for r in rows}
    round1_prompts = scripted[1]
    for a in range(3):
        for i, example in enumerate(EXAMPLES):
            prompt = round1_prompts[a * 3 + i]
            others = [by[(0, b, example.id)] for b in range(3) if b != a]
            assert all(o in prompt for o in others)
            listing = prompt.split("responses from other agents")[1]
            assert by[(0, a, example.id)] not in listing  # its own answer is not among the others
            assert not any(by[(1, b, example.id)] in prompt for b in range(3))  # nothing from the future
    assert {r["round"] for r in rows} == {0, 1, 2} and len(rows) == 3 * 3 * 3


def test_self_discussion_revises_its_own_answer(tiny, scripted):
    agent = _agents(tiny, 1)[0]
    rows = inference.self_discussion(agent, EXAMPLES, rounds=2, seed=0)
    assert len(scripted) == 3 and [r["round"] for r in rows] == [0] * 3 + [1] * 3 + [2] * 3
    first = {r["id"]: r["output"] for r in rows if r["round"] == 0}
    assert all(first[e.id] in p and "Review your previous response" in p for e, p in zip(EXAMPLES, scripted[1]))


def test_self_consistency_spends_the_discussion_budget(tiny, scripted):
    cfg = InferenceConfig(agents=3, rounds=2)
    from saie_lib.stages.discuss import run_setting

    agent_model = object()
    discussion = run_setting("multi_agent", cfg, agent_model, tiny[1], EXAMPLES)
    consistency = run_setting("self_consistency", cfg, agent_model, tiny[1], EXAMPLES)
    assert len(discussion) == len(consistency) == 3 * 3 * len(EXAMPLES)
    assert len(scripted[-1]) == 9 * len(EXAMPLES)  # all samples in one batched call


@pytest.mark.parametrize("field, value", [("agents", 1), ("temperature", 0.0), ("settings", ["debate"]),
                                          ("rounds", 0)])
def test_inference_config_rejects_impossible_values(field, value):
    with pytest.raises(ValueError, match=f"'{field}'"):
        from_dict(InferenceConfig, {field: value})


@pytest.mark.slow
def test_inference_stage_on_tiny_model_and_resume(data_dir, tmp_path, monkeypatch):
    from saie_lib.stages import discuss as inference_run

    cfg = from_dict(InferenceConfig, {"model": "tiny-random-smollm2", "device": "cpu", "dtype": "float32",
                                      "limit": 3, "agents": 2, "rounds": 1, "max_new_tokens": 6,
                                      "data_dir": str(data_dir), "results_root": str(tmp_path)})
    out = inference_run.run_inference(cfg, progress=False)
    metrics = read_json(run_file(out, "metrics"))
    assert set(metrics["settings"]) == {"individual", "self_discussion", "multi_agent", "self_consistency",
                                        "partner_discussion"}
    pair = metrics["settings"]["partner_discussion"]
    assert pair["generations_per_example"] == 2 and "robustness" in pair
    sc, ma = metrics["settings"]["self_consistency"], metrics["settings"]["multi_agent"]
    assert sc["generations_per_example"] == ma["generations_per_example"] == 4
    assert [r["round"] for r in ma["by_round"]] == [0, 1] and ma["final"]["n"] == 3
    kept = (out / "samples.multi_agent.jsonl").read_text()
    run_file(out, "metrics").unlink()
    (out / "samples.self_consistency.jsonl").unlink()
    done = []
    original = inference_run.run_setting
    monkeypatch.setattr(inference_run, "run_setting", lambda s, *a: done.append(s) or original(s, *a))
    inference_run.run_inference(cfg, progress=False)
    assert done == ["self_consistency"]  # finished settings were not redone
    assert (out / "samples.multi_agent.jsonl").read_text() == kept
    assert len(read_jsonl(out / "samples.self_consistency.jsonl")) == 3 * 4


def test_partner_discussion_rows_carry_the_remark_read(tiny, scripted):
    from saie_lib.partners import Reply, Sampling

    class Contrarian:
        model_id = "test:contrarian"

        def chat(self, conversations, sampling):
            return [Reply(text="I disagree.", prompt_tokens=1, completion_tokens=2) for _ in conversations]

    agent = _agents(tiny, 1)[0]
    examples = EXAMPLES * 2  # six examples: the saie draw gives three of each stance
    rows = inference.partner_discussion(agent, Contrarian(), examples, rounds=1, seed=0,
                                        partner_sampling=Sampling(max_new_tokens=4))
    revised = [r for r in rows if r["round"] == 1]
    assert sorted(r["stance"] for r in revised) == ["adversarial"] * 3 + ["supportive"] * 3
    assert all(r["remark"] == "I disagree." for r in revised)
    assert all("I disagree." in p for p in scripted[1])  # the revision prompt holds the remark


def test_greedy_discussions_reuse_individual_answers_as_their_first_round(tiny):
    """Round 0 of self- and partner discussion is exactly `individual`'s call: reusing its outputs gives the same
    rows as generating them again, with one generation call fewer."""
    from saie_lib.stages.discuss import run_setting

    model, tokenizer, _ = tiny
    cfg = InferenceConfig(rounds=1, max_new_tokens=5, batch_size=2)
    answers = [r["output"] for r in run_setting("individual", cfg, model, tokenizer, EXAMPLES)]
    calls = []
    original = inference.generate
    counting = lambda *a, **k: calls.append(len(a[2])) or original(*a, **k)  # noqa: E731
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inference, "generate", counting)
        fresh = run_setting("self_discussion", cfg, model, tokenizer, EXAMPLES)
        reused = run_setting("self_discussion", cfg, model, tokenizer, EXAMPLES, first_answers=answers)
    assert reused == fresh
    assert calls == [len(EXAMPLES)] * 3  # two calls without reuse, one with it
    pair = run_setting("partner_discussion", cfg, model, tokenizer, EXAMPLES)
    assert run_setting("partner_discussion", cfg, model, tokenizer, EXAMPLES, first_answers=answers) == pair
    with pytest.raises(ValueError, match="first_answers has 2 answers for 3 examples"):
        run_setting("self_discussion", cfg, model, tokenizer, EXAMPLES, first_answers=answers[:2])
