"""Merged generation (TrainConfig.merged_generation): the learner's turns with each LoRA delta merged into its
float32 base weight give the model's own greedy output and logits, and the base weights (the partner's model)
come back bit for bit."""

import pytest

from saie_lib.config import TrainConfig
from saie_lib.generation import Decoding
from saie_lib.learner import Learner, LoraSettings

CONVERSATIONS = [[{"role": "user", "content": f"What is {i} + {i}? Reason step by step."}] for i in range(1, 4)]


@pytest.fixture(scope="module")
def trained_learner():
    import torch

    torch.manual_seed(0)
    learner = Learner.create("tiny-random-smollm2", LoraSettings(r=8, alpha=16), device="cpu")
    with torch.no_grad():  # LoRA B starts at zero: give the adapters a delta that changes the output
        for name, parameter in learner.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.05)
    return learner


def _base_weights(learner):
    from peft.tuners.lora import LoraLayer

    return [m.get_base_layer().weight.detach().clone() for m in learner.model.modules() if isinstance(m, LoraLayer)]


def _logits(learner, text="What is 2 + 2?"):
    import torch

    ids = learner.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return learner.model(input_ids=ids).logits


def test_merged_generation_is_the_same_model_and_restores_the_base(trained_learner):
    import torch

    learner, decoding = trained_learner, Decoding(max_new_tokens=12)
    before = _base_weights(learner)
    with learner.adapters_disabled():
        base_logits = _logits(learner)
    plain = learner.generate(CONVERSATIONS, decoding)
    lora_logits = _logits(learner)
    assert not torch.allclose(lora_logits, base_logits, atol=1e-3)  # the adapters do change the model
    with learner.lora_merged():
        merged_logits = _logits(learner)
    assert torch.allclose(merged_logits, lora_logits, atol=1e-4)
    assert learner.generate(CONVERSATIONS, decoding, merged=True) == plain
    assert all(torch.equal(a, b) for a, b in zip(before, _base_weights(learner)))
    with learner.adapters_disabled():
        assert torch.equal(_logits(learner), base_logits)
    assert torch.equal(_logits(learner), lora_logits)


def test_merged_generation_refuses_a_bfloat16_base_and_unsloth():
    with pytest.raises(ValueError, match="'merged_generation'"):
        TrainConfig(merged_generation=True, dtype="bfloat16")
    with pytest.raises(ValueError, match="'merged_generation'"):
        TrainConfig(merged_generation=True, backend="unsloth")
    assert "merged_generation" not in TrainConfig().identity()
    assert TrainConfig(merged_generation=True).identity()["merged_generation"] is True


@pytest.mark.slow
def test_a_training_run_with_merged_generation_discusses_and_evaluates_as_without(data_dir, tmp_path, monkeypatch):
    from peft.tuners.lora import LoraLayer

    from saie_lib.artifacts import read_jsonl, run_file
    from saie_lib.config import load_config
    from saie_lib.stages import train as trainer

    evaluate, merged_at_eval = trainer.evaluate, []

    def watched(model, *args, **kwargs):  # the LoRA path is off (merged) while the run evaluates
        merged_at_eval.append(all(m.disable_adapters for m in model.modules() if isinstance(m, LoraLayer)))
        return evaluate(model, *args, **kwargs)

    monkeypatch.setattr(trainer, "evaluate", watched)
    outs = [trainer.train(load_config("train-tiny", cls=TrainConfig, task="commonsense_qa", data_dir=str(data_dir),
                                      results_root=str(tmp_path / str(merged)), merged_generation=merged,
                                      remark_cache=str(tmp_path / f"{merged}.sqlite")), progress=False)
            for merged in (False, True)]
    assert outs[0].name != outs[1].name and merged_at_eval == [False, True]  # a run-identity field
    plain, merged = ([row["output"] for row in read_jsonl(run_file(out, "samples"))] for out in outs)
    assert plain == merged and len(set(plain)) > 1
    turns = [[row["learner"] for row in read_jsonl(run_file(out, "transcripts"))] for out in outs]
    assert turns[0] == turns[1]
