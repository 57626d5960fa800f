"""Mixed precision of the training step on the tiny model (CPU autocast): bf16 and fp16-with-loss-scaling both
lower the loss like fp32 does, an fp16 overflow skips its step instead of stopping the run, and the learner
records the precision it resolved; `dtype: native` loads bfloat16 exactly where the CPU has native bf16 (and says
why), `auto` keeps its float32-on-CPU meaning, and a bfloat16 base trains like fp32 with fp32 LoRA weights and
optimiser state."""

import pytest

from saie_lib.learner import Learner, LoraSettings
from saie_lib.precision import StepPrecision, resolve_precision
from saie_lib.tasks import Example
from saie_lib.training import optimizer_step, plain_features

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


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_lowers_the_loss_like_fp32(precision):
    reference, _ = _losses("fp32")
    mixed, learner = _losses(precision)
    assert mixed[-1]["loss"] < mixed[0]["loss"] * 0.9
    assert mixed[0]["loss"] == pytest.approx(reference[0]["loss"], rel=0.05)
    assert all(p.dtype.is_floating_point and str(p.dtype) == "torch.float32" for p in learner.trainable_parameters())


@pytest.mark.slow
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


@pytest.mark.slow
def test_learner_records_its_precision():
    learner = Learner.create("tiny-random-smollm2", LoraSettings(), device="cpu")
    assert learner.info["precision"] == "fp32" and learner.precision.scaler is None


@pytest.mark.slow
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


def _bf16_base_losses(dtype: str, steps: int = 6):
    """Losses of LoRA steps with the base loaded in `dtype` (the library's own path: load, LoRA, precision)."""
    import torch

    torch.manual_seed(0)
    learner = Learner.create("tiny-random-smollm2", LoraSettings(r=8, alpha=16), device="cpu", dtype=dtype)
    optimizer = torch.optim.AdamW(learner.trainable_parameters(), lr=5e-3)
    features = plain_features(learner.tokenizer, EXAMPLES, 128)
    return [optimizer_step(learner, optimizer, features, 1.0)["loss"] for _ in range(steps)], learner, optimizer


@pytest.mark.slow
def test_bf16_base_trains_like_fp32_with_fp32_lora_and_optimiser_state():
    import torch

    reference, _, _ = _bf16_base_losses("float32")
    losses, learner, optimizer = _bf16_base_losses("bfloat16")
    assert learner.model.get_base_model().lm_head.weight.dtype == torch.bfloat16
    assert learner.info["precision"] == "bf16" and learner.info["dtype"] == "bfloat16"
    for run in (reference, losses):
        assert run[-1] < run[0] * 0.9, run
    assert losses[0] == pytest.approx(reference[0], rel=0.03)
    assert losses[-1] == pytest.approx(reference[-1], rel=0.1)
    trainable = list(learner.trainable_parameters())
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    states = [s for p in trainable for s in optimizer.state[p].values() if torch.is_tensor(s) and s.ndim]
    assert states and all(s.dtype == torch.float32 for s in states)


def test_keep_trainable_fp32_casts_only_trainable_parameters():
    import torch

    from saie_lib.precision import keep_trainable_fp32

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)).to(torch.bfloat16)
    model[0].requires_grad_(False)
    assert keep_trainable_fp32(model) == 2
    assert model[1].weight.dtype == torch.float32 and model[0].weight.dtype == torch.bfloat16


def test_dtype_resolution_keeps_auto_and_detects_native_bf16(tmp_path, monkeypatch):
    from saie_lib import precision

    assert precision.resolve_dtype("auto", "cpu")[0] == "float32"  # the rule committed runs were made with
    assert precision.resolve_dtype("auto", "cuda")[0] == "bfloat16"
    assert precision.resolve_dtype("float16", "cpu") == ("float16", "set in the config")
    with_bf16, without = tmp_path / "bf16", tmp_path / "plain"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile amx_bf16\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\nbugs\t\t: avx512_bf16\n")
    assert precision.cpu_bf16_flags(with_bf16) == ["avx512_bf16", "amx_bf16"]
    assert precision.cpu_bf16_flags(without) == [] and precision.cpu_bf16_flags(tmp_path / "none") == []
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ["avx512_bf16"])
    assert precision.resolve_dtype("native", "cpu") == ("bfloat16", "native: the CPU has avx512_bf16")
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: [])
    name, why = precision.resolve_dtype("native", "cpu")
    assert name == "float32" and "none of avx512_bf16, amx_bf16" in why


def test_loaded_model_records_its_resolved_dtype_and_why(monkeypatch):
    from saie_lib import precision
    from saie_lib.models import load_model

    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ["amx_bf16"])
    model, _, info = load_model("tiny-random-smollm2", device="cpu", dtype="native")
    assert str(model.dtype) == "torch.bfloat16" and info["dtype"] == "bfloat16"
    assert info["dtype_requested"] == "native" and info["dtype_why"] == "native: the CPU has amx_bf16"
    _, _, info = load_model("tiny-random-smollm2", device="cpu")
    assert info["dtype"] == "float32" and info["dtype_why"].startswith("auto: float32 on CPU")


def _head_inputs(model) -> list:
    """Whether each input the output head receives is contiguous, recorded after any earlier pre-hook."""
    seen = []
    model.get_output_embeddings().register_forward_pre_hook(lambda _, args: seen.append(args[0].is_contiguous()))
    return seen


def test_bf16_output_head_gets_a_contiguous_input_with_the_same_tokens(monkeypatch):
    """Generation's prefill hands the output head the strided last position, which a bf16 CPU matmul computes on a
    slow path (seconds and GBs at SmolLM2 scale): a bf16 model from load_model gets it contiguous, and decodes the
    same greedy tokens as the same model loaded without the hook."""
    from saie_lib import models, precision
    from saie_lib.generation import Decoding, generate

    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ["amx_bf16"])
    hooked, tokenizer, _ = models.load_model("tiny-random-smollm2", device="cpu", dtype="native")
    monkeypatch.setattr(models, "contiguous_head_input", lambda model: None)
    plain, _, _ = models.load_model("tiny-random-smollm2", device="cpu", dtype="native")
    prompts, decoding = ["The answer is", "Two plus two is four, and three plus three"], Decoding(max_new_tokens=6)
    seen_hooked, seen_plain = _head_inputs(hooked), _head_inputs(plain)
    assert generate(hooked, tokenizer, prompts, decoding, progress=False) == \
        generate(plain, tokenizer, prompts, decoding, progress=False)
    assert all(seen_hooked) and not all(seen_plain) and len(seen_hooked) == len(seen_plain)
    assert precision.contiguous_head_input(plain.float()) is None  # float32: not installed
