"""Partner models: the frozen side of a discussion. Shared types only; importing this is cheap.

Implementations: `partners.api.OpenAIChatPartner` (any OpenAI-compatible chat server) and local
Hugging Face partners in `partners.local`. `remark_cache.CachedPartner` wraps any of them.

Never a silent wrong result: a reply that cannot be used as a remark (`unusable_reason`) is never
returned, cached or trained on. The API partner retries it like any other fault; a local partner
raises `IncompleteBatchError` (its decoding is seeded, so asking again gives the same reply).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

Messages = list[dict[str, str]]  # OpenAI-style chat messages: [{"role": ..., "content": ...}, ...]

# The refusal rule, kept small on purpose: a reply is a refusal when it *starts* with "As an AI", or with
# "(I'm) sorry(, but)" and/or "I can't / cannot / won't / am unable to / am not able to" followed by
# "help / assist / comply" and then "with", "you", punctuation or the end. A remark that merely disagrees
# ("I'm sorry, but I can't agree: ...", "I can't help noticing ...") is not a refusal.
_REFUSAL = re.compile(
    r"as an ai\b"
    r"|(?:(?:i'm |i am )?sorry[,.!]? (?:but )?)?"
    r"i(?:'m| am)? ?(?:can't|cannot|can not|won't|will not|unable to|not able to) "
    r"(?:help|assist|comply)(?: you)?(?: with\b|[ .!,]*$)")


def unusable_reason(text: Any) -> str | None:
    """Why `text` cannot be used as a remark (no text, empty, whitespace or control characters only, a refusal),
    else None."""
    if not isinstance(text, str):
        return "no text (content is null or missing)"
    if not text:
        return "empty remark"
    if not text.strip():
        return "whitespace-only remark"
    if not any(ch.isprintable() and not ch.isspace() for ch in text):
        return "no visible text (only whitespace and control characters)"
    plain = " ".join(text.lower().replace("\u2019", "'").split())
    if _REFUSAL.match(plain):
        return f"a refusal, not a remark ({plain[:60]!r})"
    return None


@dataclass(frozen=True)
class Sampling:
    """Partner decoding settings (part of every remark-cache key)."""

    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class Reply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None = None  # API partners with known prices; None otherwise
    cached: bool = False
    cut_chars: int = 0  # characters cut off to fit the remark budget (saie_lib.remark_budget); 0: whole


class Partner(Protocol):
    model_id: str  # stable identity used in cache keys, e.g. "api:gpt-4o-mini@https://host/v1"

    def chat(self, conversations: Sequence[Messages], sampling: Sampling) -> list[Reply]:
        """One usable reply per conversation, in input order; else IncompleteBatchError (or PartnerError)."""
        ...


class PartnerError(RuntimeError):
    """A partner failed for good; the message says why and what to do."""


class IncompleteBatchError(PartnerError):
    """Some conversations of a batch got no usable reply. `replies`: the usable replies that did arrive,
    by position in the batch (CachedPartner stores them before passing the error on); `failed`: the
    positions that got none."""

    def __init__(self, message: str, replies: Mapping[int, Reply], failed: Sequence[int]):
        super().__init__(message)
        self.replies = dict(replies)
        self.failed = sorted(failed)

    def __reduce__(self) -> tuple:
        return type(self), (str(self), self.replies, self.failed)


def excerpt(messages: Messages, limit: int = 200) -> str:
    """The last message's text on one line, cut to `limit` characters: names an example in an error."""
    text = " ".join(str(messages[-1].get("content", "")).split()) if messages else ""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
