"""Bad configs, notebook parameters and runs that produce nothing: each gets a clear error naming the field,
file or line, or a counted outcome, and none leaves a finished run with a wrong or empty result.
(Bad data files: tests/test_bad_data.py. Bad partner replies: tests/test_partner_faults.py.)"""

import dataclasses

import pytest

from saie_lib.artifacts import atomic_write_text, read_json, run_file
from saie_lib.challenge_config import ChallengeConfig
from saie_lib.config import EvalConfig, InferenceConfig, TrainConfig, load_config

TRAIN_CASES = [
    ("seed", -1, "'seed' = -1"),
    ("seed", 2**40, "'seed'"),
    ("model", "", "'model' is empty"),
    ("model", "   ", "'model' is empty"),
    ("study", "../../..", "'study'"),
    ("study", "/abs/path", "'study'"),
    ("study", "a//b", "'study'"),
    ("study", "", "'study'"),
    ("learning_rate", float("inf"), "'learning_rate'"),
    ("learning_rate", float("nan"), "'learning_rate'"),
    ("learning_rate", -1e-4, "'learning_rate'"),
    ("max_grad_norm", 0.0, "'max_grad_norm'"),
    ("partner_timeout_s", 0.0, "'partner_timeout_s'"),
    ("partner_max_retries", -1, "'partner_max_retries'"),
    ("partner_concurrency", 0, "'partner_concurrency'"),
    ("partner_outage_wait_s", -5.0, "'partner_outage_wait_s'"),
    ("partner", "nobody", "'partner'"),
    ("remark_policy", "hostile", "'remark_policy'"),
    ("rounds", 0, "'rounds'"),
    ("warmup_fraction", 1.5, "'warmup_fraction'"),
    # absurd sizes are refused when the config is read, naming the bound (not a MemoryError or an endless run)
    ("rounds", 10**12, "'rounds' = 1000000000000; expected at most 32"),
    ("limit", 10**12, "'limit' = 1000000000000; expected at most 1,000,000"),
    ("learner_max_new_tokens", 10**9, "'learner_max_new_tokens' = 1000000000; expected at most 32,768"),
    ("stance_retries", 10**6, "'stance_retries' = 1000000; expected at most 32"),
    ("remark_budget", 2000, "'remark_budget' = 2000; expected at most max_seq_len"),
    ("remark_budget", 0, "'remark_budget' = 0"),
]


