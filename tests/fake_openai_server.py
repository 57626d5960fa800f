"""A scriptable fake of the OpenAI chat API: a real HTTP server on 127.0.0.1, for partner tests.

    with FakeOpenAIServer() as server:
        server.script(status(500), ok())      # the next two requests: a 500, then a normal answer
        ... OpenAIChatPartner("fake-model", base_url=server.base_url) ...
        assert server.request_count == 2

Requests beyond the script get normal answers, or, with `faults=Faults(rate=0.6, seed=...)`, a seeded
mix of failures (500, 503, 429, timeouts, empty/blank/null content, a refusal, a non-JSON body) for that
fraction of them: request n's fate depends on (seed, n) only. Answers are deterministic: see `answer_for`.
The server listens on 127.0.0.1 only and refuses (HTTP 400) every request past `max_requests`. With
`long_replies=n`, every normal answer's content is padded to at least n characters (a partner that ignores
max_tokens).
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections import Counter, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Step:
    """What the server does with one request."""

    kind: str  # "ok" | "status" | "not_json" | "no_choices" | "content" | "hang" (never answers)
    delay_s: float = 0.0  # wait before answering (longer than the client timeout = a timeout)
    code: int = 200
    retry_after: str | None = None
    text: str | None = None  # kind "content": the reply's content (None: null)
    echo: str = "full"  # HTTP 401: how the key is echoed back, see ECHOES


ECHOES = {  # the forms in which real servers echo (part of) a rejected key
    "full": lambda key: key,
    "prefix": lambda key: key[:15] + "***",
    "ellipsis": lambda key: key[:6] + "\u2026",
    "openai": lambda key: key[:8] + "*" * 20 + key[-4:],
}


@dataclass(frozen=True)
class Faults:
    """Seeded fault injection: each request fails with probability `rate`, in one of FAULT_KINDS."""

    rate: float = 0.6
    seed: int = 0
    timeout_delay_s: float = 3.0  # a "timeout" answers this late: make it longer than the client's timeout


FAULT_KINDS = ("500", "503", "429", "timeout", "empty", "blank", "null", "refusal", "not_json")


def ok(delay_s: float = 0.0) -> Step:
    return Step("ok", delay_s=delay_s)


def status(code: int, retry_after: str | None = None, echo: str = "full") -> Step:
    assert echo in ECHOES, echo
    return Step("status", code=code, retry_after=retry_after, echo=echo)


def garbage(kind: str = "not_json") -> Step:
    assert kind in ("not_json", "no_choices"), kind
    return Step(kind)


def content(text: str | None) -> Step:
    """A 200 answer whose message content is `text` (None: null)."""
    return Step("content", text=text)


def fault_step(faults: Faults, n: int) -> tuple[str, Step]:
    """What request number n (0-based) gets under `faults`: ("ok", ok()) or (fault kind, its step)."""
    rng = random.Random(f"{faults.seed}:{n}")
    if rng.random() >= faults.rate:
        return "ok", ok()
    kind = rng.choice(FAULT_KINDS)
    steps = {"500": status(500), "503": status(503), "429": status(429, retry_after="0"),
             "timeout": Step("hang", delay_s=faults.timeout_delay_s), "empty": content(""), "blank": content(" \n\t "),
             "null": content(None), "refusal": content("I'm sorry, but I can't help with that."),
             "not_json": garbage("not_json")}
    return kind, steps[kind]


def answer_for(body: dict[str, Any]) -> dict[str, Any]:
    """The normal answer: text derived from the whole request, word counts as token usage."""
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]
    text = f"re: {body['messages'][-1]['content']} #{digest}"
    prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
    completion_tokens = len(text.split())
    return {
        "id": f"chatcmpl-{digest}",
        "object": "chat.completion",
        "created": 0,
        "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


class FakeOpenAIServer:
    """Context manager: starts on enter, stops (and unblocks delayed answers) on exit."""

    def __init__(self, answer_delay_s: float = 0.0, *, faults: Faults | None = None, port: int = 0,
                 max_requests: int = 2000, long_replies: int = 0):
        self.answer_delay_s = answer_delay_s  # added to every normal answer (for concurrency tests)
        self.long_replies = long_replies  # normal answers padded to at least this many characters
        self.faults = faults
        self.max_requests = max_requests
        self.requests: list[dict[str, Any]] = []
        self.fault_counts: Counter[str] = Counter()  # fault kind -> requests that got it
        self.answered: Counter[str] = Counter()  # last message content -> normal answers sent for it
        self.max_in_flight = 0
        self._in_flight = 0
        self._steps: deque[Step] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def script(self, *steps: Step) -> None:
        with self._lock:
            self._steps.extend(steps)

    def __enter__(self) -> "FakeOpenAIServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _begin(self, body: dict[str, Any]) -> Step:
        with self._lock:
            n = len(self.requests)
            self.requests.append(body)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            if n >= self.max_requests:
                return status(400)
            if self._steps:
                return self._steps.popleft()
            if self.faults is None:
                return ok()
            kind, step = fault_step(self.faults, n)
            if kind != "ok":
                self.fault_counts[kind] += 1
            return step

    def _answered(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.answered[body["messages"][-1]["content"]] += 1

    def _end(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)


def _handler_for(server: FakeOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def do_POST(self) -> None:
            if self.path != CHAT_PATH:
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            step = server._begin(body)
            try:
                server._wait(step.delay_s)
                self._act(step, body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                pass
            finally:
                server._end()

        def _act(self, step: Step, body: dict[str, Any]) -> None:
            if step.kind == "ok":
                server._wait(server.answer_delay_s)
                answer = answer_for(body)
                if server.long_replies:
                    message = answer["choices"][0]["message"]
                    message["content"] += " and so on" * ((server.long_replies - len(message["content"])) // 10 + 1)
                self._send(200, answer)
                server._answered(body)
            elif step.kind == "hang":  # waited past the client's timeout: close without an answer
                self.close_connection = True
            elif step.kind == "content":
                answer = answer_for(body)
                answer["choices"][0]["message"]["content"] = step.text
                self._send(200, answer)
            elif step.kind == "not_json":
                self._send_raw(200, b"<html>502 Bad Gateway</html>")
            elif step.kind == "no_choices":
                self._send(200, {"id": "x", "object": "chat.completion", "model": body["model"]})
            elif step.code == 401:  # real servers echo (part of) the key: the client must redact it
                key = ECHOES[step.echo](self.headers.get("Authorization", "").removeprefix("Bearer "))
                self._send(401, {"error": {"message": f"Incorrect API key provided: {key}",
                                           "type": "invalid_request_error", "code": "invalid_api_key"}})
            else:
                headers = {"Retry-After": step.retry_after} if step.retry_after else {}
                self._send(step.code, {"error": {"message": f"scripted error {step.code}"}}, headers)

        def _send(self, code: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            self._send_raw(code, json.dumps(payload).encode(), headers)

        def _send_raw(self, code: int, data: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler
