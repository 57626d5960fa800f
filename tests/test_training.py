"""SAIE training on the tiny model: masking, what moves and what stays frozen, policies, resume, cache replay."""

import dataclasses

import pytest
import torch

from saie_lib.artifacts import read_json, read_jsonl, run_file
from saie_lib.config import TrainConfig, load_config
from saie_lib.discussion import draw_stances
from saie_lib.learner import Learner, LoraSettings
from saie_lib.partners import Sampling
from saie_lib.partners.local import AdapterOffPartner
from saie_lib.prompts import build_messages
from saie_lib.stages import train as trainer
from saie_lib.tasks import Example
from saie_lib.training import IGNORE_INDEX, optimizer_step, plain_features, supervised_features

EXAMPLES = [Example(id=f"g{i}", task="gsm8k", question=f"What is {i} + {i}?", answer=str(2 * i),
                    rationale=f"{i} + {i} = {2 * i}") for i in range(4)]


@pytest.fixture
def learner():
    torch.manual_seed(0)
    return Learner.create("tiny-random-smollm2", LoraSettings(r=4, alpha=8), device="cpu")


def test_labels_cover_exactly_the_target(tiny):
    _, tokenizer, _ = tiny
    conversation = build_messages(EXAMPLES[1]) + [{"role": "assistant", "content": "first try"},
                                                  {"role": "user", "content": "partner says no"}]
    features = supervised_features(tokenizer, conversation, "1 + 1 = 2\nThe answer is 2.", 512)
    kept = [t for t, label in zip(features["input_ids"], features["labels"]) if label != IGNORE_INDEX]
    assert tokenizer.decode(kept) == "1 + 1 = 2\nThe answer is 2.<|im_end|>"
    masked = tokenizer.decode(
        [t for t, label in zip(features["input_ids"], features["labels"]) if label == IGNORE_INDEX])
    assert "partner says no" in masked and "first try" in masked and "The answer is 2." not in masked


def test_long_discussion_is_cut_in_the_middle_and_target_kept(tiny):
    _, tokenizer, _ = tiny
    conversation = build_messages(EXAMPLES[2]) + [{"role": "assistant", "content": "blah " * 300},
                                                  {"role": "user", "content": "Reconsider, please."}]
    features = supervised_features(tokenizer, conversation, "The answer is 4.", 200)
    assert len(features["input_ids"]) == 200 and features["prompt_truncated"] and not features["target_truncated"]
    kept = tokenizer.decode(features["input_ids"])
    assert kept.startswith("<|im_start|>system") and "What is 2 + 2?" in kept  # the question survives
    assert "Reconsider, please." in kept and kept.endswith("The answer is 4.<|im_end|>")
    short = supervised_features(tokenizer, build_messages(EXAMPLES[2]), "The answer is 4.", 512)
    assert not short["prompt_truncated"] and not short["target_truncated"]


@pytest.mark.slow
def test_adapters_change_and_base_weights_do_not(learner):
    before = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
    optimizer = torch.optim.AdamW(learner.trainable_parameters(), lr=1e-2)
    for _ in range(3):
        result = optimizer_step(learner, optimizer, plain_features(learner.tokenizer, EXAMPLES, 256), 1.0)
    assert result["loss"] > 0 and result["target_tokens"] > 0
    after = dict(learner.model.named_parameters())
    lora = [n for n in before if "lora_" in n]
    assert lora and all(not torch.equal(before[n], after[n]) for n in lora if "lora_B" in n)
    assert all(torch.equal(before[n], after[n]) for n in before if "lora_" not in n)


@pytest.mark.slow
def test_adapter_off_partner_is_the_frozen_base(learner, tiny):
    base, tokenizer, _ = tiny
    partner = AdapterOffPartner(learner, batch_size=2)
    conversations = [build_messages(e) for e in EXAMPLES]
    sampling = Sampling(max_new_tokens=6)
    first = [r.text for r in partner.chat(conversations, sampling)]
    optimizer = torch.optim.AdamW(learner.trainable_parameters(), lr=5e-2)
    for _ in range(3):
        optimizer_step(learner, optimizer, plain_features(learner.tokenizer, EXAMPLES, 256), 1.0)
    from saie_lib.generation import Decoding

    learned = learner.generate(conversations, Decoding(max_new_tokens=6))
    assert [r.text for r in partner.chat(conversations, sampling)] == first
    assert learned != first  # the learner itself did move


