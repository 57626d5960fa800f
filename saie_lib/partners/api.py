"""A partner behind any OpenAI-compatible chat API (OpenAI, vLLM, Ollama, ...).

One request per conversation, sent concurrently (at most `concurrency` in flight), answers in input
order. Each request gets up to `max_retries` retries with exponential backoff, only on failures that
can pass: timeouts, connection errors, HTTP 429 and 5xx, malformed responses and unusable replies (null, empty,
blank or control-character content, a refusal: `partners.unusable_reason`, after the cut to the `budget`, if any).
Any other 4xx fails at once.

Outage wait: when the requests still failing after their own retries all failed with connection
errors, timeouts, 429, 5xx or non-JSON bodies (the server, or the way to it, is down), the batch waits
with backoff and sends them again, for at most `outage_wait_s` seconds in all, so a long outage pauses
the run instead of killing it. Then, or on any other failure, `IncompleteBatchError` carries the replies
that did arrive (CachedPartner stores them) and names the config fields to raise.

The API key is read from the environment at call time and never kept on the object, logged, or put
in an error message (server messages that echo it, whole, cut or masked, are redacted).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Sequence

from . import IncompleteBatchError, Messages, PartnerError, Reply, Sampling, unusable_reason

DEFAULT_BASE_URL = "https://api.openai.com/v1"
PLACEHOLDER_KEY = "unused"  # sent to local servers (vLLM, Ollama) that ignore keys
INSTALL_HINT = 'pip install "saie[api]"  (or: pip install openai==3.51.0)'
MAX_SERVER_MESSAGE = 300  # characters of a server's error message kept in ours
DEFAULT_OUTAGE_WAIT_S = 60.0
MAX_BACKOFF_EXPONENT = 30  # 2**30 x backoff_s is far beyond any max_wait_s; keeps the float finite
REDACTED = "***"
MIN_LEAKED_PREFIX = 6  # a prefix of the key this long, echoed by a server, is redacted
MIN_LEAKED_SUFFIX = 4  # a key suffix after a mask ("sk-...****cdef") is redacted from this length
_MASK = r"(?:[*\u2022\u2026]+|\.{2,})"  # ***, ••• , … or ... where a server hides part of the key


@dataclass(frozen=True)
class _Failure:
    """Why one attempt failed, whether another attempt may pass, the wait the server asked for, and
    whether it looks like an outage (the server or the way to it is down)."""

    reason: str
    retryable: bool
    retry_after_s: float | None = None
    outage: bool = False


def _require_openai() -> Any:
    try:
        import openai
    except ImportError as error:
        raise ImportError(f"the API partner needs the openai package: {INSTALL_HINT}") from error
    return openai


def _check_settings(**settings: float) -> None:
    for name, value in settings.items():
        strict = name in ("timeout_s", "concurrency")
        if value < 0 or (strict and value == 0):
            raise ValueError(f"{name} must be {'>' if strict else '>='} 0, got {value!r}")


class OpenAIChatPartner:
    """Partner served by an OpenAI-compatible `/chat/completions` endpoint.

    `requests_sent` and `retries` count, over this object's life, the HTTP requests made and those that
    repeated a conversation already sent (requests_sent - retries = conversations sent)."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        base_url_env: str = "OPENAI_BASE_URL",
        timeout_s: float = 60,
        max_retries: int = 4,
        concurrency: int = 8,
        outage_wait_s: float = DEFAULT_OUTAGE_WAIT_S,
        price_per_1k_tokens: tuple[float, float] | None = None,
        backoff_s: float = 1.0,
        max_wait_s: float = 60.0,
        budget: Any = None,
    ):
        """api_key_env=None: no key needed (local server). price_per_1k_tokens: USD (prompt, completion).
        backoff_s: first retry wait, doubled each attempt; max_wait_s caps it and any Retry-After.
        outage_wait_s: seconds a batch keeps retrying through an outage (0: give up at once).
        budget: a `remark_budget.RemarkBudget` every reply is cut to before its usability is checked."""
        _check_settings(timeout_s=timeout_s, concurrency=concurrency, max_retries=max_retries,
                        outage_wait_s=outage_wait_s, backoff_s=backoff_s, max_wait_s=max_wait_s)
        _require_openai()
        self.model = model
        self.base_url = (base_url or os.environ.get(base_url_env) or DEFAULT_BASE_URL).rstrip("/")
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.outage_wait_s = outage_wait_s
        self.price_per_1k_tokens = price_per_1k_tokens
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        self.budget = budget
        self.requests_sent = 0
        self.retries = 0
        self._api_key()  # fail now, not mid-run, when the key is missing

    @property
    def model_id(self) -> str:
        return f"api:{self.model}@{self.base_url}"

    def __repr__(self) -> str:
        return f"OpenAIChatPartner(model={self.model!r}, base_url={self.base_url!r})"

    def chat(self, conversations: Sequence[Messages], sampling: Sampling) -> list[Reply]:
        if not conversations:
            return []
        key = self._api_key()
        secret = key if self.api_key_env is not None else None
        client = _require_openai().OpenAI(
            api_key=key, base_url=self.base_url, timeout=self.timeout_s, max_retries=0)
        try:
            return self._rounds(client, conversations, sampling, secret)
        finally:
            client.close()

    def _api_key(self) -> str:
        if self.api_key_env is None:
            return PLACEHOLDER_KEY
        key = os.environ.get(self.api_key_env)
        if not key:
            raise PartnerError(
                f"no API key for {self.base_url}: set the environment variable {self.api_key_env} "
                "(or pass api_key_env=None for a local server that needs no key)")
        return key

    def _rounds(self, client: Any, conversations: Sequence[Messages], sampling: Sampling,
                secret: str | None) -> list[Reply]:
        """Send the pending conversations; after a round that leaves some unanswered, wait and resend
        them while it looks like an outage and the outage wait lasts. Bounded in time: the wait starts
        after the first such round and never goes past `outage_wait_s`."""
        replies: dict[int, Reply] = {}
        sent: set[int] = set()
        pending, deadline, round_index = list(range(len(conversations))), None, 0
        while True:
            failures = self._round(client, conversations, pending, sampling, replies, sent)
            pending = [i for i in pending if i not in replies]
            if not pending:
                return [replies[i] for i in range(len(conversations))]
            if deadline is None:
                deadline = time.monotonic() + self.outage_wait_s
            wait = self._outage_pause_s(failures, round_index, deadline)
            if wait is None:
                message = _redact(self._give_up_message(failures, len(pending), len(conversations)), secret)
                raise IncompleteBatchError(message, replies, pending)
            time.sleep(wait)
            round_index += 1

    def _round(self, client: Any, conversations: Sequence[Messages], pending: list[int], sampling: Sampling,
               replies: dict[int, Reply], sent: set[int]) -> dict[int, _Failure]:
        """One pass over `pending`; usable replies go into `replies` as they arrive. Once a conversation
        fails for good, no further request is sent this round (the rest stay pending). Counters update
        here, in the calling thread."""
        failures: dict[int, _Failure] = {}
        stop = threading.Event()
        workers = min(self.concurrency, len(pending))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="partner") as pool:
            futures = {pool.submit(self._complete, client, conversations[i], sampling, stop): i for i in pending}
            for future in as_completed(futures):
                index = futures[future]
                outcome, attempts = future.result()
                self.requests_sent += attempts
                if attempts:
                    self.retries += attempts if index in sent else attempts - 1
                    sent.add(index)
                if isinstance(outcome, Reply):
                    replies[index] = outcome
                elif outcome is not None:
                    failures[index] = outcome
        return failures

    def _complete(self, client: Any, messages: Messages, sampling: Sampling,
                  stop: threading.Event) -> tuple[Reply | _Failure | None, int]:
        """One conversation, with up to `max_retries` retries: the outcome (None: stopped because another
        conversation failed for good) and the requests it took. On giving up it sets `stop`. Nothing is
        raised, so no client exception (which would hold the request and its key) escapes."""
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            if stop.is_set():
                return None, attempt
            outcome = self._attempt(client, messages, sampling)
            if isinstance(outcome, Reply):
                return outcome, attempt + 1
            if not outcome.retryable:
                break
            if attempt + 1 < attempts:
                stop.wait(self._wait_s(attempt, outcome.retry_after_s))
        stop.set()
        return outcome, attempt + 1

    def _wait_s(self, attempt: int, retry_after_s: float | None) -> float:
        wait = self.backoff_s * 2 ** min(attempt, MAX_BACKOFF_EXPONENT)
        if retry_after_s is not None:
            wait = max(wait, retry_after_s)
        return min(wait, self.max_wait_s)

    def _outage_pause_s(self, failures: dict[int, _Failure], round_index: int, deadline: float) -> float | None:
        """Seconds to wait before resending, or None to give up (not an outage, or the wait is spent)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not failures or not all(f.outage for f in failures.values()):
            return None
        return min(self._wait_s(self.max_retries + round_index, None), remaining)

    def _give_up_message(self, failures: dict[int, _Failure], missing: int, total: int) -> str:
        fatal = [f for f in failures.values() if not f.retryable]
        last = fatal[0] if fatal else [*failures.values(), _Failure("no reply", retryable=True)][0]
        where = f"{self.model} at {self.base_url}"
        if fatal:
            return (f"{where} refused the request ({last.reason}); not retried; {missing} of {total} "
                    "conversations got no reply. Check the model name, the request parameters and the key.")
        waited = f" and an outage wait of {self.outage_wait_s:g} s" if self.outage_wait_s else ""
        return (f"{where} failed after {self.max_retries + 1} attempts per request{waited}; {missing} of {total} "
                f"conversations got no usable reply; last error: {last.reason}. Check that the server is up and "
                f"reachable, or raise the config fields partner_max_retries (now {self.max_retries}), "
                f"partner_timeout_s (now {self.timeout_s:g}) or partner_outage_wait_s (now {self.outage_wait_s:g}); "
                f"lower partner_concurrency (now {self.concurrency}) if the server limits the request rate.")

    def _attempt(self, client: Any, messages: Messages, sampling: Sampling) -> Reply | _Failure:
        openai = _require_openai()
        try:
            response = client.chat.completions.create(
                model=self.model, messages=list(messages), max_tokens=sampling.max_new_tokens,
                temperature=sampling.temperature, top_p=sampling.top_p, seed=sampling.seed)
        except (openai.APIStatusError, openai.APIConnectionError, openai.APIResponseValidationError,
                json.JSONDecodeError) as error:
            return _classify(openai, error)
        return self._reply(response)

    def _reply(self, response: Any) -> Reply | _Failure:
        try:
            text = response.choices[0].message.content
        except (AttributeError, IndexError, TypeError):
            return _Failure("malformed response: no choices[0].message.content", retryable=True)
        text, cut = self.budget.cut(text) if self.budget is not None and isinstance(text, str) else (text, 0)
        reason = unusable_reason(text)
        if reason is not None:
            after = f" after the cut to {self.budget.max_tokens} tokens ({cut:,} characters cut)" if cut else ""
            return _Failure(f"unusable reply: {reason}{after}", retryable=True)
        usage = getattr(response, "usage", None)
        prompt_tokens = getattr(usage, "prompt_tokens", None) or 0
        completion_tokens = getattr(usage, "completion_tokens", None) or 0
        cost = None
        if self.price_per_1k_tokens is not None and usage is not None:
            prompt_price, completion_price = self.price_per_1k_tokens
            cost = (prompt_tokens * prompt_price + completion_tokens * completion_price) / 1000
        return Reply(text, prompt_tokens, completion_tokens, cost, cut_chars=cut)


def _classify(openai: Any, error: Exception) -> _Failure:
    """Retry timeouts, connection errors, 429, 5xx and malformed bodies; nothing else. All but a
    malformed JSON structure count as an outage."""
    if isinstance(error, openai.APIStatusError):
        reason = f"HTTP {error.status_code}: {str(error.message)[:MAX_SERVER_MESSAGE]}"
        if error.status_code == 429:
            return _Failure(reason, True, retry_after_s=_retry_after_s(error.response), outage=True)
        return _Failure(reason, retryable=error.status_code >= 500, outage=error.status_code >= 500)
    if isinstance(error, openai.APIConnectionError):  # includes APITimeoutError
        return _Failure(f"{type(error).__name__}: {error}", retryable=True, outage=True)
    return _Failure(f"malformed response ({type(error).__name__}: {error})", retryable=True, outage=True)


def _retry_after_s(response: Any) -> float | None:
    """Seconds from a numeric Retry-After header (an HTTP date, or none, gives None)."""
    try:
        return max(0.0, float(response.headers.get("retry-after")))
    except (TypeError, ValueError):
        return None


def _redact(text: str, secret: str | None) -> str:
    """`text` without the key: whole, any prefix of >= MIN_LEAKED_PREFIX characters (a server echoing
    "sk-sec..." or "sk-secret-01234***"), with the mask and key suffix that may follow it, and a mask
    followed by a key suffix ("****cdef")."""
    if not secret:
        return text
    text = text.replace(secret, REDACTED)
    prefixes = [re.escape(secret[:n]) for n in range(len(secret) - 1, MIN_LEAKED_PREFIX - 1, -1)]
    suffixes = [re.escape(secret[-n:]) for n in range(len(secret) - 1, MIN_LEAKED_SUFFIX - 1, -1)]
    patterns = []
    if prefixes:
        patterns.append(rf"(?:{'|'.join(prefixes)})(?:{_MASK}(?:{'|'.join(suffixes) or '(?!)'})?)?")
    if suffixes:
        patterns.append(rf"{_MASK}(?:{'|'.join(suffixes)})")
    return re.sub("|".join(patterns), REDACTED, text) if patterns else text
