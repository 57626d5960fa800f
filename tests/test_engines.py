"""Generation engines without vLLM installed: the config field `generation` and the run identity, the partner
spec, the server's life (start, a failed start with its log, stop that leaves no process) and what the engine
and the vLLM partner do when a server dies mid-run. The server here is tests/fake_vllm_server.py; the real
engine is tests/test_vllm.py (`make test-vllm`)."""

import os
import signal
import sys
from dataclasses import dataclass

import pytest
from conftest import REPO

from saie_lib import vllm_server
from saie_lib.config import EvalConfig, InferenceConfig, TrainConfig, eval_config_for
from saie_lib.config_checks import check_partner
from saie_lib.engines import VllmEngine, VllmEngineError
from saie_lib.generation import Decoding, generate, is_engine
from saie_lib.partners import Sampling
from saie_lib.partners.vllm import VllmPartner
from saie_lib.stages.evaluate import run_identity
from saie_lib.vllm_server import ServerSpec, VllmServer, VllmServerError, shared_server, stop_all

FAKE = REPO / "tests" / "fake_vllm_server.py"


@dataclass(frozen=True)
class FakeSpec(ServerSpec):
    """The fake server in place of vLLM's, with its own options."""

    fake_args: tuple[str, ...] = ()

    def command(self, port: int) -> list[str]:
        return [sys.executable, str(FAKE), str(port), *self.fake_args]


@pytest.fixture(autouse=True)
def fake_vllm(monkeypatch):
    monkeypatch.setattr(vllm_server, "require_vllm", lambda: None)
    yield
    stop_all()


class Tokens:
    """A tokenizer stand-in: one id per character."""

    eos_token_id, unk_token_id, chat_template = 0, None, "x"

    def __call__(self, texts, add_special_tokens=True):
        return {"input_ids": [[ord(c) for c in t] for t in texts]}

    def convert_tokens_to_ids(self, token):
        return None


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_generation_is_left_out_of_the_identity_at_hf_and_recorded_otherwise():
    assert "generation" not in EvalConfig().identity() and "generation" not in TrainConfig().identity()
    assert EvalConfig(generation="vllm").identity()["generation"] == "vllm"
    assert run_identity(EvalConfig()) != run_identity(EvalConfig(generation="vllm"))
    assert eval_config_for(TrainConfig(generation="vllm", eval_limit=7)) == \
        EvalConfig(study="saie", generation="vllm", backend="auto", limit=7, batch_size=8, max_new_tokens=256)


@pytest.mark.parametrize("fields, message", [
    ({"generation": "sglang"}, "'generation' = 'sglang'; expected one of hf, vllm"),
    ({"generation": "vllm", "backend": "unsloth"}, "needs backend 'peft' or 'auto'"),
    ({"generation": "vllm", "load_in_4bit": True}, "load_in_4bit false"),
])
def test_generation_field_is_checked(fields, message):
    for cls in (EvalConfig, InferenceConfig):
        with pytest.raises(ValueError, match=message):
            cls(**fields)
    with pytest.raises(ValueError, match="merged_generation"):
        TrainConfig(generation="vllm", merged_generation=True)


def test_partner_spec_vllm():
    check_partner("vllm:smollm2-135m-instruct")
    with pytest.raises(ValueError, match="'vllm:<model>'"):
        check_partner("vllm:")


def test_server_command_is_the_openai_entrypoint_on_localhost_without_the_models_generation_config():
    command = ServerSpec("/models/m", "m", dtype="bfloat16", extra_args=("--enforce-eager",)).command(8123)
    assert command[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    joined = " ".join(command)
    for part in ("--model /models/m", "--served-model-name m", "--dtype bfloat16", "--host 127.0.0.1",
                 "--port 8123", "--generation-config vllm", "--enforce-eager"):
        assert part in joined


def test_missing_vllm_says_what_to_install(monkeypatch):
    monkeypatch.undo()
    monkeypatch.setattr(vllm_server.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="make test-vllm"):
        VllmServer(ServerSpec("m", "m")).start()


def test_server_starts_answers_and_stops_with_its_whole_process_group():
    server = VllmServer(FakeSpec("m", "m")).start()
    pgid = server.process.pid
    assert server.alive() and server.version() == "fake-0" and server.base_url.startswith("http://127.0.0.1:")
    server.stop()
    assert not server.alive() and not group_exists(pgid)


def test_a_server_that_fails_to_start_is_reported_with_its_log():
    with pytest.raises(VllmServerError, match=r"exited with code 3 while starting(.|\n)*no config.json"):
        VllmServer(FakeSpec("m", "m", fake_args=("--fail",))).start()


def test_engine_restarts_a_server_that_died_mid_call_and_sends_only_the_unanswered_prompts(tmp_path):
    spec = FakeSpec("m", "m", fake_args=("--die-after", "3", "--once-file", str(tmp_path / "died")))
    server = VllmServer(spec).start()
    engine = VllmEngine(Tokens(), "m", "float32", server=server)
    prompts = [f"prompt number {i:02d}" for i in range(12)]
    texts = generate(engine, None, prompts, Decoding(max_new_tokens=4))
    assert is_engine(engine) and (tmp_path / "died").exists() and server.restarts == 1
    assert texts == [f"tokens={len(p)} last={ord(p[-1])}" for p in prompts]
    assert 12 < engine.requests_sent < 24  # the 3 answered before the death were not sent again
    assert engine.engine_info["restarts"] == 1


def test_engine_reports_a_server_that_keeps_dying(tmp_path):
    server = VllmServer(FakeSpec("m", "m")).start()
    engine = VllmEngine(Tokens(), "m", "float32", server=server, max_restarts=0)
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()
    with pytest.raises(VllmEngineError, match="gave no completion for 2 of 2 prompts(.|\n)*died again"):
        engine.generate(["a", "b"], Decoding())


def test_vllm_partner_restarts_its_server_and_keeps_the_replies_that_arrived(tmp_path):
    spec = FakeSpec("m", "m", fake_args=("--die-after", "2", "--once-file", str(tmp_path / "died")))
    partner = VllmPartner("m", spec=spec, weights_id="local/float32", concurrency=1, backoff_s=0.01)
    conversations = [[{"role": "user", "content": f"question {i}"}] for i in range(5)]
    replies = partner.chat(conversations, Sampling(max_new_tokens=8))
    assert [r.text for r in replies] == [f"A remark on: question {i}" for i in range(5)]
    assert partner.server.restarts == 1 and partner.model_id == "vllm:m@local/float32"
    assert partner.requests_sent - partner.retries == 5 + 1  # five conversations, the one in flight sent again


def test_shared_server_is_one_per_spec_and_restarted_when_dead():
    spec = FakeSpec("m", "m")
    first = shared_server(spec)
    assert shared_server(spec) is first
    first.stop()
    assert shared_server(spec) is first and first.alive() and first.restarts == 1


def test_connected_partner_needs_no_key_and_is_named_by_its_url(monkeypatch):
    partner = VllmPartner("big-model", base_url="http://gpu-box:8000/v1", api_key_env="OPENAI_API_KEY")
    assert partner.model_id == "vllm:big-model@http://gpu-box:8000/v1" and partner.api_key_env is None
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert VllmPartner("m", base_url="http://h/v1", api_key_env="OPENAI_API_KEY").api_key_env == "OPENAI_API_KEY"