@pytest.mark.parametrize("policy, expected", [
    ("saie", {"supportive": 0.5, "adversarial": 0.5}),
    ("supportive", {"supportive": 1.0}),
    ("adversarial", {"adversarial": 1.0}),
    ("none", {None: 1.0}),
    ("placebo", {"placebo": 1.0}),
])
def test_each_policy_draws_the_stance_mix_it_claims(policy, expected):
    drawn = [s for b in range(50) for r in (1, 2)
             for s in draw_stances(policy, 4, seed=0, batch_index=b, round_index=r)]
    shares = {k: drawn.count(k) / len(drawn) for k in set(drawn)}
    assert shares == expected
    if policy == "saie":
        per_batch = [draw_stances(policy, 4, seed=0, batch_index=b, round_index=1) for b in range(20)]
        assert all(batch.count("supportive") == 2 for batch in per_batch)
        assert len({tuple(batch) for batch in per_batch}) > 1  # shuffled, not a fixed pattern


@pytest.fixture
def train_cfg(data_dir, tmp_path):
    return load_config("train-tiny", cls=TrainConfig, task="commonsense_qa", data_dir=str(data_dir),
                       results_root=str(tmp_path / "a"), remark_cache=str(tmp_path / "remarks.sqlite"))


@pytest.mark.slow
def test_training_run_writes_logs_transcripts_and_metrics(train_cfg):
    out = trainer.train(train_cfg, progress=False)
    metrics = read_json(run_file(out, "metrics"))
    log = read_jsonl(run_file(out, "train_log"))
    transcripts = read_jsonl(run_file(out, "transcripts"))
    assert [r["phase"] for r in log] == ["warmup"] + ["discussion"] * 6  # 2 + 6 examples, batch 2, 2 rounds
    assert metrics["steps"] == 7 and metrics["n"] == 4 and metrics["remark_policy"] == "saie"
    assert len(transcripts) == 6 * 2 and {r["stance"] for r in transcripts} == {"supportive", "adversarial"}
    assert all(r["remark"] is not None and "revision" in r for r in transcripts)
    assert (run_file(out, "adapter") / "adapter_model.safetensors").exists()
    # every remark's stance is checked, and the run's stance fidelity is the share that holds
    assert all(r["stance_check"]["reason"] and r["stance_holds"] == (r["stance_check"]["stance"] == r["stance"])
               for r in transcripts)
    answered = [r["stance_holds"] for r in transcripts if r["stated"] is not None]
    unanswered = [r["stance_holds"] for r in transcripts if r["stated"] is None]
    assert all(r["stance_check"]["learner_answer"] == r["stated"] for r in transcripts)
    assert metrics["stance_fidelity"]["overall"] == (sum(answered) / len(answered) if answered else None)
    assert metrics["stance_fidelity"]["no_answer_holds"] == (sum(unanswered) / len(unanswered) if unanswered else None)
    assert metrics["stance_fidelity"]["remarks"] == 12 and metrics["stance_fidelity"]["stance_retries"] == 0
    assert metrics["learner_turns"] == {"turns": 12, "no_answer": len(unanswered)}
    assert metrics["condition"] == "saie" and metrics["update_target"] == "gold"


@pytest.mark.slow
def test_none_policy_is_conventional_finetuning_with_the_same_budget(train_cfg):
    saie = read_json(run_file(trainer.train(train_cfg, progress=False), "metrics"))
    none_cfg = dataclasses.replace(train_cfg, remark_policy="none")
    none = read_json(run_file(trainer.train(none_cfg, progress=False), "metrics"))
    assert none["steps"] == saie["steps"] and none["partner"]["remarks"] == 0


@pytest.mark.slow
def test_replayed_run_makes_no_partner_calls(train_cfg, tmp_path):
    first = read_json(run_file(trainer.train(train_cfg, progress=False), "metrics"))
    replay_cfg = dataclasses.replace(train_cfg, results_root=str(tmp_path / "b"))
    replay = read_json(run_file(trainer.train(replay_cfg, progress=False), "metrics"))
    assert first["partner"]["calls_this_session"] > 0
    assert replay["partner"]["calls_this_session"] == 0 and replay["partner"]["remarks"] == first["partner"]["remarks"]


