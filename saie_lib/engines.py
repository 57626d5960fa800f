"""Generation engines: where the tokens of evaluation, inference-time discussion and robustness come from.

The config field `generation` chooses (per profile, in its `train` section; recorded in a run's identity only
when it is not the default):
- `hf` (default, the reference): the model object, through saie_lib.generation.generate (HF `generate`, or the
  greedy loop on CPU), batch by batch.
- `vllm`: a `VllmEngine`, a vLLM server (saie_lib.vllm_server) that gets every prompt of a call at once (one
  request each, all in flight: the engine's continuous batching) as the token ids HF would have decoded from.
  `generation.generate` hands an engine its prompts, so every caller works on both.

A trained LoRA adapter is merged into a temporary float32 checkpoint that a server of its own loads
(`merged_checkpoint`): on CPU, `--enable-lora` slows every request, and a merged adapter served in float32
gives HF+peft's greedy answers. The server and the checkpoint are removed by `close()`. A base model is served
by a process-wide shared server (`vllm_server.shared_server`), also used by a `vllm:<model>` partner of the
same model and dtype. Each engine's `engine_info` (recorded in metrics.json, `generation`) says which path
ran: the engine's version, dtype, weights (base, or merged adapter), the server and its restarts.

A server that dies during a call is restarted (at most `max_restarts` times per call) and only the prompts
without an answer are sent again; a remote server (`base_url`) that stops answering is reported.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Iterator, Sequence

from .artifacts import stable_hash
from .generation import Decoding, cut_at_stop, encode_prompts, is_engine, stop_token_ids
from .paths import cache_dir
from .progress import progress_bar
from .vllm_server import (
    ServerSpec,
    VllmServer,
    describe,
    extra_args_from_env,
    require_vllm,
    server_version,
    shared_server,
    vllm_version,
)

MAX_CONCURRENT_REQUESTS = 256  # requests in flight per call; the server queues what its batch cannot hold
REQUEST_TIMEOUT_S = 3600.0  # one completion on a loaded 2-core CPU can wait behind hundreds of others
MERGED_WEIGHTS = "LoRA adapter merged into a float32 checkpoint (no --enable-lora), served in {dtype}"


class VllmEngineError(RuntimeError):
    """Prompts got no completion: the server refused them, or died more often than allowed."""


class VllmEngine:
    """Completions from a vLLM server for rendered prompts, in input order (see the module doc)."""

    serving_engine = True  # saie_lib.generation.is_engine

    def __init__(self, tokenizer: Any, served_name: str, dtype: str, *, server: VllmServer | None = None,
                 base_url: str | None = None, weights: str = "base", owns_server: bool = False,
                 cleanup: Path | None = None, max_restarts: int = 2, model_info: dict | None = None):
        if (server is None) == (base_url is None):
            raise ValueError("VllmEngine needs a server it started or the base_url of one, not both")
        self.tokenizer, self.served_name, self.dtype, self.weights = tokenizer, served_name, dtype, weights
        self.server, self._base_url, self.owns_server, self.cleanup = server, base_url, owns_server, cleanup
        self.max_restarts, self.model_info = max_restarts, model_info or {}
        self.stop_ids = stop_token_ids(tokenizer)
        self.requests_sent = 0
        self._version: str | None = None

    @property
    def base_url(self) -> str:
        return self.server.base_url if self.server is not None else self._base_url

    @property
    def engine_info(self) -> dict[str, Any]:
        if self._version is None:
            self._version = server_version(self.base_url.removesuffix("/v1"))
        return {"engine": "vllm", "version": self._version, "dtype": self.dtype, "weights": self.weights,
                **describe(self.server, self.base_url)}

    def generate(self, prompts: Sequence[str], decoding: Decoding, *, progress: bool = False,
                 desc: str = "vllm") -> list[str]:
        """One completion per prompt; the prompts are tokenized as the HF path tokenizes them."""
        encoded = encode_prompts(self.tokenizer, prompts)
        texts: dict[int, str] = {}
        bar = progress_bar(total=len(encoded), desc=desc, unit="prompt", disable=not progress or not encoded)
        restarts = 0
        while len(texts) < len(encoded):
            failures = self._round(encoded, decoding, texts, bar)
            if not failures:
                break
            if self.server is None or self.server.alive() or restarts >= self.max_restarts:
                bar.close()
                raise VllmEngineError(self._failure_message(failures, len(encoded) - len(texts), len(encoded)))
            restarts += 1
            self.server.restart()  # only the prompts without a completion are sent again
        bar.close()
        return [texts[i] for i in range(len(encoded))]

    def _round(self, encoded: list[list[int]], decoding: Decoding, texts: dict[int, str], bar: Any) -> dict:
        """Send every prompt without a completion, all at once; returns {index: why} for those that failed."""
        import openai

        todo = [i for i in range(len(encoded)) if i not in texts]
        failures: dict[int, str] = {}
        client = openai.OpenAI(api_key="unused", base_url=self.base_url, timeout=REQUEST_TIMEOUT_S, max_retries=1)
        try:
            with ThreadPoolExecutor(max_workers=min(MAX_CONCURRENT_REQUESTS, len(todo))) as pool:
                futures = {pool.submit(self._complete, client, encoded[i], decoding, i): i for i in todo}
                for future in as_completed(futures):
                    index = futures[future]
                    self.requests_sent += 1
                    try:
                        texts[index] = future.result()
                        bar.update(1)
                    except (openai.APIError, ValueError) as error:
                        failures[index] = f"{type(error).__name__}: {str(error)[:300]}"
        finally:
            client.close()
        return failures

    def _complete(self, client: Any, prompt: list[int], decoding: Decoding, index: int) -> str:
        sampled = decoding.do_sample
        response = client.completions.create(
            model=self.served_name, prompt=prompt, max_tokens=decoding.max_new_tokens,
            temperature=decoding.temperature if sampled else 0.0, top_p=decoding.top_p if sampled else 1.0,
            seed=request_seed(decoding.seed, index) if sampled else None, stop=list(decoding.stop) or None,
            extra_body={"stop_token_ids": self.stop_ids, "skip_special_tokens": True})
        text = response.choices[0].text
        if text is None:
            raise ValueError("the server returned no text")
        return cut_at_stop(text, decoding.stop).strip()

    def _failure_message(self, failures: dict[int, str], missing: int, total: int) -> str:
        first = min(failures)
        where = "the library's server" if self.server is not None else f"the server at {self.base_url}"
        state = ""
        if self.server is not None and not self.server.alive():
            state = f" It died again after {self.max_restarts} restart(s). {self.server.log_tail()}"
        return (f"vLLM ({where}, model {self.served_name}) gave no completion for {missing} of {total} prompts; "
                f"prompt {first}: {failures[first]}.{state}")

    def close(self) -> None:
        """Stop a server this engine owns and remove its merged checkpoint (a shared server stays up)."""
        if self.owns_server and self.server is not None:
            self.server.stop()
        if self.cleanup is not None:
            shutil.rmtree(self.cleanup, ignore_errors=True)


def request_seed(seed: int, index: int) -> int:
    """A sampled request's seed: the call's seed and the prompt's place, so copies of one prompt differ."""
    return int(stable_hash((seed, index)), 16) % 2**31


