"""The GPU path's fairness rules, checked on the tiny model on CPU: the untrained condition can be evaluated as
the trained conditions' learner with its adapters off (same loading path), and it then answers exactly as the
plain model does; decoding settings are explicit and recorded; the new loading fields leave old identities be."""

import dataclasses

import pytest

from saie_lib.artifacts import read_json, read_jsonl, run_file
from saie_lib.config import EvalConfig, InferenceConfig, TrainConfig, eval_config_for, load_config


def test_loading_fields_at_their_old_values_keep_the_identity():
    plain = EvalConfig()
    assert "backend" not in plain.identity() and "load_in_4bit" not in plain.identity()
    assert EvalConfig(backend="unsloth").identity()["backend"] == "unsloth"
    assert EvalConfig(load_in_4bit=True).identity()["load_in_4bit"] is True
    assert "backend" not in InferenceConfig().identity()
    assert eval_config_for(TrainConfig(backend="unsloth", load_in_4bit=True)).load_in_4bit is True


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="'backend'"):
        EvalConfig(backend="vllm")


@pytest.mark.slow
def test_base_evaluated_through_the_learner_with_adapters_off_matches_the_plain_model(data_dir, tmp_path):
    from saie_lib.stages.evaluate import run_evaluation

    plain = load_config("eval-tiny", task="commonsense_qa", limit=4, data_dir=str(data_dir),
                        results_root=str(tmp_path))
    as_learner = dataclasses.replace(plain, backend="auto")  # on CPU: the peft learner, adapters off
    out_plain, out_learner = run_evaluation(plain, progress=False), run_evaluation(as_learner, progress=False)
    assert out_plain != out_learner
    outputs = [[r["output"] for r in read_jsonl(run_file(o, "samples"))] for o in (out_plain, out_learner)]
    assert outputs[0] == outputs[1]
    env = read_json(run_file(out_learner, "env"))
    assert env["model"]["backend"] == "peft" and env["model"]["precision"] == "fp32"
    decoding = read_json(run_file(out_learner, "metrics"))["decoding"]
    assert decoding["do_sample"] is False and decoding["repetition_penalty"] == 1.0


@pytest.mark.slow
def test_gpu_check_dry_run_on_cpu(tmp_path):
    """The prepared GPU check, on the tiny architecture on CPU: every measurement runs and the record holds the
    numbers the closing note needs (Unsloth is reported unavailable where it is not installed)."""
    import sys

    from conftest import REPO

    sys.path.insert(0, str(REPO / "bench"))
    import gpu_check

    record = gpu_check.main(["--arch", "tiny", "--dry-run", "--out", str(tmp_path)])
    peft = record["backends"]["peft"]
    assert peft["training"]["tokens_per_s"] > 0 and peft["discussion_step_s"] > 0
    assert set(peft["parts"]) == {"learner_answer_s", "partner_remark_s", "learner_revision_s", "train_step_s"}
    assert peft["batching"]["speedup"] > 0 and record["projected_gsm8k_saie"]["saie_run_hours"] > 0
    assert "available" in record["backends"]["unsloth"]
    assert (tmp_path / "gpu_check-tiny.json").is_file()


def test_unsloth_covers_the_models_context_window_not_the_training_cut(data_dir, tmp_path, monkeypatch):
    """Unsloth builds its attention mask at max_seq_length, generation included: discussion prompts are longer
    than the training cut max_seq_len (on an H200, train-tiny's 313-token prompt failed against 256), so training
    loads the learner for the model's own context window."""
    from saie_lib.learner import context_window
    from saie_lib.models import resolve_model
    from saie_lib.stages import train

    tiny = resolve_model("tiny-random-smollm2").path
    assert context_window(tiny) == read_json(f"{tiny}/config.json")["max_position_embeddings"]

    class Loaded(Exception):
        pass

    asked = {}

    def load_learner(*args, **kwargs):
        asked.update(kwargs)
        raise Loaded

    monkeypatch.setattr(train, "load_learner", load_learner)
    cfg = load_config("train-tiny", cls=TrainConfig, task="gsm8k", data_dir=str(data_dir),
                      results_root=str(tmp_path))
    with pytest.raises(Loaded):
        train.open_session(cfg, tmp_path)
    assert asked.get("max_seq_length") is None
