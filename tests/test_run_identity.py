"""Every committed run is still found by the current code: its config, rebuilt through today's config classes
and stage identities, hashes to the name of the dir it lives in (so `make reproduce` reuses it). The committed
runs used the reference GGUF, which `auto` resolves to without the Hub: the tests ask offline, with an empty
Hub cache, so they hold on a machine that reaches the Hub too (where `auto` means other weights, another id)."""

import pytest
from conftest import REPO

from saie_lib.artifacts import read_json, stable_hash
from saie_lib.config import EvalConfig, InferenceConfig, TrainConfig, from_dict

RUN_CONFIGS = sorted((REPO / "results" / "runs").rglob("config.json"))


@pytest.fixture(autouse=True)
def without_the_hub(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from saie_lib.weight_digests import hub_revision

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    hub_revision.cache_clear()
    yield
    hub_revision.cache_clear()


def _stage_identity(config: dict):
    from saie_lib.challenge_config import ChallengeConfig
    from saie_lib.stages import challenge, discuss, evaluate, train

    if "final_max_new_tokens" in config:
        return challenge.run_identity(from_dict(ChallengeConfig, config))
    if "remark_policy" in config:
        return train.run_identity(from_dict(TrainConfig, config))
    if "settings" in config:
        return discuss.run_identity(from_dict(InferenceConfig, config))
    return evaluate.run_identity(from_dict(EvalConfig, config))


def test_there_are_committed_runs():
    assert len(RUN_CONFIGS) >= 20


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: p.parent.name)
def test_committed_run_identity_is_unchanged(path):
    record = read_json(path)
    identity = _stage_identity(record["config"])
    assert identity == record["identity"]
    assert path.parent.name.endswith("-" + stable_hash(identity))
