"""The trainable learner behind one interface: plain peft + transformers (CPU or GPU) or Unsloth (GPU).

Unsloth is imported only on its own path: a successful import patches transformers and TRL globally.
"""

from __future__ import annotations

import contextlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from .config import BACKENDS
from .generation import Decoding, generate, render_chat
from .models import MODEL_ALIASES, load_model, pick_device, pick_dtype, resolve_model
from .precision import StepPrecision, keep_trainable_fp32, resolve_precision
from .seq2seq import is_encoder_decoder, is_seq2seq_checkpoint, lora_arguments, seq2seq_precision, seq2seq_target_loss
from .training import collate, target_loss


@dataclass(frozen=True)
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0  # 0 keeps CPU runs bit-reproducible across a resume
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def import_unsloth() -> Any:
    """Unsloth, imported before transformers/peft are used (it patches them); its real import error is kept."""
    try:
        import unsloth  # noqa: F401  (the import itself patches transformers, peft and TRL)
        from unsloth import FastLanguageModel
    except ImportError as error:
        missing = getattr(error, "name", None)
        hint = ('pip install -e ".[colab]" (Colab) or ".[gpu]" on a CUDA machine' if missing in ("unsloth", None)
                else f"the package {missing!r} that Unsloth needs failed to import")
        raise ImportError(f'backend "unsloth": importing Unsloth failed ({type(error).__name__}: {error}); '
                          f"{hint}") from error
    return FastLanguageModel


def prepare_backend(backend: str, device: str = "auto") -> str:
    """Resolve the backend once, at the start of a run; for Unsloth, import it now, before the baseline or any
    other stage has loaded transformers and peft."""
    chosen = choose_backend(backend, pick_device(device))
    if chosen == "unsloth":
        import_unsloth()
    return chosen


def choose_backend(backend: str, device: str, *, seq2seq: bool = False) -> str:
    """auto: Unsloth when CUDA is present and Unsloth is installed, else peft. Encoder-decoder models (Flan-T5):
    always peft (Unsloth supports decoder-only models only)."""
    if backend not in BACKENDS:
        raise ValueError(f"config field 'backend' = {backend!r}; expected one of {', '.join(BACKENDS)}")
    if seq2seq and backend == "unsloth":
        raise ValueError("config field 'backend' = 'unsloth', but the model is an encoder-decoder (seq2seq, e.g. "
                         "Flan-T5) and Unsloth supports decoder-only models only: use 'peft' or 'auto'")
    if seq2seq:
        return "peft"
    if backend != "auto":
        return backend
    has_unsloth = importlib.util.find_spec("unsloth") is not None
    return "unsloth" if device == "cuda" and has_unsloth else "peft"


