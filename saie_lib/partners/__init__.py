"""Partner models: the frozen side of a discussion. Shared types only; importing this is cheap.

Implementations: `partners.api.OpenAIChatPartner` (any OpenAI-compatible chat server) and local
Hugging Face partners in `partners.local`. `remark_cache.CachedPartner` wraps any of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

Messages = list[dict[str, str]]  # OpenAI-style chat messages: [{"role": ..., "content": ...}, ...]


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


class Partner(Protocol):
    model_id: str  # stable identity used in cache keys, e.g. "api:gpt-4o-mini@https://host/v1"

    def chat(self, conversations: Sequence[Messages], sampling: Sampling) -> list[Reply]:
        """One reply per conversation, in input order."""
        ...


class PartnerError(RuntimeError):
    """A partner failed for good; the message says why and what to do."""
