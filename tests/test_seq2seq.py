"""The paper's learner family: an encoder-decoder (T5) learner behind the same interface, on the tiny random T5.

Plain-text prompts (no chat template) with golden strings and their own prompt version; target-only labels for
both model families; seq2seq loss, LoRA modules, precision and backend rules; batched generation; the
adapters-off partner; save / load / merged export; and every stage: training with the self partner and with an
API partner (local fake server), resume after an interruption, evaluation, inference-time discussion, and one
experiment notebook on the tiny-t5 profile.
"""

import dataclasses
from pathlib import Path

import pytest
import torch

from saie_lib.artifacts import read_json, read_jsonl, run_file, setting_samples
from saie_lib.config import EvalConfig, InferenceConfig, TrainConfig, from_dict, load_config
from saie_lib.generation import Decoding, generate, render_chat
from saie_lib.learner import Learner, LoraSettings, choose_backend, load_learner
from saie_lib.models import load_model, uses_plain_prompts
from saie_lib.partners import Sampling
from saie_lib.partners.local import AdapterOffPartner
from saie_lib.prompts import (
    PROMPT_VERSION,
    build_messages,
    format_target,
    prompt_version,
    render_plain,
    revision_turns,
)
from saie_lib.seq2seq import seq2seq_batch, seq2seq_dtype, seq2seq_precision, shift_right, split_rows
from saie_lib.stages import evaluate as evaluation_stage
from saie_lib.stages import run_prompt_version
from saie_lib.stages import train as trainer
from saie_lib.tasks import Example
from saie_lib.training import IGNORE_INDEX, optimizer_step, plain_features, supervised_features

REPO = Path(__file__).resolve().parents[1]
T5 = "tiny-random-t5"
GSM = Example(id="g1", task="gsm8k", question="Tom has 3 apples and buys 4 more. How many? ", answer="7",
              rationale="3 + 4 = 7")
EXAMPLES = [Example(id=f"g{i}", task="gsm8k", question=f"What is {i} + {i}?", answer=str(2 * i),
                    rationale=f"{i} + {i} = {2 * i}") for i in range(4)]
INSTRUCTION = ('Solve the math problem. Think step by step, then finish with a line of the form "The answer is N." '
               "where N is a number.")


@pytest.fixture(scope="module")
def t5():
    """(model, tokenizer, info) of the tiny random T5."""
    return load_model(T5, device="cpu")


@pytest.fixture
def learner():
    torch.manual_seed(0)
    return Learner.create(T5, LoraSettings(r=4, alpha=8), device="cpu")


# --- Plain prompts: golden strings, their own version, chat-template models untouched ---------------------

def test_plain_rendering_golden():
    assert render_plain(build_messages(GSM)) == (
        f"{INSTRUCTION}\n\nQuestion: Tom has 3 apples and buys 4 more. How many?\n\nResponse:\n")


def test_plain_rendering_of_a_discussion_golden():
    conversation = build_messages(GSM) + revision_turns(" The answer is 8. ", " I disagree. ")
    assert render_plain(conversation) == (
        f"{INSTRUCTION}\n\nQuestion: Tom has 3 apples and buys 4 more. How many?\n\n"
        "Response:\nThe answer is 8.\n\n"
        "Your discussion partner replied:\nI disagree.\n\nReconsider the question in light of this remark and give "
        'your final response: reason step by step, then finish with a line of the form "The answer is ...".'
        "\n\nResponse:\n")


def test_plain_prompt_then_answer_is_the_rendered_conversation_with_the_answer():
    conversation = build_messages(GSM)
    answered = render_plain(conversation + [{"role": "assistant", "content": format_target(GSM)}],
                            add_generation_prompt=False)
    assert answered == render_plain(conversation) + format_target(GSM)
    with pytest.raises(ValueError, match="unknown role"):
        render_plain([{"role": "tool", "content": "x"}])


def test_plain_rendering_has_its_own_version_and_chat_runs_keep_theirs(data_dir):
    assert prompt_version() == PROMPT_VERSION == "1" and prompt_version(plain=True) == "1+plain1"
    assert uses_plain_prompts(T5) and uses_plain_prompts("flan-t5-base") and uses_plain_prompts("flan-t5-large")
    assert not uses_plain_prompts("tiny-random-smollm2") and not uses_plain_prompts("smollm2-135m-instruct")
    chat = EvalConfig(model="tiny-random-smollm2", data_dir=str(data_dir))
    assert evaluation_stage.run_identity(chat)["prompt_version"] == "1"
    plain = dataclasses.replace(chat, model=T5)
    assert evaluation_stage.run_identity(plain)["prompt_version"] == run_prompt_version(plain) == "1+plain1"