class Learner:
    """A causal LM with LoRA adapters. Generation runs with adapters on; `adapters_disabled()` gives the
    frozen base model (the default partner) without a second copy in memory."""

    backend = "peft"

    def __init__(self, model: Any, tokenizer: Any, info: dict[str, Any], precision: str = "auto"):
        self.model, self.tokenizer = model, tokenizer
        device_type = self.model.device.type
        name = resolve_precision(precision, device_type, str(self.model.dtype).removeprefix("torch."))
        if is_encoder_decoder(model):  # T5 overflows in fp16: bf16 where supported, else fp32
            name = seq2seq_precision(precision, name)
        self.precision = StepPrecision.create(name, device_type)
        self.info = {**info, "precision": name}

    @classmethod
    def create(cls, name: str, lora: LoraSettings, *, source: str = "auto", dtype: str = "auto",
               device: str = "auto", adapter: str | Path | None = None, trust_remote_code: bool = False,
               gradient_checkpointing: str = "auto"):
        from peft import LoraConfig, PeftModel, get_peft_model

        base, tokenizer, info = load_model(name, source=source, dtype=dtype, device=device,
                                           trust_remote_code=trust_remote_code)
        if adapter:
            model = PeftModel.from_pretrained(base, str(adapter), is_trainable=True)
        else:
            config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                **lora_arguments(base, lora.target_modules))  # causal or seq2seq (T5) modules
            model = get_peft_model(base, config)
        keep_trainable_fp32(model)  # a bfloat16 base ('native' on a bf16 CPU) keeps fp32 LoRA weights and Adam state
        if checkpoints_activations(gradient_checkpointing, model.device.type):
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        return cls(model, tokenizer, {**info, "backend": cls.backend})

    @property
    def device(self):
        return self.model.device

    def for_inference(self) -> None:
        self.model.eval()

    def for_training(self) -> None:
        self.model.train()

    def generate(self, conversations: Sequence[list[dict]], decoding: Decoding, *, batch_size: int = 8,
                 progress: bool = False, desc: str = "learner", merged: bool = False) -> list[str]:
        """Completions with the adapters on; `merged`: through `lora_merged()` (see TrainConfig.merged_generation)."""
        self.for_inference()
        prompts = render_chat(self.tokenizer, conversations)
        with self.lora_merged() if merged else contextlib.nullcontext():
            return generate(self.model, self.tokenizer, prompts, decoding, batch_size=batch_size,
                            progress=progress, desc=desc)

    @contextlib.contextmanager
    def lora_merged(self) -> Iterator[None]:
        """The same model with each LoRA delta added into its base weight and the LoRA path off: a decode step
        then runs the base layers' matrix products only (SmolLM2-135M: 211 instead of 631 per step). The base
        weights come back exactly (the originals are kept, not un-merged by subtraction), so the partner, which
        is the base with adapters off, never sees a rounded weight. Float32 bases only: merged into bfloat16
        weights, a LoRA delta (about 1e-3 of a weight) falls below bf16's precision and is lost."""
        import torch
        from peft.tuners.lora import LoraLayer

        layers = [m for m in self.model.modules() if isinstance(m, LoraLayer)]
        originals = []
        try:  # a failure half way still puts back every weight already merged
            with torch.no_grad():
                for layer in layers:
                    weight = layer.get_base_layer().weight
                    if weight.dtype != torch.float32:
                        raise ValueError(f"merged generation needs a float32 base model, this one is "
                                         f"{weight.dtype}; set config field 'merged_generation' to false or "
                                         "'dtype' to float32")
                    delta = sum(layer.get_delta_weight(name) for name in layer.active_adapters
                                if name in layer.lora_A)
                    originals.append((weight, weight.data))
                    weight.data = weight.data + delta
            with self.model.disable_adapter():
                yield
        finally:
            for weight, original in originals:
                weight.data = original

    @contextlib.contextmanager
    def adapters_disabled(self) -> Iterator[None]:
        with self.model.disable_adapter():
            yield

    def target_loss(self, features: Sequence[dict]):
        """Cross-entropy on the target tokens only, with logits for the target positions only (seq2seq: the
        decoder's positions, which are the target's)."""
        if is_encoder_decoder(self.model):
            return seq2seq_target_loss(self.model, features, self.tokenizer.pad_token_id, self.device)
        return target_loss(self.model, features, self.tokenizer.pad_token_id, self.device)

    def trainable_parameters(self) -> list:
        return [p for p in self.model.parameters() if p.requires_grad]

    def save_adapter(self, path: str | Path) -> None:
        self.model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))

    def load_adapter_weights(self, path: str | Path) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(self.model, load_file(str(Path(path) / "adapter_model.safetensors")))

    def save_merged(self, path: str | Path) -> None:
        """A standalone 16-bit model with the adapters merged in (the learner itself is left unchanged)."""
        import copy

        import torch

        merged = copy.deepcopy(self.model).merge_and_unload()
        merged.to(torch.bfloat16).save_pretrained(str(path), safe_serialization=True)
        self.tokenizer.save_pretrained(str(path))


def checkpoints_activations(setting: str, device_type: str) -> bool:
    """Recompute activations in backward instead of keeping them: far less memory, more step time. auto: on a
    GPU; on a CPU only when asked ('on'), as the committed CPU runs were made (the outputs are the same)."""
    return setting == "on" or (setting == "auto" and device_type == "cuda")