@pytest.mark.slow
def test_killed_run_resumes_and_matches_uninterrupted(train_cfg, tmp_path, monkeypatch):
    reference = trainer.train(dataclasses.replace(train_cfg, results_root=str(tmp_path / "ref")), progress=False)
    original = trainer.discussion_batch

    def dies_at_batch_3(s, examples, index):
        if index == 3:
            raise KeyboardInterrupt("killed")
        return original(s, examples, index)

    monkeypatch.setattr(trainer, "discussion_batch", dies_at_batch_3)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(train_cfg, progress=False)
    monkeypatch.setattr(trainer, "discussion_batch", original)
    out = trainer.train(train_cfg, progress=False)
    log = read_jsonl(run_file(out, "train_log"))
    assert [r["step"] for r in log] == list(range(1, 8))  # nothing lost, nothing repeated
    ours, theirs = read_json(run_file(out, "metrics")), read_json(run_file(reference, "metrics"))
    assert ours["partner"]["calls_this_session"] == 0  # the resumed part reused cached remarks
    for key in ("accuracy", "accuracy_strict", "invalid_rate", "n", "steps"):
        assert ours[key] == theirs[key]
    assert [r["output"] for r in read_jsonl(run_file(out, "samples"))] == \
        [r["output"] for r in read_jsonl(run_file(reference, "samples"))]
    assert [r["loss"] for r in log] == [r["loss"] for r in read_jsonl(run_file(reference, "train_log"))]


@pytest.mark.slow
def test_training_with_an_api_partner_on_a_local_server(train_cfg, monkeypatch):
    """The OpenAI-compatible partner inside the real training loop, against a local fake server."""
    from fake_openai_server import FakeOpenAIServer, status

    monkeypatch.setenv("SAIE_TEST_PARTNER_KEY", "sk-test-not-a-real-key-000000000000")
    with FakeOpenAIServer() as server:
        server.script(status(503))  # one transient failure: retried, not fatal
        cfg = dataclasses.replace(train_cfg, partner="api:fake-partner", partner_base_url=server.base_url,
                                  partner_api_key_env="SAIE_TEST_PARTNER_KEY", remark_policy="adversarial")
        out = trainer.train(cfg, progress=False)
        transcripts = read_jsonl(run_file(out, "transcripts"))
        assert server.request_count == len(transcripts) + 1  # one remark per discussed turn, plus the retried 503
    assert all(r["remark"].startswith("re: You are discussing") for r in transcripts)
    metrics = read_json(run_file(out, "metrics"))
    assert metrics["partner"]["model_id"] == f"api:fake-partner@{server.base_url}"
    assert "sk-test" not in run_file(out, "config").read_text() + run_file(out, "env").read_text()


