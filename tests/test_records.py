"""Committed run records are portable (no machine path, no secret) and keep their run identities;
unit tests of saie_lib.portable and saie_lib.record_audit. Fast: no model, no torch."""

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from saie_lib import portable as P
from saie_lib import record_audit as A
from saie_lib.artifacts import stable_hash
from saie_lib.config import LOCATION_FIELDS

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
CONFIGS = sorted((RESULTS / "runs").rglob("config.json"))
HASH_SUFFIX = re.compile(r"-([0-9a-f]{10})$")


# --- the committed records ------------------------------------------------------------------------------

def test_committed_results_name_no_machine_and_hold_no_secret():
    findings = A.find_unportable(RESULTS)
    assert findings == [], "not portable (fix with python -m saie_lib.record_audit --rewrite results ...):\n" + \
        "\n".join(f"{name}:{line}: {text}" for name, line, text in findings)


def test_there_are_committed_runs_to_check():
    assert CONFIGS, "no results/runs/**/config.json found"


@pytest.mark.parametrize("config_path", CONFIGS, ids=lambda p: str(p.parent.relative_to(RESULTS)))
def test_run_dir_name_ends_with_the_hash_of_its_identity(config_path):
    """Every committed run dir is built from a run_identity: <name>-<stable_hash(identity)>."""
    record = json.loads(config_path.read_text(encoding="utf-8"))
    identity = record["identity"]
    suffix = HASH_SUFFIX.search(config_path.parent.name)
    assert suffix, f"{config_path.parent.name}: run dir name does not end with -<10 hex digits>"
    assert stable_hash(identity) == suffix.group(1), (
        f"{config_path}: identity hashes to {stable_hash(identity)}, the dir name says {suffix.group(1)}; "
        "the identity section was edited (never rewrite it) or the run dir was renamed")
    assert not set(LOCATION_FIELDS) & set(identity), f"{config_path}: a location field is in the identity"


# --- portable_path / portable ---------------------------------------------------------------------------

