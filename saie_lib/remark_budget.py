"""A partner's remark cut to a token budget (the learner's tokenizer) before it enters the learner's context.

A partner that ignores `max_tokens` (a misconfigured or hostile server, a local model asked for long remarks)
could hand the learner a remark of a megabyte, which no context holds. Every partner built for training cuts its
replies with a `RemarkBudget` before checking that they are usable, so a remark that is only whitespace or
control characters after the cut is treated (and, by an API partner, retried) like an empty one. The characters
cut off are counted on the reply (`Reply.cut_chars`), in the transcript and in the run's metrics.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

from .partners import Reply

# A token covers at most this many characters (real tokenizers: a few dozen at most), so the first max_tokens
# tokens of a text lie within its first max_tokens * MAX_CHARS_PER_TOKEN characters: only those are tokenized.
MAX_CHARS_PER_TOKEN = 64


def budget_tokens(cfg: Any) -> int:
    """The tokens a training run's remarks are cut to: `remark_budget`, else a quarter of `max_seq_len` (room
    in the learner's context for the question, its answers and its revision)."""
    return cfg.remark_budget or max(1, cfg.max_seq_len // 4)


class RemarkBudget:
    """Cuts texts to at most `max_tokens` tokens of `tokenizer`; safe to use from several threads."""

    def __init__(self, tokenizer: Any, max_tokens: int):
        if max_tokens < 1:
            raise ValueError(f"a remark budget needs at least 1 token, got {max_tokens}")
        self.tokenizer, self.max_tokens = tokenizer, max_tokens
        self._lock = threading.Lock()  # a Rust tokenizer's settings are not shared safely across threads

    @property
    def budget_id(self) -> str:
        """What decides a cut: the budget and the tokenizer (stored with a cut remark in the remark cache)."""
        name = Path(str(getattr(self.tokenizer, "name_or_path", "") or "tokenizer")).name
        return f"{self.max_tokens} tokens of {name} ({len(self.tokenizer)} in vocabulary)"

    def cut(self, text: str) -> tuple[str, int]:
        """`text` cut after its first `max_tokens` tokens, and how many characters were cut off (0: whole)."""
        prefix = text[: self.max_tokens * MAX_CHARS_PER_TOKEN]
        with self._lock:
            kept = self._within_budget(prefix)
        kept = prefix if kept is None else kept
        return kept, max(0, len(text) - len(kept))

    def apply(self, reply: Reply) -> Reply:
        """`reply` with its text cut to the budget and the cut counted (a reply within it comes back as it is)."""
        kept, cut = self.cut(reply.text)
        return reply if not cut else dataclasses.replace(reply, text=kept, cut_chars=reply.cut_chars + cut)

    def _within_budget(self, text: str) -> str | None:
        """The start of `text` up to the end of token `max_tokens`, or None when it has no more tokens than that."""
        try:
            encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        except NotImplementedError:  # a slow (Python) tokenizer has no offsets: decode the kept tokens instead
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            return None if len(ids) <= self.max_tokens else self.tokenizer.decode(ids[: self.max_tokens])
        offsets = encoded["offset_mapping"]
        return None if len(offsets) <= self.max_tokens else text[: offsets[self.max_tokens - 1][1]]
