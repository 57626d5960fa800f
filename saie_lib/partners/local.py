"""Local Hugging Face partners, frozen: the learner's own base model (adapters off) or another model."""

from __future__ import annotations

from typing import Any, Sequence

from ..generation import Decoding, generate, render_chat
from . import Messages, Reply, Sampling


def _decoding(sampling: Sampling) -> Decoding:
    return Decoding(max_new_tokens=sampling.max_new_tokens, do_sample=sampling.temperature > 0,
                    temperature=sampling.temperature or 1.0, top_p=sampling.top_p, seed=sampling.seed)


def _replies(tokenizer: Any, prompts: Sequence[str], texts: Sequence[str]) -> list[Reply]:
    count = lambda s: len(tokenizer(s, add_special_tokens=False)["input_ids"])  # noqa: E731
    return [Reply(text=t, prompt_tokens=count(p), completion_tokens=count(t)) for p, t in zip(prompts, texts)]


def _weights_id(info: dict) -> str:
    """What decides a local model's outputs: name, where the weights came from, dtype, quantisation."""
    quantised = "/4bit" if info.get("load_in_4bit") else ""
    return f"{info['name']}@{info['source']}/{info.get('dtype', '?')}{quantised}"


class AdapterOffPartner:
    """The learner's base model with its LoRA adapters switched off: frozen, and no second copy in memory."""

    def __init__(self, learner: Any, *, batch_size: int = 8):
        self.learner, self.batch_size = learner, batch_size
        self.model_id = f"self-base:{_weights_id(learner.info)}"

    def chat(self, conversations: Sequence[Messages], sampling: Sampling) -> list[Reply]:
        tokenizer = self.learner.tokenizer
        prompts = render_chat(tokenizer, conversations)
        self.learner.for_inference()
        with self.learner.adapters_disabled():
            texts = generate(self.learner.model, tokenizer, prompts, _decoding(sampling),
                             batch_size=self.batch_size, progress=False)
        return _replies(tokenizer, prompts, texts)


class LocalModelPartner:
    """Another local or Hub model, gradients off: loaded by name, or one already in memory (`from_loaded`)."""

    def __init__(self, name: str, *, batch_size: int = 8, device: str = "auto", dtype: str = "auto",
                 trust_remote_code: bool = False):
        from ..models import load_model

        model, tokenizer, info = load_model(name, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        self._attach(model, tokenizer, info, batch_size)

    @classmethod
    def from_loaded(cls, model: Any, tokenizer: Any, info: dict, *, batch_size: int = 8) -> "LocalModelPartner":
        partner = cls.__new__(cls)
        partner._attach(model, tokenizer, info, batch_size)
        return partner

    def _attach(self, model: Any, tokenizer: Any, info: dict, batch_size: int) -> None:
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.model.requires_grad_(False)
        self.model_id = f"hf:{_weights_id(info)}"

    def chat(self, conversations: Sequence[Messages], sampling: Sampling) -> list[Reply]:
        prompts = render_chat(self.tokenizer, conversations)
        texts = generate(self.model, self.tokenizer, prompts, _decoding(sampling), batch_size=self.batch_size,
                         progress=False)
        return _replies(self.tokenizer, prompts, texts)


def build_partner(spec: str, learner: Any, *, batch_size: int = 8, base_url: str | None = None,
                  api_key_env: str | None = "OPENAI_API_KEY", device: str = "auto"):
    """'self' -> AdapterOffPartner; 'api:<model>' -> OpenAIChatPartner; anything else -> LocalModelPartner."""
    if spec == "self":
        return AdapterOffPartner(learner, batch_size=batch_size)
    if spec.startswith("api:"):
        from .api import OpenAIChatPartner

        return OpenAIChatPartner(spec.removeprefix("api:"), base_url=base_url, api_key_env=api_key_env)
    return LocalModelPartner(spec, batch_size=batch_size, device=device)
