"""Gradient checkpointing on CPU (TrainConfig.gradient_checkpointing: on): the same losses and LoRA weights bit for
bit as without it (so it is not part of a run's identity), with far fewer bytes kept for backward."""

import pytest

from saie_lib.config import TrainConfig
from saie_lib.learner import Learner, LoraSettings, checkpoints_activations
from saie_lib.tasks import Example
from saie_lib.training import optimizer_step, plain_features

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

    from saie_lib.resources import largest_recorded_peak

    runs = [tmp_path / name for name in ("a", "b", "old", "unfinished")]
    for run in runs:
        run.mkdir()
    (runs[0] / "metrics.json").write_text(json.dumps({"resources": {"peak_rss_gb": 2.5}}))
    (runs[1] / "metrics.json").write_text(json.dumps({"resources": {"peak_rss_gb": 7.25, "peak_gpu_gb": None}}))
    (runs[2] / "metrics.json").write_text(json.dumps({"accuracy": 0.5}))  # made before peaks were recorded
    assert largest_recorded_peak(runs) == (7.25, runs[1])
    assert largest_recorded_peak(runs[2:]) is None
