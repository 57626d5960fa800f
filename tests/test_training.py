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