def test_local_directory_is_plain_exactly_when_its_tokenizer_has_no_template(t5, tiny, tmp_path):
    t5[1].save_pretrained(tmp_path / "t5")
    tiny[1].save_pretrained(tmp_path / "chat")
    assert uses_plain_prompts(str(tmp_path / "t5")) and not uses_plain_prompts(str(tmp_path / "chat"))


def test_models_with_a_chat_template_keep_it_and_others_get_plain_text(t5, tiny):
    messages = [build_messages(GSM)]
    assert render_chat(t5[1], messages) == [render_plain(messages[0])]
    assert render_chat(tiny[1], messages)[0].startswith("<|im_start|>system")


# --- The tiny T5 and the seq2seq rules ----------------------------------------------------------------

def test_tiny_t5_is_a_consistent_t5(t5):
    model, tokenizer, info = t5
    assert info["family"] == "seq2seq" and info["prompts"] == "plain" and model.config.is_encoder_decoder
    assert tokenizer.chat_template is None and tokenizer.pad_token_id == 0 != tokenizer.eos_token_id
    assert model.config.decoder_start_token_id == model.config.pad_token_id == tokenizer.pad_token_id
    assert model.config.eos_token_id == tokenizer.eos_token_id and model.config.vocab_size == len(tokenizer)
    assert tokenizer("hi")["input_ids"][-1] == tokenizer.eos_token_id  # like T5's closing </s>
    assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()  # untied, as Flan-T5


def test_float16_is_refused_for_t5_and_auto_is_bf16_or_fp32():
    with pytest.raises(ValueError, match="overflow"):
        seq2seq_dtype("float16", "cuda")
    assert seq2seq_dtype("auto", "cpu") == torch.float32 and seq2seq_dtype("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="overflows"):
        seq2seq_precision("fp16", "fp16")
    assert seq2seq_precision("auto", "fp16") == "fp32" and seq2seq_precision("auto", "bf16") == "bf16"


def test_seq2seq_backend_is_peft_and_unsloth_is_refused():
    assert choose_backend("auto", "cuda", seq2seq=True) == "peft"
    with pytest.raises(ValueError, match="Unsloth supports decoder-only"):
        choose_backend("unsloth", "cuda", seq2seq=True)
    with pytest.raises(ValueError, match="Unsloth supports decoder-only"):
        load_learner(T5, LoraSettings(), backend="unsloth", device="cpu")


# --- Target-only labels, for both families ---------------------------------------------------------------

def test_causal_labels_decode_to_exactly_the_target(tiny):
    _, tokenizer, _ = tiny
    target = format_target(GSM)
    features = supervised_features(tokenizer, build_messages(GSM) + revision_turns("8", "no"), target, 512)
    kept = [t for t, label in zip(features["input_ids"], features["labels"]) if label != IGNORE_INDEX]
    assert tokenizer.decode(kept) == target + "<|im_end|>"  # the template's end-of-turn marker closes it
    assert tokenizer.decode(kept, skip_special_tokens=True) == target


def test_seq2seq_labels_decode_to_exactly_the_target_and_the_encoder_sees_no_target(t5):
    _, tokenizer, _ = t5
    target = format_target(GSM)
    conversation = build_messages(GSM) + revision_turns("first try", "partner says no")
    features = supervised_features(tokenizer, conversation, target, 512)
    (source,), (labels,) = split_rows([features])
    assert labels == tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert tokenizer.decode(labels, skip_special_tokens=True) == target
    assert source == tokenizer(render_plain(conversation))["input_ids"]  # the whole prompt, closed by eos
    assert "The answer is 7." not in tokenizer.decode(source) and "partner says no" in tokenizer.decode(source)


def test_seq2seq_batch_shifts_labels_behind_decoder_start_and_loss_matches_the_model(learner):
    features = plain_features(learner.tokenizer, EXAMPLES[:3], 256)
    features[2] = {**features[2], "labels": [IGNORE_INDEX] * len(features[2]["labels"])}  # a row without target
    inputs, labels = seq2seq_batch(features, learner.tokenizer.pad_token_id, 0)
    base = learner.model.get_base_model()
    assert torch.equal(inputs["decoder_input_ids"], base._shift_right(labels))
    assert torch.equal(shift_right(labels, 0, 0)[:, 0], torch.zeros(3, dtype=torch.long))
    assert inputs["attention_mask"][:, -1].all()  # encoder input left-padded
    learner.model.eval()
    expected = learner.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                             labels=labels).loss
    assert torch.allclose(learner.target_loss(features), expected, atol=1e-5)


# --- Learner: LoRA modules, what moves, partner, generation, save / load / merge ----------------------------

