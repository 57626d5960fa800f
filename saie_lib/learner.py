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
from .models import load_model, pick_device, pick_dtype, resolve_model
from .precision import StepPrecision, resolve_precision
from .training import collate, target_loss


@dataclass(frozen=True)
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0  # 0 keeps CPU runs bit-reproducible across a resume
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def choose_backend(backend: str, device: str) -> str:
    """auto: Unsloth when CUDA is present and Unsloth is installed, else peft."""
    if backend not in BACKENDS:
        raise ValueError(f"config field 'backend' = {backend!r}; expected one of {', '.join(BACKENDS)}")
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
        self.precision = StepPrecision.create(name, device_type)
        self.info = {**info, "precision": name}

    @classmethod
    def create(cls, name: str, lora: LoraSettings, *, source: str = "auto", dtype: str = "auto",
               device: str = "auto", adapter: str | Path | None = None, trust_remote_code: bool = False):
        from peft import LoraConfig, PeftModel, get_peft_model

        base, tokenizer, info = load_model(name, source=source, dtype=dtype, device=device,
                                           trust_remote_code=trust_remote_code)
        if adapter:
            model = PeftModel.from_pretrained(base, str(adapter), is_trainable=True)
        else:
            config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                target_modules=list(lora.target_modules), task_type="CAUSAL_LM")
            model = get_peft_model(base, config)
        return cls(model, tokenizer, {**info, "backend": cls.backend})

    @property
    def device(self):
        return self.model.device

    def for_inference(self) -> None:
        self.model.eval()

    def for_training(self) -> None:
        self.model.train()

    def generate(self, conversations: Sequence[list[dict]], decoding: Decoding, *, batch_size: int = 8,
                 progress: bool = False, desc: str = "learner") -> list[str]:
        self.for_inference()
        prompts = render_chat(self.tokenizer, conversations)
        return generate(self.model, self.tokenizer, prompts, decoding, batch_size=batch_size, progress=progress,
                        desc=desc)

    @contextlib.contextmanager
    def adapters_disabled(self) -> Iterator[None]:
        with self.model.disable_adapter():
            yield

    def target_loss(self, features: Sequence[dict]):
        """Cross-entropy on the target tokens only, with logits for the target positions only."""
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


class UnslothLearner(Learner):
    """Unsloth's FastLanguageModel on a GPU: fused kernels, optional 4-bit base, fast generation."""

    backend = "unsloth"

    @classmethod
    def create(cls, name: str, lora: LoraSettings, *, source: str = "auto", dtype: str = "auto",
               device: str = "auto", adapter: str | Path | None = None, trust_remote_code: bool = False,
               load_in_4bit: bool = False, max_seq_length: int = 2048):
        try:
            from unsloth import FastLanguageModel
        except ImportError as error:
            raise ImportError('backend "unsloth" needs Unsloth: pip install -e ".[gpu]" on a CUDA machine') from error

        resolved = resolve_model(name, source)
        device = pick_device(device)
        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=str(adapter or resolved.path), max_seq_length=max_seq_length, load_in_4bit=load_in_4bit,
            dtype=None if dtype == "auto" else pick_dtype(dtype, device), trust_remote_code=trust_remote_code,
        )
        if not adapter:
            model = FastLanguageModel.get_peft_model(
                model, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                target_modules=list(lora.target_modules), use_gradient_checkpointing="unsloth",
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

    def target_loss(self, features: Sequence[dict]):
        """Unsloth computes the loss itself (fused, memory-light) and returns no logits in training."""
        batch = {k: v.to(self.device) for k, v in collate(features, self.tokenizer.pad_token_id).items()}
        batch.pop("position_ids")
        return self.model(**batch).loss

    def for_training(self) -> None:
        from unsloth import FastLanguageModel

        FastLanguageModel.for_training(self.model)


def load_learner(name: str, lora: LoraSettings, *, backend: str = "auto", device: str = "auto",
                 load_in_4bit: bool = False, max_seq_length: int = 2048, **kwargs: Any) -> Learner:
    chosen = choose_backend(backend, pick_device(device))
    if chosen == "unsloth":
        return UnslothLearner.create(name, lora, device=device, load_in_4bit=load_in_4bit,
                                     max_seq_length=max_seq_length, **kwargs)
    if load_in_4bit:
        raise ValueError("config field 'load_in_4bit' needs the unsloth backend (a CUDA machine)")
    return Learner.create(name, lora, device=device, **kwargs)