@pytest.mark.parametrize("field, value, message", TRAIN_CASES, ids=[f"{f}={v!r}" for f, v, _ in TRAIN_CASES])
def test_bad_train_field_is_named(field, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("cls, field, value, bound", [
    (InferenceConfig, "agents", 10**12, "32"),
    (InferenceConfig, "rounds", 10**12, "32"),
    (EvalConfig, "max_new_tokens", 10**9, "32,768"),
    (EvalConfig, "batch_size", 10**9, "4,096"),
    (ChallengeConfig, "limits", (10**12, 5), "1,000,000"),
    (ChallengeConfig, "max_new_tokens", (8, 10**9), "32,768"),
], ids=lambda v: getattr(v, "__name__", str(v)))
def test_absurd_sizes_name_field_and_bound(cls, field, value, bound):
    with pytest.raises(ValueError, match=f"'{field}' = .*expected at most {bound}"):
        cls(**{field: value})


def test_remark_cache_that_is_a_folder_is_a_config_error(tmp_path):
    with pytest.raises(ValueError, match="'remark_cache' = .* is a folder, not a file"):
        TrainConfig(remark_cache=str(tmp_path))


@pytest.mark.parametrize("cls", [EvalConfig, TrainConfig, InferenceConfig])
def test_every_config_checks_seed_model_and_study(cls):
    for field, value in (("seed", -1), ("model", ""), ("study", "../x")):
        with pytest.raises(ValueError, match=f"'{field}'"):
            cls(**{field: value})


def test_results_root_that_is_a_file_is_named(tmp_path):
    target = tmp_path / "results.txt"
    target.write_text("not a folder")
    with pytest.raises(ValueError, match="'results_root'.*is a file"):
        EvalConfig(results_root=str(target))


def test_patience_fields_do_not_change_a_run_identity():
    assert TrainConfig().identity() == TrainConfig(partner_timeout_s=5.0, partner_max_retries=9,
                                                   partner_concurrency=2, partner_outage_wait_s=30.0).identity()


# Each level multiplies by nine: nine levels would be 9**9 (387 million) strings, built by any YAML loader that
# expands aliases; refused at the first alias instead.
BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize("text, message", [
    ("model: a\nmodel: b\n", r"line 2: not valid YAML \(duplicate key 'model' \(first at line 1\)\)"),
    ("model: [unclosed\n", "line 2: not valid YAML"),
    ("- just\n- a list\n", "must be a mapping"),
    ("bach_size: 4\n", r"unknown config field\(s\) \['bach_size'\]"),
    ("batch_size: four\n", "'batch_size' = 'four'; expected int"),
    ("seed: -3\n", "'seed' = -3"),
    ("max_new_tokens: 1000000000\n", "'max_new_tokens' = 1000000000; expected at most 32,768"),
    (BILLION_LAUGHS, r"line 2: not valid YAML \(alias \*a is not allowed in a config file"),
])
def test_bad_recipe_file_names_file_and_line(tmp_path, text, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"recipe.yaml.*{message}" if "unknown" not in message else message):
        load_config(path)


def test_non_utf8_recipe_names_the_file(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_bytes(b"model: caf\xe9\n")
    with pytest.raises(ValueError, match="recipe.yaml: cannot read this recipe"):
        load_config(path)


def test_oversized_config_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    from saie_lib import yaml_files

    monkeypatch.setattr(yaml_files, "MAX_YAML_BYTES", 64)
    path = tmp_path / "recipe.yaml"
    path.write_text("model: tiny\n" + "# padding\n" * 10)
    with pytest.raises(ValueError, match=r"recipe.yaml: this recipe is 112 bytes; a config file may hold at most 64"):
        load_config(path)


def profile_with(tmp_path, text: str):
    """The tiny profile with `text` appended (a later key would be a duplicate: callers add new keys only)."""
    from saie_lib.paths import configs_dir

    path = tmp_path / "mine.yaml"
    base = (configs_dir() / "profiles" / "tiny.yaml").read_text()
    path.write_text("\n".join(line for line in base.splitlines() if not line.startswith("seeds:")) + "\n" + text)
    return path


@pytest.mark.parametrize("text, message", [
    ("seeds: 1000000000000\n", r"'seeds' = 1000000000000; expected at most 100 seeds"),
    ("seeds: [0, 4294967296]\n", r"'seeds' = \[0, 4294967296\]; expected seeds from 0 to 4294967295"),
    ("description2: &x a\nnotes: *x\n", r"line \d+: not valid YAML \(alias \*x is not allowed"),
])
def test_bad_profile_sizes_and_aliases_are_named(tmp_path, text, message):
    from saie_lib.profiles import load_profile

    with pytest.raises(ValueError, match=f"mine.yaml.*{message}"):
        load_profile(profile_with(tmp_path, text))


def test_a_study_file_with_an_alias_is_refused(tmp_path):
    from saie_lib.demo import run_demo

    path = tmp_path / "study.yaml"
    path.write_text(BILLION_LAUGHS)
    with pytest.raises(ValueError, match=r"study.yaml, line 2: not valid YAML \(alias \*a"):
        run_demo(path, results_root=tmp_path)


def test_bad_profile_yaml_names_the_file(tmp_path):
    from saie_lib.profiles import load_profile

    path = tmp_path / "mine.yaml"
    path.write_text("description: x\ndescription: y\n")
    with pytest.raises(ValueError, match="mine.yaml, line 2: .*duplicate key 'description'"):
        load_profile(path)


@pytest.mark.slow
def test_misspelt_notebook_parameter_is_refused_with_the_known_ones():
    from saie_lib.notebook_runner import check_parameters

    known = r"'data_dir', 'profile', 'results_root'"
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['proflie'\].*" + known):
        check_parameters("10_math_gsm8k.ipynb", {"proflie": "cpu-small"})
    check_parameters("10_math_gsm8k.ipynb", {"profile": "cpu-small", "data_dir": None})


def test_a_run_that_evaluated_nothing_is_not_finished(tmp_path):
    from saie_lib.stages import UnfinishedRunError, write_metrics

    cfg = EvalConfig(results_root=str(tmp_path))
    with pytest.raises(UnfinishedRunError, match="evaluated 0 examples"):
        write_metrics(tmp_path / "run", cfg, {"n": 0, "accuracy": 0.0})
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_duplicate_example_ids_are_refused_before_generation():
    from saie_lib.evaluation import evaluate
    from saie_lib.tasks import Example

    twins = [Example(id="x", task="gsm8k", question=q, answer="1") for q in ("one?", "two?")]
    with pytest.raises(ValueError, match=r"appear more than once: \['x'\]"):
        evaluate(None, None, twins)


def test_damaged_partial_log_says_how_to_resume(tmp_path):
    from saie_lib.evaluation import _resumed_rows

    log = tmp_path / "samples.partial.jsonl"
    log.write_text('{"id": "a"}\n{broken\n{"id": "c"}\n')
    with pytest.raises(ValueError, match=r"samples.partial.jsonl:2: not valid JSON.*delete that line"):
        _resumed_rows(log)


def test_stale_temp_files_are_cleared(tmp_path):
    from saie_lib.artifacts import remove_stale_temp_files

    atomic_write_text(tmp_path / "metrics.json", "{}")
    (tmp_path / ".samples.jsonl.k3j4h").write_text("half a write")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".rng.pt.x1").write_text("half")
    assert sorted(p.name for p in remove_stale_temp_files(tmp_path)) == [".rng.pt.x1", ".samples.jsonl.k3j4h"]
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["metrics.json"]


@pytest.mark.slow
def test_failed_start_leaves_no_run_dir(data_dir, tmp_path):
    from saie_lib.stages.evaluate import eval_run_dir, run_evaluation

    cfg = load_config("eval-tiny", task="gsm8k", limit=2, data_dir=str(data_dir), results_root=str(tmp_path),
                      model=str(tmp_path / "no-such-model"))
    with pytest.raises(Exception):  # noqa: B017 - whatever the loader raises, the dir must go
        run_evaluation(cfg, progress=False)
    assert not eval_run_dir(cfg).exists()


@pytest.mark.slow
def test_diverged_training_stops_at_the_step_and_stays_unfinished(data_dir, tmp_path, monkeypatch):
    from saie_lib.learner import Learner
    from saie_lib.stages import UnfinishedRunError
    from saie_lib.stages.train import train, training_run_dir

    cfg = load_config("train-tiny", cls=TrainConfig, task="gsm8k", data_dir=str(data_dir),
                      results_root=str(tmp_path), remark_cache=str(tmp_path / "remarks.sqlite"))
    calls = {"n": 0}
    original = Learner.target_loss

    def nan_on_second_step(self, features):
        calls["n"] += 1
        loss = original(self, features)
        return loss * float("nan") if calls["n"] == 2 else loss

    monkeypatch.setattr(Learner, "target_loss", nan_on_second_step)
    with pytest.raises(UnfinishedRunError, match=r"diverged at step 2 .*loss is nan.*'learning_rate'"):
        train(cfg, progress=False)
    out = training_run_dir(cfg)
    assert out.is_dir() and not run_file(out, "metrics").exists()
    assert read_json(run_file(out, "config"))["identity"]["learning_rate"] == cfg.learning_rate
    assert dataclasses.replace(cfg).learning_rate == cfg.learning_rate


def test_max_new_tokens_beyond_the_model_context_is_refused_before_decoding(tiny):
    from saie_lib.generation import Decoding, generate

    model, tokenizer, _ = tiny
    with pytest.raises(ValueError, match="max_new_tokens = 5,000 is more than the model's context of 4,096 tokens"):
        generate(model, tokenizer, ["What is 2 + 2?"], Decoding(max_new_tokens=5000), progress=False)


@pytest.mark.slow
def test_a_config_beyond_the_model_context_names_the_field_and_leaves_no_run(data_dir, tmp_path):
    from saie_lib.stages.evaluate import eval_run_dir, run_evaluation

    cfg = load_config("eval-tiny", task="gsm8k", limit=2, data_dir=str(data_dir), results_root=str(tmp_path),
                      max_new_tokens=5000)
    with pytest.raises(ValueError, match=r"'max_new_tokens' = 5000 is more than the model's context of 4,096"):
        run_evaluation(cfg, progress=False)
    assert not eval_run_dir(cfg).exists()
