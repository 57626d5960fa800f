import pytest

from saie_lib.config import EvalConfig, from_dict, load_config, recipe_overrides, to_dict


def test_recipe_loads_and_overrides_win():
    cfg = load_config("eval-smollm2-cpu", limit=5, task="mmlu")
    assert cfg.model == "smollm2-135m-instruct" and cfg.limit == 5 and cfg.task == "mmlu"


@pytest.mark.parametrize("field, value, message", [
    ("task", "squad", "'task'"),
    ("batch_size", 0, "'batch_size'"),
    ("limit", 0, "'limit'"),
    ("dtype", "int3", "'dtype'"),
    ("device", "tpu", "'device'"),
    ("max_new_tokens", "many", "'max_new_tokens'"),
    ("seed", 1.5, "'seed'"),
    ("trust_remote_code", "yes", "'trust_remote_code'"),
])
def test_invalid_values_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        from_dict(EvalConfig, {field: value})


def test_unknown_key_is_an_error():
    with pytest.raises(ValueError, match="unknown config field.*'bach_size'"):
        load_config("eval-smollm2-cpu", bach_size=4)


def test_unknown_recipe_lists_available():
    with pytest.raises(ValueError, match="eval-smollm2-cpu"):
        load_config("no-such-recipe")


def test_recipe_file_with_bad_field_names_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: x/y\nlr: 3\n")
    with pytest.raises(ValueError, match="bad.yaml.*'lr'"):
        load_config(bad)


def test_identity_ignores_locations_only():
    a = EvalConfig(data_dir="/a", results_root="/r1")
    b = EvalConfig(data_dir="/b", results_root="/r2")
    assert a.identity() == b.identity()
    assert EvalConfig(seed=1).identity() != a.identity()


def test_subjects_list_becomes_tuple_and_round_trips():
    cfg = from_dict(EvalConfig, {"task": "mmlu", "subjects": ["virology"]})
    assert cfg.subjects == ("virology",) and to_dict(cfg)["subjects"] == ["virology"]


def test_recipe_overrides_drop_none():
    assert recipe_overrides(model=None, batch_size=2) == {"batch_size": 2}


@pytest.mark.parametrize("field, value", [
    ("remark_policy", "hostile"), ("rounds", 0), ("warmup_fraction", 1.0), ("learning_rate", 0.0),
    ("max_grad_norm", -1.0), ("partner_temperature", -0.5), ("weight_decay", -0.1), ("partner", "gpt-4o"),
    ("update_target", "silver"), ("backend", "jax"),
])
def test_train_config_rejects_impossible_values_naming_the_field(field, value):
    from saie_lib.config import TrainConfig

    with pytest.raises(ValueError, match=f"'{field}'"):
        from_dict(TrainConfig, {field: value})


def test_train_config_accepts_every_partner_kind():
    from saie_lib.config import TrainConfig

    for partner in ("self", "api:gpt-4o-mini", "smollm2-360m-instruct", "Qwen/Qwen2.5-0.5B-Instruct"):
        assert from_dict(TrainConfig, {"partner": partner}).partner == partner