@pytest.mark.slow
def test_lora_on_t5_projections_adapters_move_and_base_stays(learner):
    config = learner.model.peft_config["default"]
    assert config.task_type == "SEQ_2_SEQ_LM" and set(config.target_modules) == {"q", "k", "v", "o", "wi_0",
                                                                                 "wi_1", "wo"}
    assert learner.info["backend"] == "peft" and learner.info["precision"] == "fp32"
    before = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
    optimizer = torch.optim.AdamW(learner.trainable_parameters(), lr=1e-2)
    for _ in range(2):
        result = optimizer_step(learner, optimizer, plain_features(learner.tokenizer, EXAMPLES, 256), 1.0)
    assert result["loss"] > 0 and result["target_tokens"] > 0
    after = dict(learner.model.named_parameters())
    assert all(not torch.equal(before[n], after[n]) for n in before if "lora_B" in n)
    assert all(torch.equal(before[n], after[n]) for n in before if "lora_" not in n)


@pytest.mark.slow
def test_bf16_learner_takes_a_finite_step_with_float32_adapters():
    torch.manual_seed(0)
    learner = Learner.create(T5, LoraSettings(r=4, alpha=8), device="cpu", dtype="bfloat16")
    assert learner.info["dtype"] == "bfloat16" and learner.info["precision"] == "bf16"
    assert all(p.dtype == torch.float32 for p in learner.trainable_parameters())
    optimizer = torch.optim.AdamW(learner.trainable_parameters(), lr=1e-3)
    result = optimizer_step(learner, optimizer, plain_features(learner.tokenizer, EXAMPLES, 256), 1.0)
    assert result["loss"] is not None and torch.isfinite(torch.tensor(result["loss"]))
    with pytest.raises(ValueError, match="overflow"):
        Learner.create(T5, LoraSettings(), device="cpu", dtype="float16")


@pytest.mark.slow
def test_batched_generation_equals_one_at_a_time(t5):
    model, tokenizer, _ = t5
    prompts = render_chat(tokenizer, [build_messages(e) for e in EXAMPLES[:3]] + [build_messages(GSM)])
    batched = generate(model, tokenizer, prompts, Decoding(max_new_tokens=6), batch_size=4, progress=False)
    alone = [generate(model, tokenizer, [p], Decoding(max_new_tokens=6), progress=False)[0] for p in prompts]
    assert batched == alone and all(batched)


@pytest.mark.slow
def test_adapter_off_partner_is_the_frozen_base_and_adapters_round_trip(learner, tmp_path):
    partner = AdapterOffPartner(learner, batch_size=2)
    conversations = [build_messages(e) for e in EXAMPLES]
    first = [r.text for r in partner.chat(conversations, Sampling(max_new_tokens=6))]
    optimizer = torch.optim.AdamW(learner.trainable_parameters(), lr=5e-2)
    for _ in range(3):
        optimizer_step(learner, optimizer, plain_features(learner.tokenizer, EXAMPLES, 256), 1.0)
    learned = learner.generate(conversations, Decoding(max_new_tokens=6))
    assert [r.text for r in partner.chat(conversations, Sampling(max_new_tokens=6))] == first != learned
    learner.save_adapter(tmp_path / "adapter")
    reloaded = Learner.create(T5, LoraSettings(r=4, alpha=8), device="cpu", adapter=tmp_path / "adapter")
    assert reloaded.generate(conversations, Decoding(max_new_tokens=6)) == learned
    fresh = Learner.create(T5, LoraSettings(r=4, alpha=8), device="cpu")
    fresh.load_adapter_weights(tmp_path / "adapter")
    assert fresh.generate(conversations, Decoding(max_new_tokens=6)) == learned


@pytest.mark.slow
def test_merged_model_loads_on_its_own_as_a_seq2seq_lm(learner, tmp_path):
    from transformers import AutoModelForSeq2SeqLM

    learner.save_merged(tmp_path / "merged")
    merged = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "merged")
    assert merged.dtype == torch.bfloat16 and merged.config.is_encoder_decoder  # bf16, never fp16, for T5
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    assert uses_plain_prompts(str(tmp_path / "merged"))


# --- Stages -------------------------------------------------------------------------------------------

@pytest.fixture
def train_cfg(data_dir, tmp_path):
    return load_config("train-tiny", cls=TrainConfig, model=T5, task="commonsense_qa", data_dir=str(data_dir),
                       results_root=str(tmp_path / "a"), remark_cache=str(tmp_path / "remarks.sqlite"))


