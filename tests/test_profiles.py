"""Profiles: every committed profile validates; bad profiles fail at load time, naming the file and field."""

import pytest

from saie_lib.config import InferenceConfig, TrainConfig
from saie_lib.experiments import CONDITIONS, EXPERIMENTS, condition_configs, get_experiment
from saie_lib.profiles import available_profiles, load_profile, resolve_profile

PROFILE = """description: d
expected_wall_time: t
expected_memory: m
train: {model: tiny-random-smollm2, limit: 8, eval_limit: 4}
"""


def test_committed_profiles_load_and_state_their_budget():
    assert {"cpu-small", "colab-t4", "gpu-paper", "tiny"} <= set(available_profiles())
    for name in available_profiles():
        profile = load_profile(name)
        assert profile.expected_wall_time and profile.expected_memory and profile.description
        assert isinstance(profile.training_config("gsm8k", "saie"), TrainConfig)
        assert isinstance(profile.inference_config(), InferenceConfig)


def test_colab_profile_uses_unsloth_in_4bit_on_cuda():
    cfg = load_profile("colab-t4").training_config("mmlu", "saie")
    assert (cfg.backend, cfg.load_in_4bit, cfg.device) == ("unsloth", True, "cuda")


def test_task_overrides_apply_to_their_task_only(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(PROFILE + "tasks:\n  gsm8k: {eval_max_new_tokens: 99}\n")
    profile = load_profile(path)
    assert profile.training_config("gsm8k", "none").eval_max_new_tokens == 99
    assert profile.training_config("mmlu", "none").eval_max_new_tokens == TrainConfig.eval_max_new_tokens


def test_inference_inherits_the_learner_model(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(PROFILE + "inference: {agents: 2}\n")
    cfg = load_profile(path).inference_config()
    assert (cfg.model, cfg.agents, cfg.task) == ("tiny-random-smollm2", 2, "commonsense_qa")


@pytest.mark.parametrize("extra, message", [
    ("train_extra: 1\n", "unknown profile key"),
    ("tasks: {gsm9k: {}}\n", "gsm9k"),
    ("inference: {agents: 1}\n", "'agents'"),
])
def test_bad_profiles_name_the_problem(tmp_path, extra, message):
    path = tmp_path / "bad.yaml"
    path.write_text(PROFILE + extra)
    with pytest.raises(ValueError, match=message):
        load_profile(path)


def test_bad_train_field_names_file_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(PROFILE.replace("limit: 8", "limt: 8"))
    with pytest.raises(ValueError, match=r"bad\.yaml.*limt"):
        load_profile(path)


def test_unknown_profile_lists_the_available_ones():
    with pytest.raises(ValueError, match="cpu-small"):
        load_profile("cpu-smal")


def test_resolve_profile_auto_is_cpu_small_without_cuda():
    assert resolve_profile("auto") == "cpu-small"
    assert resolve_profile("gpu-paper") == "gpu-paper"


def test_conditions_differ_in_remark_policy_and_target_only():
    from saie_lib.conditions import condition_name

    profile = load_profile("cpu-small")
    configs = condition_configs(profile, get_experiment("commonsense"))
    assert list(configs) == list(CONDITIONS)
    assert all(condition_name(c.remark_policy, c.update_target) == name for name, c in configs.items()
               if name != "base")
    trained = [c.identity() for name, c in configs.items() if name != "base"]
    for identity in trained:
        identity.pop("remark_policy")
        identity.pop("update_target", None)
    assert all(identity == trained[0] for identity in trained)
    base = configs["base"]
    assert (base.limit, base.seed, base.max_new_tokens) == (configs["saie"].eval_limit, configs["saie"].seed,
                                                            configs["saie"].eval_max_new_tokens)


def test_every_training_experiment_has_a_task_and_a_notebook():
    from conftest import REPO

    for experiment in EXPERIMENTS.values():
        assert (REPO / "notebooks" / experiment.notebook).is_file()
    assert sorted(e.task for e in EXPERIMENTS.values() if e.is_training) == ["commonsense_qa", "gsm8k", "mmlu"]
    with pytest.raises(ValueError, match="known experiments"):
        get_experiment("physics")


def test_inference_identity_ignores_where_the_adapter_lives():
    a = InferenceConfig(adapter="/x/results/runs/p/commonsense/run-abc/adapter")
    b = InferenceConfig(adapter="../elsewhere/run-abc/adapter")
    c = InferenceConfig(adapter="/x/results/runs/p/commonsense/run-def/adapter")
    assert a.identity() == b.identity() != c.identity()


@pytest.mark.parametrize("line, seeds", [
    ("", (0,)), ("seeds: 3\n", (0, 1, 2)), ("seeds: [0, 7, 3]\n", (0, 7, 3)),
])
def test_seeds_as_a_count_or_a_list(tmp_path, line, seeds):
    path = tmp_path / "p.yaml"
    path.write_text(PROFILE + line)
    assert load_profile(path).seeds == seeds


def test_seeds_count_from_the_train_seed(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(PROFILE.replace("eval_limit: 4}", "eval_limit: 4, seed: 5}") + "seeds: 2\n")
    assert load_profile(path).seeds == (5, 6)


@pytest.mark.parametrize("line", ["seeds: 0\n", "seeds: []\n", "seeds: [0, 0]\n", "seeds: [1, 2]\n",
                                  "seeds: three\n", "seeds: true\n"])
def test_bad_seeds_name_the_field(tmp_path, line):
    path = tmp_path / "bad.yaml"
    path.write_text(PROFILE + line)
    with pytest.raises(ValueError, match=r"bad\.yaml.*'seeds'|bad\.yaml.*train\.seed"):
        load_profile(path)


def test_committed_profiles_seeds():
    assert load_profile("tiny").seeds == (0, 1)  # two: three would make the CI notebook tests too slow
    assert load_profile("cpu-small").seeds == (0,)  # three would not fit the 2-core study: the page says one


def test_first_seed_keeps_the_plain_run_identity_and_others_differ():
    from saie_lib.experiments import condition_run_dirs, seed_run_dirs

    profile = load_profile("tiny")
    experiment = get_experiment("commonsense")
    by_seed = seed_run_dirs(profile, experiment)
    assert by_seed[0] == condition_run_dirs(profile, experiment)  # seed 0 runs keep their identity
    assert set(by_seed) == set(profile.seeds) and len(by_seed) > 1
    names = {d.name for runs in by_seed.values() for d in runs.values()}
    assert len(names) == len(by_seed) * len(by_seed[0])  # every seed its own run dir for every condition


def test_marker_records_every_seed_and_reads_back(tmp_path):
    from pathlib import Path

    from saie_lib.experiments import marker_run_dirs, marker_seed_run_dirs, read_marker, write_marker

    profile = load_profile("tiny")
    experiment = get_experiment("commonsense")
    by_seed = {s: {c: Path(f"/x/{c}-{s}") for c in CONDITIONS} for s in profile.seeds}
    path = write_marker(profile, experiment, by_seed, tmp_path)
    marker = read_marker("tiny", "commonsense", tmp_path)
    assert marker_run_dirs(marker, path.parent) == {c: path.parent / f"{c}-0" for c in CONDITIONS}
    assert marker_seed_run_dirs(marker, path.parent) == {s: {c: path.parent / f"{c}-{s}" for c in CONDITIONS}
                                                         for s in profile.seeds}
    flat = write_marker(profile, experiment, by_seed[0], tmp_path / "flat")  # one seed, given flat
    assert list(marker_seed_run_dirs(read_marker("tiny", "commonsense", tmp_path / "flat"), flat.parent)) == [0]