class UnslothLearner(Learner):
    """Unsloth's FastLanguageModel on a GPU: fused kernels, optional 4-bit base, fast generation."""

    backend = "unsloth"

    @classmethod
    def create(cls, name: str, lora: LoraSettings, *, source: str = "auto", dtype: str = "auto",
               device: str = "auto", adapter: str | Path | None = None, trust_remote_code: bool = False,
               load_in_4bit: bool = False, max_seq_length: int | None = None, seed: int = 0,
               gradient_checkpointing: str = "auto"):  # Unsloth always uses its own offloaded checkpointing
        """`max_seq_length` bounds every sequence Unsloth's patched forward will see, generation included (its
        attention mask is built at that size): None = the model's own context window, since a discussion turn's
        prompt (question, answer, remark) is longer than the training truncation `max_seq_len`."""
        FastLanguageModel = import_unsloth()
        resolved = resolve_model(name, source)
        max_seq_length = max_seq_length or context_window(resolved.path, trust_remote_code)
        device = pick_device(device)
        # The Hub id where there is one: Unsloth then uses its pre-quantised 4-bit weights and names the base
        # model by its id in the adapter card, not by a cache path.
        spec = MODEL_ALIASES.get(name)
        base = spec.hub_id if resolved.source == "hub" and spec and spec.hub_id else resolved.path
        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=str(adapter or base), max_seq_length=max_seq_length, load_in_4bit=load_in_4bit,
            dtype=None if dtype == "auto" else pick_dtype(dtype, device), trust_remote_code=trust_remote_code,
        )
        if not adapter:
            model = FastLanguageModel.get_peft_model(
                model, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                target_modules=list(lora.target_modules), use_gradient_checkpointing="unsloth",
                random_state=seed,  # else Unsloth reseeds the global RNG with its own default
            )
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        info = {"name": name, "source": resolved.source, "path": resolved.path, "device": device,
                "dtype": str(model.dtype).removeprefix("torch."), "load_in_4bit": load_in_4bit,
                "backend": cls.backend}
        return cls(model, tokenizer, info)

    def for_inference(self) -> None:
        from unsloth import FastLanguageModel

        FastLanguageModel.for_inference(self.model)

    @contextlib.contextmanager
    def lora_merged(self) -> Iterator[None]:
        raise ValueError("config field 'merged_generation' is for the peft backend (Unsloth generates with its own "
                         "fused kernels): set it to false")
        yield

    def target_loss(self, features: Sequence[dict]):
        """Unsloth computes the loss itself (fused, memory-light) and returns no logits in training."""
        batch = {k: v.to(self.device) for k, v in collate(features, self.tokenizer.pad_token_id).items()}
        batch.pop("position_ids")
        return self.model(**batch).loss

    def for_training(self) -> None:
        from unsloth import FastLanguageModel

        FastLanguageModel.for_training(self.model)

    def save_merged(self, path: str | Path) -> None:
        """Unsloth's own merged export (dequantises a 4-bit base correctly; no deep copy of the model)."""
        self.model.save_pretrained_merged(str(path), self.tokenizer, save_method="merged_16bit")


def context_window(path: str, trust_remote_code: bool = False) -> int:
    """The longest sequence a checkpoint's positions cover (its config's max_position_embeddings)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    window = getattr(config, "max_position_embeddings", None)
    if not window:
        raise ValueError(f"{path}: config.json states no max_position_embeddings; pass max_seq_length")
    return int(window)


def load_learner(name: str, lora: LoraSettings, *, backend: str = "auto", device: str = "auto",
                 load_in_4bit: bool = False, max_seq_length: int | None = None, seed: int = 0,
                 **kwargs: Any) -> Learner:
    seq2seq = is_seq2seq_checkpoint(resolve_model(name, kwargs.get("source", "auto")).path,
                                    trust_remote_code=kwargs.get("trust_remote_code", False))
    chosen = choose_backend(backend, pick_device(device), seq2seq=seq2seq)
    if chosen == "unsloth":
        return UnslothLearner.create(name, lora, device=device, load_in_4bit=load_in_4bit,
                                     max_seq_length=max_seq_length, seed=seed, **kwargs)
    if load_in_4bit:
        raise ValueError("config field 'load_in_4bit' needs the unsloth backend (a CUDA machine)")
    return Learner.create(name, lora, device=device, **kwargs)


def loads_as_learner(cfg: Any) -> bool:
    """Evaluation and inference configs whose model must be loaded as the trained learner was (Unsloth, 4-bit)
    rather than as a plain transformers model, so that base and trained conditions differ in training only."""
    return cfg.backend != "peft" or cfg.load_in_4bit


def load_as_learner(cfg: Any, adapter: str | Path | None = None) -> Learner:
    """The model of an evaluation/inference config loaded like the trained learner, ready for inference, with
    `adapter` on top, or a fresh adapter (LoRA starts at zero: exactly the base)."""
    learner = load_learner(cfg.model, LoraSettings(), backend=cfg.backend, device=cfg.device,
                           load_in_4bit=cfg.load_in_4bit, source=cfg.model_source, dtype=cfg.dtype,
                           trust_remote_code=cfg.trust_remote_code, adapter=adapter, seed=cfg.seed)
    learner.for_inference()
    return learner