def serving_dtype(dtype: str, device: str) -> str:
    """The dtype a server computes in: the config's, resolved as for an HF model (saie_lib.precision)."""
    from .models import pick_device
    from .precision import resolve_dtype

    return resolve_dtype(dtype, pick_device(device))[0]


def check_servable(cfg: Any) -> None:
    from .models import uses_plain_prompts

    if uses_plain_prompts(cfg.model):
        raise ValueError(f"config field 'generation' = 'vllm', but {cfg.model!r} is an encoder-decoder model "
                         "without a chat template (Flan-T5): use generation 'hf'")


def open_engine(cfg: Any, adapter: str | Path | None = None) -> VllmEngine:
    """A vLLM engine for the model of an eval/train/inference/challenge config: the shared base-model server, or
    (with `adapter`) a server of its own on the adapter merged into a temporary float32 checkpoint."""
    from .models import load_tokenizer, resolve_model

    require_vllm()
    check_servable(cfg)
    resolved = resolve_model(cfg.model, cfg.model_source)
    dtype = serving_dtype(cfg.dtype, cfg.device)
    tokenizer = load_tokenizer(resolved.path, trust_remote_code=cfg.trust_remote_code)
    info = {"name": cfg.model, "source": resolved.source, "path": resolved.path, "device": "vllm server",
            "dtype": dtype, "dtype_requested": cfg.dtype, "adapter": str(adapter) if adapter else None}
    spec = ServerSpec(os.path.realpath(resolved.path), served_name=cfg.model, dtype=dtype,
                      extra_args=extra_args_from_env())  # the real path: one shared server however it is reached
    if adapter is None:
        return VllmEngine(tokenizer, cfg.model, dtype, server=shared_server(spec), model_info=info)
    folder = merged_checkpoint(resolved.path, adapter)
    server = VllmServer(ServerSpec(str(folder), served_name=cfg.model, dtype=dtype, extra_args=spec.extra_args))
    try:
        server.start()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return VllmEngine(tokenizer, cfg.model, dtype, server=server, owns_server=True, cleanup=folder,
                      weights=MERGED_WEIGHTS.format(dtype=dtype), model_info=info)


