"""A partner behind any OpenAI-compatible chat API (OpenAI, vLLM, Ollama, ...).

One request per conversation, sent concurrently (at most `max_concurrency` in flight), answers in
input order. Bounded retries with exponential backoff, only on failures that can pass: timeouts,
connection errors, HTTP 429 and 5xx, malformed responses. Any other 4xx fails at once.

The API key is read from the environment at call time and never kept on the object, logged, or put
in an error message (server messages that echo it are redacted).
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

from . import Messages, PartnerError, Reply, Sampling

DEFAULT_BASE_URL = "https://api.openai.com/v1"
PLACEHOLDER_KEY = "unused"  # sent to local servers (vLLM, Ollama) that ignore keys
INSTALL_HINT = 'pip install "saie[api]"  (or: pip install openai==3.51.0)'
MAX_SERVER_MESSAGE = 300  # characters of a server's error message kept in ours


@dataclass(frozen=True)
class _Failure:
    """Why one attempt failed, whether another attempt may pass, and the wait the server asked for."""

    reason: str
    retryable: bool
    retry_after_s: float | None = None


def _require_openai() -> Any:
    try:
        import openai
    except ImportError as error:
        raise ImportError(f"the API partner needs the openai package: {INSTALL_HINT}") from error
    return openai


class OpenAIChatPartner:
    """Partner served by an OpenAI-compatible `/chat/completions` endpoint."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        base_url_env: str = "OPENAI_BASE_URL",
        timeout_s: float = 60,
        max_retries: int = 4,
        max_concurrency: int = 8,
        price_per_1k_tokens: tuple[float, float] | None = None,
        backoff_s: float = 1.0,
        max_wait_s: float = 60.0,
    ):
        """api_key_env=None: no key needed (local server). price_per_1k_tokens: USD (prompt, completion).
        backoff_s: first retry wait, doubled each attempt; max_wait_s caps it and any Retry-After."""
        for name, value in (("timeout_s", timeout_s), ("max_concurrency", max_concurrency)):
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        for name, value in (("max_retries", max_retries), ("backoff_s", backoff_s), ("max_wait_s", max_wait_s)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        _require_openai()
        self.model = model
        self.base_url = (base_url or os.environ.get(base_url_env) or DEFAULT_BASE_URL).rstrip("/")
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_concurrency = max_concurrency
        self.price_per_1k_tokens = price_per_1k_tokens
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
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
        workers = min(self.max_concurrency, len(conversations))
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="partner") as pool:
                futures = [pool.submit(self._complete, client, c, sampling, secret) for c in conversations]
                try:
                    return [future.result() for future in futures]
                finally:
                    for future in futures:  # after a failure, drop requests not yet sent
                        future.cancel()
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

    def _complete(self, client: Any, messages: Messages, sampling: Sampling, secret: str | None) -> Reply:
        """One conversation, with up to `max_retries` retries. Errors are raised outside any `except`
        block, so they chain no client exception (which would hold the request and its key)."""
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            outcome = self._attempt(client, messages, sampling)
            if isinstance(outcome, Reply):
                return outcome
            if not outcome.retryable:
                raise PartnerError(_redact(
                    f"{self.model} at {self.base_url} refused the request ({outcome.reason}); not retried. "
                    "Check the model name, the request parameters and the key.", secret))
            if attempt + 1 < attempts:
                time.sleep(self._wait_s(attempt, outcome.retry_after_s))
        raise PartnerError(_redact(
            f"{self.model} at {self.base_url} failed after {attempts} attempts; last error: {outcome.reason}. "
            "Check that the server is up and reachable, or raise max_retries / timeout_s.", secret))

    def _wait_s(self, attempt: int, retry_after_s: float | None) -> float:
        wait = self.backoff_s * 2**attempt
        if retry_after_s is not None:
            wait = max(wait, retry_after_s)
        return min(wait, self.max_wait_s)

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
            text = None
        if not isinstance(text, str):
            return _Failure("malformed response: no choices[0].message.content", retryable=True)
        usage = getattr(response, "usage", None)
        prompt_tokens = getattr(usage, "prompt_tokens", None) or 0
        completion_tokens = getattr(usage, "completion_tokens", None) or 0
        cost = None
        if self.price_per_1k_tokens is not None and usage is not None:
            prompt_price, completion_price = self.price_per_1k_tokens
            cost = (prompt_tokens * prompt_price + completion_tokens * completion_price) / 1000
        return Reply(text, prompt_tokens, completion_tokens, cost)


def _classify(openai: Any, error: Exception) -> _Failure:
    """Retry timeouts, connection errors, 429, 5xx and malformed bodies; nothing else."""
    if isinstance(error, openai.APIStatusError):
        reason = f"HTTP {error.status_code}: {str(error.message)[:MAX_SERVER_MESSAGE]}"
        if error.status_code == 429:
            return _Failure(reason, retryable=True, retry_after_s=_retry_after_s(error.response))
        return _Failure(reason, retryable=error.status_code >= 500)
    if isinstance(error, openai.APIConnectionError):  # includes APITimeoutError
        return _Failure(f"{type(error).__name__}: {error}", retryable=True)
    return _Failure(f"malformed response ({type(error).__name__}: {error})", retryable=True)


def _retry_after_s(response: Any) -> float | None:
    """Seconds from a numeric Retry-After header (an HTTP date, or none, gives None)."""
    try:
        return max(0.0, float(response.headers.get("retry-after")))
    except (TypeError, ValueError):
        return None


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text
