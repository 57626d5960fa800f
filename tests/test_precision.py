"""Mixed precision of the training step on the tiny model (CPU autocast): bf16 and fp16-with-loss-scaling both
lower the loss like fp32 does, an fp16 overflow skips its step instead of stopping the run, and the learner
records the precision it resolved."""

import pytest

from saie_lib.learner import Learner, LoraSettings
from saie_lib.precision import StepPrecision, resolve_precision
from saie_lib.tasks import Example
from saie_lib.training import optimizer_step, plain_features

pytestmark = pytest.mark.slow

EXAMPLES = [Example(id=str(i), task="gsm8k", question=f"What is {i} + {i}?", answer=str(2 * i),
                    rationale=f"{i} plus {i} is {2 * i}.") for i in range(1, 5)]


def _losses(precision: str, steps: int = 6, **scaler_options):
    import torch

    torch.manual_seed(0)
    learner = Learner.create("tiny-random-smollm2", LoraSettings(r=8, alpha=16), device="cpu")
    learner.precision = StepPrecision.create(precision, "cpu")
    if scaler_options:
        learner.precision.scaler = torch.amp.GradScaler("cpu", **scaler_options)
    optimizer = torch.optim.AdamW(learner.trainable_parameters(), lr=5e-3)
    features = plain_features(learner.tokenizer, EXAMPLES, 128)
    return [optimizer_step(learner, optimizer, features, 1.0) for _ in range(steps)], learner


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_lowers_the_loss_like_fp32(precision):
    reference, _ = _losses("fp32")
    mixed, learner = _losses(precision)
    assert mixed[-1]["loss"] < mixed[0]["loss"] * 0.9
    assert mixed[0]["loss"] == pytest.approx(reference[0]["loss"], rel=0.05)
    assert all(p.dtype.is_floating_point and str(p.dtype) == "torch.float32" for p in learner.trainable_parameters())


def test_fp16_overflow_skips_the_step_and_training_goes_on():
    results, learner = _losses("fp16", steps=4, init_scale=2.0**120)
    assert results[0].get("skipped") is True and learner.precision.skipped_steps >= 1
    assert learner.precision.scaler.get_scale() < 2.0**120
    assert all(r["loss"] is not None for r in results)


def test_precision_resolution():
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "cpu", "bfloat16") == "bf16"
    assert resolve_precision("fp16", "cpu") == "fp16"
    with pytest.raises(ValueError, match="precision 'half'"):
        resolve_precision("half", "cpu")


def test_learner_records_its_precision():
    learner = Learner.create("tiny-random-smollm2", LoraSettings(), device="cpu")
    assert learner.info["precision"] == "fp32" and learner.precision.scaler is None


def test_greedy_ignores_the_models_own_sampling_defaults():
    """A model whose generation_config asks for sampling and a repetition penalty still decodes greedily, the
    same as with a neutral config: every decoding setting is passed explicitly."""
    from saie_lib.generation import Decoding, generate, generation_settings
    from saie_lib.models import load_model

    model, tokenizer, _ = load_model("tiny-random-smollm2", device="cpu")
    prompts = ["The answer is", "Two plus two"]
    plain = generate(model, tokenizer, prompts, Decoding(max_new_tokens=8), progress=False)
    model.generation_config.update(do_sample=True, temperature=2.0, top_k=3, repetition_penalty=1.8)
    try:
        assert generate(model, tokenizer, prompts, Decoding(max_new_tokens=8), progress=False) == plain
    finally:
        model.generation_config.update(do_sample=False, temperature=1.0, top_k=50, repetition_penalty=1.0)
    settings = generation_settings(Decoding(max_new_tokens=8))
    assert settings["do_sample"] is False and settings["repetition_penalty"] == 1.0 and settings["num_beams"] == 1
