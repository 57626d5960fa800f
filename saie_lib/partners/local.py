"""Local Hugging Face partners, frozen: the learner's own base model (adapters off) or another model.

An unusable remark (empty, whitespace only, a refusal: `partners.unusable_reason`) is not retried: the
decoding is greedy or seeded, so asking again gives the same text. The batch raises
`IncompleteBatchError` naming the conversation; the usable replies of the batch travel with it, so
`CachedPartner` stores them, and nothing is ever trained on an empty remark.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..generation import Decoding, generate, render_chat
from ..models import load_model
from . import IncompleteBatchError, Messages, Reply, Sampling, excerpt, unusable_reason
from .api import DEFAULT_OUTAGE_WAIT_S, OpenAIChatPartner  # cheap: openai is imported only when used
from .scripted import ScriptedPartner


def _decoding(sampling: Sampling) -> Decoding:
    return Decoding(max_new_tokens=sampling.max_new_tokens, do_sample=sampling.temperature > 0,
                    temperature=sampling.temperature or 1.0, top_p=sampling.top_p, seed=sampling.seed)


def _replies(model_id: str, tokenizer: Any, conversations: Sequence[Messages], prompts: Sequence[str],
             texts: Sequence[str], budget: Any = None) -> list[Reply]:
    """Replies with token counts, cut to `budget` (a RemarkBudget) when given; IncompleteBatchError if any text
    cannot be used as a remark (after the cut)."""
    count = lambda s: len(tokenizer(s, add_special_tokens=False)["input_ids"])  # noqa: E731
    cuts = [budget.cut(t) if budget is not None else (t, 0) for t in texts]
    reasons = {i: reason for i, (t, _) in enumerate(cuts) if (reason := unusable_reason(t)) is not None}
    replies = {i: Reply(text=kept, prompt_tokens=count(p), completion_tokens=count(t), cut_chars=cut)
               for i, (p, t, (kept, cut)) in enumerate(zip(prompts, texts, cuts)) if i not in reasons}
    if reasons:
        first = min(reasons)
        raise IncompleteBatchError(
            f"partner {model_id} gave no usable remark for {len(reasons)} of {len(texts)} conversations; "
            f"conversation {first} ({reasons[first]}) asked: {excerpt(conversations[first])!r}. Its decoding is "
            "deterministic, so asking again gives the same text: choose another partner (config field "
            "'partner'), or change partner_max_new_tokens / partner_temperature.", replies, sorted(reasons))
    return [replies[i] for i in range(len(texts))]


def _weights_id(info: dict) -> str:
    """What decides a local model's outputs: name, where the weights came from, dtype, quantisation."""
    quantised = "/4bit" if info.get("load_in_4bit") else ""
    return f"{info['name']}@{info['source']}/{info.get('dtype', '?')}{quantised}"


class AdapterOffPartner:
    """The learner's base model with its LoRA adapters switched off: frozen, and no second copy in memory."""

    def __init__(self, learner: Any, *, batch_size: int = 8, budget: Any = None):
        self.learner, self.batch_size, self.budget = learner, batch_size, budget
        self.model_id = f"self-base:{_weights_id(learner.info)}"

    def chat(self, conversations: Sequence[Messages], sampling: Sampling) -> list[Reply]:
        tokenizer = self.learner.tokenizer
        prompts = render_chat(tokenizer, conversations)
        self.learner.for_inference()
        with self.learner.adapters_disabled():
            texts = generate(self.learner.model, tokenizer, prompts, _decoding(sampling),
                             batch_size=self.batch_size, progress=False)
        return _replies(self.model_id, tokenizer, conversations, prompts, texts, self.budget)


class LocalModelPartner:
    """Another local or Hub model, gradients off: loaded by name, or one already in memory (`from_loaded`)."""

    def __init__(self, name: str, *, batch_size: int = 8, device: str = "auto", dtype: str = "auto",
                 trust_remote_code: bool = False, budget: Any = None):
        model, tokenizer, info = load_model(name, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        self._attach(model, tokenizer, info, batch_size, budget)

    @classmethod
    def from_loaded(cls, model: Any, tokenizer: Any, info: dict, *, batch_size: int = 8,
                    budget: Any = None) -> "LocalModelPartner":
        partner = cls.__new__(cls)
        partner._attach(model, tokenizer, info, batch_size, budget)
        return partner

    def _attach(self, model: Any, tokenizer: Any, info: dict, batch_size: int, budget: Any) -> None:
        self.model, self.tokenizer, self.batch_size, self.budget = model, tokenizer, batch_size, budget
        self.model.requires_grad_(False)
        self.model_id = f"hf:{_weights_id(info)}"

    def chat(self, conversations: Sequence[Messages], sampling: Sampling) -> list[Reply]:
        prompts = render_chat(self.tokenizer, conversations)
        texts = generate(self.model, self.tokenizer, prompts, _decoding(sampling), batch_size=self.batch_size,
                         progress=False)
        return _replies(self.model_id, self.tokenizer, conversations, prompts, texts, self.budget)


class EnginePartner:
    """The base model on a serving engine (saie_lib.engines.VllmEngine), frozen: the partner of inference-time
    partner_discussion under generation 'vllm', rendered and tokenized as the HF partners are."""

    def __init__(self, engine: Any, *, name: str):
        self.engine = engine
        self.model_id = f"vllm-engine:{name}@{engine.model_info.get('source', '?')}/{engine.dtype}"

    def chat(self, conversations: Sequence[Messages], sampling: Sampling) -> list[Reply]:
        prompts = render_chat(self.engine.tokenizer, conversations)
        texts = self.engine.generate(prompts, _decoding(sampling))
        return _replies(self.model_id, self.engine.tokenizer, conversations, prompts, texts)


def build_partner(spec: str, learner: Any, *, batch_size: int = 8, base_url: str | None = None,
                  api_key_env: str | None = "OPENAI_API_KEY", device: str = "auto", timeout_s: float = 60,
                  max_retries: int = 4, concurrency: int = 8, outage_wait_s: float = DEFAULT_OUTAGE_WAIT_S,
                  budget: Any = None, seed: int = 0):
    """'self' -> AdapterOffPartner; 'scripted' -> ScriptedPartner (stance by construction, drawn by `seed`);
    'api:<model>' -> OpenAIChatPartner; 'vllm:<model>' -> partners.vllm.VllmPartner (the server at base_url, else
    one started here); anything else -> LocalModelPartner. timeout_s, max_retries, concurrency and outage_wait_s
    (config fields partner_timeout_s, ...) apply to API and vLLM partners only; local partners need none of them.
    `budget` (a RemarkBudget): every model-written reply is cut to it."""
    if spec == "scripted":
        return ScriptedPartner(seed)
    if spec == "self":
        return AdapterOffPartner(learner, batch_size=batch_size, budget=budget)
    if spec.startswith("vllm:"):
        from .vllm import vllm_partner

        return vllm_partner(spec.removeprefix("vllm:"), base_url=base_url, device=device, api_key_env=api_key_env,
                            timeout_s=timeout_s, max_retries=max_retries, concurrency=concurrency,
                            outage_wait_s=outage_wait_s, budget=budget)
    if spec.startswith("api:"):
        return OpenAIChatPartner(spec.removeprefix("api:"), base_url=base_url, api_key_env=api_key_env,
                                 timeout_s=timeout_s, max_retries=max_retries, concurrency=concurrency,
                                 outage_wait_s=outage_wait_s, budget=budget)
    return LocalModelPartner(spec, batch_size=batch_size, device=device, budget=budget)