@pytest.fixture
def roots(tmp_path, monkeypatch):
    """A repo with its results root inside, a data dir and a cache dir elsewhere, and a home dir."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    found = {"repo_root": tmp_path / "repo", "data_dir": tmp_path / "data", "cache_dir": home / ".cache" / "saie"}
    found["results_root"] = found["repo_root"] / "results"
    return {**found, "home": home}


def _map(path, roots):
    return P.portable_path(path, **{k: v for k, v in roots.items() if k != "home"})


def test_paths_under_the_results_root_become_relative_to_it(roots):
    adapter = roots["results_root"] / "runs" / "cpu-small" / "commonsense" / "run-0123456789" / "adapter"
    assert _map(adapter, roots) == "runs/cpu-small/commonsense/run-0123456789/adapter"
    assert _map(str(adapter) + "/", roots) == "runs/cpu-small/commonsense/run-0123456789/adapter"


def test_the_results_root_itself_maps_through_the_repo(roots):
    assert _map(roots["results_root"], roots) == "results"
    outside = {**roots, "results_root": roots["repo_root"].parent / "elsewhere"}
    assert _map(outside["results_root"], outside) == "."


def test_data_and_cache_dirs_become_variables(roots):
    assert _map(roots["data_dir"], roots) == "$SAIE_DATA_DIR"
    assert _map(roots["data_dir"] / "gsm8k" / "test.jsonl", roots) == "$SAIE_DATA_DIR/gsm8k/test.jsonl"
    assert _map(roots["cache_dir"] / "models" / "m", roots) == "$SAIE_CACHE_DIR/models/m"  # before home


def test_repo_and_home_paths(roots):
    assert _map(roots["repo_root"] / "notebooks" / "10_math_gsm8k.ipynb", roots) == "notebooks/10_math_gsm8k.ipynb"
    assert _map(roots["repo_root"], roots) == "."
    assert _map(roots["home"] / "models" / "x", roots) == "~/models/x"


def test_other_paths_and_strings_are_unchanged(roots):
    sibling = str(roots["repo_root"]) + "2/x"  # shares a prefix with the repo, but is not inside it
    for value in ("/opt/elsewhere/file.txt", sibling, "runs/x/adapter", "$SAIE_DATA_DIR/gsm8k", "~/x", "hello"):
        assert _map(value, roots) == value


def test_defaults_come_from_saie_lib_paths_and_the_environment(roots, monkeypatch):
    monkeypatch.setenv("SAIE_RESULTS_DIR", str(roots["results_root"]))
    monkeypatch.setenv("SAIE_DATA_DIR", str(roots["data_dir"]))
    monkeypatch.setenv("SAIE_CACHE_DIR", str(roots["cache_dir"]))
    assert P.portable_path(roots["results_root"] / "runs" / "a") == "runs/a"
    assert P.portable_path(roots["data_dir"] / "mmlu") == "$SAIE_DATA_DIR/mmlu"
    assert P.portable_path(roots["cache_dir"] / "m") == "$SAIE_CACHE_DIR/m"
    monkeypatch.delenv("SAIE_DATA_DIR")
    assert P.portable_path(roots["data_dir"] / "mmlu") == str(roots["data_dir"] / "mmlu")  # no data root


def test_portable_maps_nested_structures_and_leaves_the_rest(roots):
    kwargs = {k: v for k, v in roots.items() if k != "home"}
    run = roots["results_root"] / "runs" / "r"
    record = {
        "config": {"results_root": str(roots["results_root"]), "data_dir": roots["data_dir"], "limit": 10,
                   "adapter": None, "settings": ["individual", "multi_agent"]},
        "env": {"model": {"path": str(roots["cache_dir"] / "models" / "m"), "dtype": "float32"}},
        "runs": [run, (str(run / "adapter"), 1.5, True)],
        str(run): "a dict key is left as it is",
        "note": "a sentence mentioning /opt/x is not a path",
    }
    before = json.dumps(record, default=str, sort_keys=True)
    out = P.portable(record, **kwargs)
    assert out["config"] == {"results_root": "results", "data_dir": "$SAIE_DATA_DIR", "limit": 10,
                             "adapter": None, "settings": ["individual", "multi_agent"]}
    assert out["env"]["model"] == {"path": "$SAIE_CACHE_DIR/models/m", "dtype": "float32"}
    assert out["runs"] == ["runs/r", ("runs/r/adapter", 1.5, True)]
    assert out[str(run)] == "a dict key is left as it is"
    assert out["note"] == record["note"]
    assert json.dumps(record, default=str, sort_keys=True) == before  # the input is not modified
    json.dumps(out)  # Paths came back as str


def test_rewrite_text_maps_paths_inside_text(roots):
    pairs = P.root_labels(**{k: v for k, v in roots.items() if k != "home"})
    text = f"{{'base': PosixPath('{roots['results_root']}/runs/a'),\n 'data': '{roots['data_dir']}'}}"
    assert P.rewrite_text(text, pairs) == "{'base': PosixPath('runs/a'),\n 'data': '$SAIE_DATA_DIR'}"


# --- find_unportable and the command line ---------------------------------------------------------------

def test_find_unportable_catches_paths_and_secrets_and_ignores_relative_paths(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "env.json").write_text('{\n  "path": "/home/alice/x",\n  "rel": "runs/x"\n}\n')
    (tmp_path / "notes.md").write_text("key: sk-abcdefgh12345678\nsee runs/x and results/runs/x/home/y\n")
    (tmp_path / "ok.jsonl").write_text('{"adapter": "runs/x/adapter", "data": "$SAIE_DATA_DIR/gsm8k"}\n')
    (tmp_path / "figure.png").write_bytes(b"\x89PNG\0 /home/alice/x")  # binary: skipped
    (tmp_path / "run" / "adapter").mkdir()
    (tmp_path / "run" / "adapter" / "adapter_config.json").write_text('"/home/alice/x"')  # git-ignored
    assert A.find_unportable(tmp_path) == [("notes.md", 1, "sk-abcdefgh12345678"),
                                           ("run/env.json", 2, "/home/alice/x")]


@pytest.mark.parametrize("text", ["Authorization: Bearer abcdef123456789", "AKIAABCDEFGHIJKLMNOP",
                                  "hf_" + "a1" * 12, r"C:\\Users\\bob\\x", "/mnt/data/x", "/Users/bob/x"])
def test_find_unportable_kinds(tmp_path, text):
    (tmp_path / "f.txt").write_text(f"x {text}\n")
    assert len(A.find_unportable(tmp_path)) == 1


def test_cli_rewrites_in_the_files_own_formatting_and_never_the_identity(tmp_path, capsys):
    old = "/mnt/oldclone"
    config = {"identity": {"adapter": "run-1/adapter", "note": f"{old}/kept"},
              "config": {"results_root": f"{old}/results", "adapter": f"{old}/results/runs/s/run-1/adapter"}}
    (tmp_path / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    notebook = {"cells": [{"cell_type": "code", "source": [f'results_root = "{old}/results"\n'], "outputs": [
        {"data": {A.WIDGET_VIEW: {"model_id": "abc"}, "text/plain": ["100%|##| 2/2"]}, "metadata": {},
         "output_type": "display_data"},
        {"data": {A.WIDGET_VIEW: {"model_id": "def"}}, "metadata": {}, "output_type": "display_data"}]}],
        "metadata": {"widgets": {"state": {}}, "papermill": {"input_path": f"{old}/notebooks/n.ipynb"}},
        "nbformat": 4}
    (tmp_path / "n.ipynb").write_text(json.dumps(notebook, indent=1, ensure_ascii=False))
    assert A.main(["--check", str(tmp_path)]) == 1
    assert A.main(["--rewrite", str(tmp_path), "--old-root", f"{old}/results=", "--old-root", f"{old}=",
                   "--strip-widgets"]) == 0
    config["config"] = {"results_root": "results", "adapter": "runs/s/run-1/adapter"}
    assert (tmp_path / "config.json").read_text() == json.dumps(config, indent=2, sort_keys=True) + "\n"
    cell = notebook["cells"][0]
    cell["source"], cell["outputs"] = ['results_root = "results"\n'], [
        {"data": {"text/plain": ["100%|##| 2/2"]}, "metadata": {}, "output_type": "display_data"}]
    notebook["metadata"] = {"papermill": {"input_path": "notebooks/n.ipynb"}}
    assert (tmp_path / "n.ipynb").read_text() == json.dumps(notebook, indent=1, ensure_ascii=False)
    capsys.readouterr()
    assert A.main(["--check", str(tmp_path)]) == 1  # the identity keeps its path: it names the run
    assert capsys.readouterr().out.strip() == f"config.json:8: {old}/kept"


def test_rewriting_the_committed_results_again_changes_nothing(tmp_path):
    """The committed records are already in their final form, and the rewriter reproduces every file's
    formatting (a record it could not re-dump byte for byte would raise here)."""
    copy = tmp_path / "results"
    shutil.copytree(RESULTS, copy, ignore=shutil.ignore_patterns("*.png"))
    pairs = [(os.path.normpath(str(tmp_path / "clone" / "results")), ""), (str(tmp_path / "clone"), "")]
    assert A.rewrite_tree(copy, pairs, widgets=True) == []