@pytest.mark.slow
def test_t5_training_run_resumes_after_a_kill_and_matches_uninterrupted(train_cfg, tmp_path, monkeypatch):
    reference = trainer.train(dataclasses.replace(train_cfg, results_root=str(tmp_path / "ref")), progress=False)
    metrics = read_json(run_file(reference, "metrics"))
    assert metrics["prompt_version"] == "1+plain1" and metrics["steps"] == 7 and metrics["backend"] == "peft"
    assert read_json(run_file(reference, "env"))["prompt_version"] == "1+plain1"
    transcripts = read_jsonl(run_file(reference, "transcripts"))
    assert len(transcripts) == 12 and all(r["remark"] for r in transcripts)
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
    assert [r["step"] for r in log] == list(range(1, 8))
    ours = read_json(run_file(out, "metrics"))
    assert ours["partner"]["calls_this_session"] == 0  # the resumed part reused cached remarks
    assert [r["loss"] for r in log] == [r["loss"] for r in read_jsonl(run_file(reference, "train_log"))]
    assert [r["output"] for r in read_jsonl(run_file(out, "samples"))] == \
        [r["output"] for r in read_jsonl(run_file(reference, "samples"))]


@pytest.mark.slow
def test_t5_training_with_an_api_partner_on_a_local_server(train_cfg, monkeypatch):
    from fake_openai_server import FakeOpenAIServer

    monkeypatch.setenv("SAIE_TEST_PARTNER_KEY", "sk-test-not-a-real-key-000000000000")
    with FakeOpenAIServer() as server:
        cfg = dataclasses.replace(train_cfg, partner="api:fake-partner", partner_base_url=server.base_url,
                                  partner_api_key_env="SAIE_TEST_PARTNER_KEY")
        out = trainer.train(cfg, progress=False)
        requests = server.requests
    transcripts = read_jsonl(run_file(out, "transcripts"))
    partner = read_json(run_file(out, "metrics"))["partner"]
    assert len(requests) == len(transcripts) == partner["remarks"] == 12  # 6 discussed examples x 2 rounds
    assert all(r["messages"][0]["content"].startswith("You are discussing a question with a student.")
               for r in requests)  # the API partner gets chat messages, never the learner's plain rendering
    assert partner["tokens"] == sum(r["partner_tokens"] for r in transcripts) > 0
    print(f"\ntiny T5 + API partner: {len(requests)} requests, {partner['tokens']} tokens (fake server: words)")


@pytest.mark.slow
def test_t5_evaluation_and_inference_time_discussion(train_cfg, data_dir, tmp_path):
    from saie_lib.stages.discuss import run_inference

    evaluated = evaluation_stage.run_evaluation(EvalConfig(model=T5, task="gsm8k", limit=3, max_new_tokens=6,
                                                           device="cpu", data_dir=str(data_dir)), progress=False)
    assert read_json(run_file(evaluated, "metrics"))["n"] == 3
    trained = trainer.train(dataclasses.replace(train_cfg, remark_policy="none"), progress=False)
    cfg = from_dict(InferenceConfig, {"model": T5, "device": "cpu", "dtype": "float32", "task": "commonsense_qa",
                                      "limit": 2, "agents": 2, "rounds": 1, "max_new_tokens": 6,
                                      "partner_max_new_tokens": 6, "adapter": str(run_file(trained, "adapter")),
                                      "data_dir": str(data_dir), "results_root": str(tmp_path / "inf")})
    out = run_inference(cfg, progress=False)
    metrics = read_json(run_file(out, "metrics"))
    assert metrics["prompt_version"] == "1+plain1" and set(metrics["settings"]) == set(cfg.settings)
    rows = read_jsonl(setting_samples(out, "partner_discussion"))
    assert len(rows) == 2 * 2 and {r["stance"] for r in rows if r["round"] == 1} <= {"supportive", "adversarial"}
    assert all(r["remark"] for r in rows if r["round"] == 1)  # the adapters-off T5 partner remarked


def test_profiles_of_the_paper_setup_validate():
    from saie_lib.profiles import load_profile

    paper = load_profile("paper-flan-t5")
    cfg = paper.training_config("gsm8k", "saie")
    assert cfg.model in ("flan-t5-base", "flan-t5-large") and cfg.partner.startswith("api:")
    assert cfg.backend == "peft" and cfg.dtype != "float16" and cfg.partner_api_key_env == "OPENAI_API_KEY"
    assert "sk-" not in (REPO / "configs" / "profiles" / "paper-flan-t5.yaml").read_text()
    assert load_profile("tiny-t5").training_config("mmlu", "none").model == T5


@pytest.mark.slow
@pytest.mark.notebooks
def test_experiment_notebook_runs_on_the_tiny_t5_profile(data_dir, tmp_path):
    from saie_lib.reproduce import reproduce

    statuses = reproduce("tiny-t5", ["commonsense"], data_dir=str(data_dir), results_root=tmp_path, summary=False,
                         progress=False)
    assert statuses == {"commonsense": "ran"}
    folder = tmp_path / "runs" / "tiny-t5" / "commonsense"
    assert "Traceback" not in (folder / "11_commonsense_csqa.ipynb").read_text()
    marker = read_json(folder / "experiment.json")
    for run in marker["conditions"].values():
        assert read_json(folder / run / "metrics.json")["prompt_version"] == "1+plain1"