def test_merged_16bit_model_loads_on_its_own(learner, tmp_path):
    from transformers import AutoModelForCausalLM

    learner.save_merged(tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert merged.dtype == torch.bfloat16
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    assert any("lora_" in name for name, _ in learner.model.named_parameters())  # the learner keeps its adapters


def test_last_positions_loss_equals_the_full_model_loss(learner):
    """Logits only for the targets of a left-padded batch give the same loss as the standard full pass."""
    from saie_lib.training import collate

    features = plain_features(learner.tokenizer, EXAMPLES[:3], 256)
    features[0] = supervised_features(learner.tokenizer, build_messages(EXAMPLES[0]) + [
        {"role": "assistant", "content": "a much longer earlier turn " * 5}, {"role": "user", "content": "again"}],
        "0 + 0 = 0\nThe answer is 0.", 256)
    learner.model.eval()
    full = collate(features, learner.tokenizer.pad_token_id)
    full.pop("position_ids")
    expected = learner.model(**full).loss
    assert torch.allclose(learner.target_loss(features), expected, atol=1e-5)


# ---------------------------------------------------------------- update targets, placebo, stance fidelity

def test_self_revision_target_is_the_revision_when_correct_and_gold_otherwise():
    from saie_lib.prompts import format_target
    from saie_lib.training import discussion_targets

    revisions = ["1 + 1 = 2\nThe answer is 2.", "2 + 2 = 5\nThe answer is 5.", "no answer at all"]
    targets = discussion_targets(EXAMPLES[1:], revisions, "self_revision_if_correct")
    assert targets == [revisions[0], format_target(EXAMPLES[2]), format_target(EXAMPLES[3])]
    assert discussion_targets(EXAMPLES[1:], revisions, "gold") == [format_target(e) for e in EXAMPLES[1:]]
    with pytest.raises(ValueError, match="one revision per example"):
        discussion_targets(EXAMPLES[1:], revisions[:1], "self_revision_if_correct")


def test_mixed_target_adds_the_plain_question_to_gold_rows(tiny):
    from saie_lib.prompts import format_target
    from saie_lib.training import discussion_features

    _, tokenizer, _ = tiny
    conversations = [build_messages(e) + [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]
                     for e in EXAMPLES[:2]]
    targets = [format_target(e) for e in EXAMPLES[:2]]
    gold = discussion_features(tokenizer, EXAMPLES[:2], conversations, targets, "gold", 256)
    mixed = discussion_features(tokenizer, EXAMPLES[:2], conversations, targets, "mixed", 256)
    assert len(gold) == 2 and len(mixed) == 4
    assert mixed[:2] == gold and mixed[2:] == plain_features(tokenizer, EXAMPLES[:2], 256)


def _captured_steps(monkeypatch) -> list:
    """Every optimiser step's features, as the trainer passes them."""
    steps = []
    original = trainer.optimizer_step

    def spy(learner, optimizer, features, *args):
        steps.append(features)
        return original(learner, optimizer, features, *args)

    monkeypatch.setattr(trainer, "optimizer_step", spy)
    return steps


@pytest.mark.slow
def test_self_revision_target_in_the_trainer(train_cfg, monkeypatch, tiny):
    """The learner's revisions are scripted: correct for some examples, unparseable for the others; the trained
    labels are the revision where it was correct and the gold rationale + answer elsewhere."""
    from saie_lib.data import load_task
    from saie_lib.learner import Learner
    from saie_lib.prompts import format_target

    _, tokenizer, _ = tiny
    examples = load_task("commonsense_qa", "train", data_dir=train_cfg.data_dir, limit=train_cfg.limit,
                         seed=train_cfg.seed)
    by_question = {e.question.strip(): e for e in examples}

    def scripted(self, conversations, decoding, batch_size=8, merged=False):
        asked = [by_question[c[0]["content"].split("Question: ", 1)[1].split("\nChoices:", 1)[0].strip()]
                 for c in conversations]
        return [f"The answer is {e.answer}." if i % 2 == 0 else "I am not sure." for i, e in enumerate(asked)]

    monkeypatch.setattr(Learner, "generate", scripted)
    steps = _captured_steps(monkeypatch)
    out = trainer.train(dataclasses.replace(train_cfg, update_target="self_revision_if_correct"), progress=False)
    assert "-saie_selfrev-" in out.name
    rows = read_jsonl(run_file(out, "transcripts"))
    assert {r["target"] for r in rows} == {"revision", "gold"}
    by_id = {e.id: e for e in examples}
    for row in rows:
        batch = [r["id"] for r in rows if r["step"] == row["step"]]
        labels = [t for t in steps[row["step"] - 1][batch.index(row["id"])]["labels"] if t != IGNORE_INDEX]
        expected = row["revision"] if row["revision_correct"] else format_target(by_id[row["id"]])
        assert tokenizer.decode(labels) == expected + "<|im_end|>"
        assert row["target"] == ("revision" if row["revision_correct"] else "gold")


@pytest.mark.slow
def test_mixed_target_run_trains_discussion_and_plain_rows(train_cfg, monkeypatch):
    steps = _captured_steps(monkeypatch)
    out = trainer.train(dataclasses.replace(train_cfg, update_target="mixed"), progress=False)
    metrics = read_json(run_file(out, "metrics"))
    assert "-saie_mixed-" in out.name and metrics["condition"] == "saie_mixed" and metrics["steps"] == 7
    assert [len(f) for f in steps] == [2] + [4] * 6  # warm-up batch of 2; each discussion step 2 + 2 plain rows


@pytest.mark.slow
def test_placebo_run_has_the_discussion_shape_and_no_partner(train_cfg):
    from saie_lib.prompts import PLACEBO_REMARK

    out = trainer.train(dataclasses.replace(train_cfg, remark_policy="placebo"), progress=False)
    metrics = read_json(run_file(out, "metrics"))
    rows = read_jsonl(run_file(out, "transcripts"))
    assert metrics["steps"] == 7 and metrics["condition"] == "placebo" and len(rows) == 12
    assert all(r["stance"] == "placebo" and r["remark"] == PLACEBO_REMARK and r["stance_check"] is None
               for r in rows)
    assert metrics["partner"]["calls_this_session"] == 0 and metrics["partner"]["remarks"] == 0
    assert metrics["stance_fidelity"]["remarks"] == 0 and metrics["stance_fidelity"]["overall"] is None


class StubbornPartner:
    """Takes the wrong stance when first asked and the right one when re-asked; records every batch."""

    model_id = "fake:stubborn"

    def __init__(self):
        self.batches = []

    def chat(self, conversations, sampling):
        from saie_lib.partners import Reply
        from saie_lib.prompts import STANCE_INSTRUCTIONS

        self.batches.append((len(conversations), sampling))
        replies = []
        for messages in conversations:
            text = messages[-1]["content"]
            adversarial = STANCE_INSTRUCTIONS["adversarial"] in text
            wrong_stance_first = "Attempt" not in text
            says_wrong = adversarial != wrong_stance_first
            replies.append(Reply("Your answer is wrong." if says_wrong else "Your answer is right.", 5, 4))
        return replies


@pytest.mark.slow
def test_stance_fidelity_is_recorded_and_retries_raise_it(train_cfg, monkeypatch):
    partner = StubbornPartner()
    monkeypatch.setattr("saie_lib.training_partner.build_partner", lambda *a, **k: partner)
    first = trainer.train(train_cfg, progress=False)
    fidelity = read_json(run_file(first, "metrics"))["stance_fidelity"]
    rows = read_jsonl(run_file(first, "transcripts"))
    assert all(r["stance_holds"] is False and "stance_tries" not in r for r in rows)
    assert {fidelity["overall"], fidelity["no_answer_holds"]} - {None} == {0.0}
    assert fidelity["remarks"] == 12 and fidelity["partner_tries"] == 12
    assert fidelity["supportive"]["remarks"] + fidelity["adversarial"]["remarks"] == 12

    partner.batches.clear()
    retried = trainer.train(dataclasses.replace(train_cfg, stance_retries=2), progress=False)
    metrics = read_json(run_file(retried, "metrics"))
    held = metrics["stance_fidelity"]
    assert retried != first and {held["overall"], held["no_answer_holds"]} - {None} == {1.0}
    assert held["first_try"] in (0.0, None) and held["retried_remarks"] == 12
    assert metrics["stance_fidelity"]["stance_retries"] == 2
    rows = read_jsonl(run_file(retried, "transcripts"))
    assert all([t["holds"] for t in r["stance_tries"]] == [False, True] and r["stance_holds"] for r in rows)
    assert all(r["remark"] == r["stance_tries"][-1]["remark"] for r in rows)
    # 12 first tries (those the first run asked too come from the cache) and 12 re-asks, never from the cache
    hits, calls = metrics["partner"]["cache_hits_this_session"], metrics["partner"]["calls_this_session"]
    assert hits >= 2 and hits + calls == 24 and metrics["partner"]["tokens"] == 24 * 9
    re_asks = [(n, sampling) for n, sampling in partner.batches if sampling.seed != train_cfg.seed]
    assert [n for n, _ in re_asks] == [2] * 6  # one batched call per round, both remarks of the batch together
    assert all(sampling.temperature > 0 and sampling.seed == train_cfg.seed + 1 for _, sampling in re_asks)


def test_stance_retries_is_checked_and_left_out_of_old_identities():
    assert "stance_retries" not in TrainConfig().identity()
    assert TrainConfig(stance_retries=2).identity()["stance_retries"] == 2
    for no_partner in ("none", "placebo"):  # nothing to re-ask: the same run with or without stance_retries
        assert TrainConfig(remark_policy=no_partner, stance_retries=2).identity() == TrainConfig(
            remark_policy=no_partner).identity()
    with pytest.raises(ValueError, match="'stance_retries'"):
        TrainConfig(stance_retries=-1)
    with pytest.raises(ValueError, match="'update_target'"):
        TrainConfig(update_target="silver")