def merged_checkpoint(model_path: str, adapter: str | Path) -> Path:
    """The base model with the peft `adapter` merged in, saved in float32 to a new temporary folder under the
    cache (the caller removes it). Float32: merged into bfloat16 weights a LoRA delta (about 1e-3 of a weight)
    would be rounded away."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (Path(adapter) / "adapter_config.json").is_file():
        raise ValueError(f"no peft adapter at {adapter} (adapter_config.json missing)")
    parent = cache_dir() / "vllm" / "merged"
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=parent, prefix=f"{Path(adapter).parent.name or 'adapter'}-"))
    try:
        base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
        merged.save_pretrained(folder, safe_serialization=True)
        AutoTokenizer.from_pretrained(model_path).save_pretrained(folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


@contextlib.contextmanager
def engine_for(cfg: Any, adapter: str | Path | None = None) -> Iterator[VllmEngine]:
    """`open_engine`, closed at the end of the block."""
    engine = open_engine(cfg, adapter)
    try:
        yield engine
    finally:
        engine.close()


@contextlib.contextmanager
def trained_learner_generator(cfg: Any, learner: Any, adapter: str | Path) -> Iterator[Any]:
    """What evaluates a trained learner: with generation 'hf' the learner's model itself (its LoRA merged in
    place with merged_generation), with 'vllm' an engine on its saved `adapter`."""
    if cfg.generation != "vllm":
        with learner.lora_merged() if cfg.merged_generation else contextlib.nullcontext():
            yield learner.model
        return
    with engine_for(cfg, adapter) as engine:
        yield engine


def generation_record(model: Any) -> dict[str, Any]:
    """{'generation': engine_info} for metrics.json when `model` is an engine; {} on the HF path (unchanged
    records: its engine is the transformers version and dtype env.json already holds)."""
    return {"generation": model.engine_info} if is_engine(model) else {}


def planned_generation(cfg: Any) -> dict[str, Any]:
    """For a training run's env.json, before its evaluation engine exists: {} on the HF path."""
    if cfg.generation != "vllm":
        return {}
    require_vllm()  # fail now, not after training
    return {"generation": {"engine": "vllm", "version": vllm_version(), "dtype": serving_dtype(cfg.dtype, cfg.device),
                           "weights": MERGED_WEIGHTS.format(dtype=serving_dtype(cfg.dtype, cfg.device)),
                           "applies_to": "evaluation of the trained learner; its discussion turns run on hf"}}


def close_engine(model: Any) -> None:
    if is_engine(model):
        model.close()
