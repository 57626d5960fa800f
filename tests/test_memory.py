"""Memory on CPU. Gradient checkpointing (TrainConfig.gradient_checkpointing: on): the same losses and LoRA weights
bit for bit as without it (so it is not part of a run's identity), with far fewer bytes kept for backward.
Micro-batches (micro_batch_tokens): the same training up to rounding, with less padding."""

import pytest

from saie_lib.config import TrainConfig
from saie_lib.learner import Learner, LoraSettings, checkpoints_activations
from saie_lib.resources import allocator, peak_memory
from saie_lib.tasks import Example
from saie_lib.training import micro_batches, optimizer_step, plain_features

# Long prompts, short targets: a discussion's shape (logits are computed for the target positions only, so what
# is kept for backward is the decoder layers' activations over the whole sequence).
EXAMPLES = [Example(id=str(i), task="gsm8k", question=f"What is {i} + {i}? " * 60, answer=str(2 * i),
                    rationale=f"{i} plus {i}.") for i in range(1, 5)]


def _train(setting: str, steps: int = 3):
    import torch

    torch.manual_seed(0)
    learner = Learner.create("tiny-random-smollm2", LoraSettings(), device="cpu", gradient_checkpointing=setting)
    optimizer = torch.optim.AdamW(learner.trainable_parameters(), lr=5e-3)
    features = plain_features(learner.tokenizer, EXAMPLES, 1024)
    losses = [optimizer_step(learner, optimizer, features, 1.0)["loss"] for _ in range(steps)]
    return learner, features, losses, [p.detach().clone() for p in learner.trainable_parameters()]


def _saved_bytes(learner, features) -> int:
    """Bytes of the distinct storages autograd keeps for backward during one training forward."""
    import torch

    storages, weights = {}, {p.untyped_storage().data_ptr() for p in learner.model.parameters()}

    def keep(tensor):
        if tensor.untyped_storage().data_ptr() not in weights:  # activations, not the model's own weights
            storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    learner.for_training()
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        loss = learner.target_loss(features)  # the forward only: a recompute in backward is transient
    loss.backward()
    return sum(storages.values())


@pytest.mark.slow
def test_checkpointing_gives_the_same_training_with_less_kept_for_backward():
    import torch

    plain, features, plain_losses, plain_weights = _train("off")
    checkpointed, _, losses, weights = _train("on")
    assert losses == plain_losses and plain_losses[-1] < plain_losses[0]
    assert all(torch.equal(a, b) for a, b in zip(weights, plain_weights))
    assert _saved_bytes(checkpointed, features) < 0.5 * _saved_bytes(plain, features)


def test_checkpointing_setting():
    assert checkpoints_activations("auto", "cuda") and not checkpoints_activations("auto", "cpu")
    assert checkpoints_activations("on", "cpu") and not checkpoints_activations("off", "cuda")
    assert TrainConfig(gradient_checkpointing="on").identity() == TrainConfig().identity()
    with pytest.raises(ValueError, match="'gradient_checkpointing'"):
        TrainConfig(gradient_checkpointing="sometimes")


def test_largest_recorded_peak_names_its_run(tmp_path):
    import json

    from saie_lib.resources import allocator_note, largest_recorded_peak

    runs = [tmp_path / name for name in ("a", "b", "old", "unfinished")]
    for run in runs:
        run.mkdir()
    (runs[0] / "metrics.json").write_text(json.dumps({"resources": {"peak_rss_gb": 2.5, "allocator": "tcmalloc"}}))
    (runs[1] / "metrics.json").write_text(json.dumps({"resources": {"peak_rss_gb": 7.25, "peak_gpu_gb": None}}))
    (runs[2] / "metrics.json").write_text(json.dumps({"accuracy": 0.5}))  # made before peaks were recorded
    assert largest_recorded_peak(runs) == (7.25, runs[1])
    assert largest_recorded_peak(runs[2:]) is None
    assert allocator_note(runs[0]) == " under tcmalloc" and "not recorded" in allocator_note(runs[1])


# Micro-batches (TrainConfig.micro_batch_tokens): a mixed-target step's shape, long discussions beside short questions.
MIXED = EXAMPLES[:2] + [Example(id=f"s{i}", task="gsm8k", question=f"What is {i} + 1?", answer=str(i + 1),
                                rationale=f"{i} plus one.") for i in range(2)]


def _step_with(budget, steps: int = 3):
    import torch

    torch.manual_seed(0)
    learner = Learner.create("tiny-random-smollm2", LoraSettings(), device="cpu")
    optimizer = torch.optim.SGD(learner.trainable_parameters(), lr=1.0)  # Adam would magnify rounding in ~0 grads
    features = plain_features(learner.tokenizer, MIXED, 1024)
    losses = [optimizer_step(learner, optimizer, features, 1.0, budget)["loss"] for _ in range(steps)]
    return features, losses, [p.detach().clone() for p in learner.trainable_parameters()]


def test_micro_batches_group_rows_of_like_length_within_the_budget():
    rows = [{"input_ids": [0] * n, "id": i} for i, n in enumerate([30, 300, 40, 280, 300])]
    assert micro_batches(rows, None) == [rows]
    groups = micro_batches(rows, 600)
    assert [[r["id"] for r in g] for g in groups] == [[1, 4], [3, 2], [0]]
    assert all(len(g) * len(g[0]["input_ids"]) <= 600 for g in groups)
    assert micro_batches(rows, 10) == [[r] for r in sorted(rows, key=lambda r: -len(r["input_ids"]))]


@pytest.mark.slow
def test_micro_batches_train_as_one_batch_does_with_less_padding():
    import torch

    features, losses, weights = _step_with(None)
    grouped, grouped_losses, grouped_weights = _step_with(400)
    groups = micro_batches(grouped, 400)
    padded = [len(g) * max(len(f["input_ids"]) for f in g) for g in groups]
    assert len(groups) >= 2 and sum(padded) < 0.7 * len(features) * max(len(f["input_ids"]) for f in features)
    assert grouped_losses == pytest.approx(losses, rel=1e-5) and losses[-1] < losses[0]
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(grouped_weights, weights))


def test_micro_batch_tokens_is_part_of_a_runs_identity_only_when_set():
    assert "micro_batch_tokens" not in TrainConfig().identity()
    assert TrainConfig(micro_batch_tokens=2048).identity()["micro_batch_tokens"] == 2048
    with pytest.raises(ValueError, match="micro_batch_tokens"):
        TrainConfig(micro_batch_tokens=0)


def test_allocator_is_read_from_the_memory_map(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4.5.10\n")
    assert allocator(maps) == "tcmalloc"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    assert allocator(maps) == "glibc"
    assert allocator(tmp_path / "absent") == "unknown"
    assert peak_memory()["allocator"] in ("glibc", "tcmalloc", "jemalloc", "mimalloc", "unknown")
