"""A stand-in for vLLM's OpenAI-compatible server, for fast tests of the server's life (start, readiness, a
failed start, stop) and of what the engine and the partner do when a server dies mid-run. Run as a script:

    python fake_vllm_server.py PORT [--fail] [--die-after N --once-file PATH]

It answers /health, /version, /v1/completions (text "tokens=<prompt length> last=<last id>", deterministic)
and /v1/chat/completions (a remark naming the conversation's last message). --fail prints a few log lines and
exits 3 (a server that cannot start). --die-after N: the process exits at once, mid-run, after answering N
requests, the first time only (it creates --once-file; a restarted server finds it and keeps running).
Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ANSWERED = {"count": 0}
LOCK = threading.Lock()


def completion_text(prompt: list[int]) -> str:
    return f"tokens={len(prompt)} last={prompt[-1]}"


def remark_text(messages: list[dict]) -> str:
    return f"A remark on: {messages[-1]['content'][:40]}"


class Handler(BaseHTTPRequestHandler):
    options: argparse.Namespace

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, {})
        elif self.path == "/version":
            self._send(200, {"version": "fake-0"})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        time.sleep(0.05)
        if self.path == "/v1/completions":
            text = completion_text(body["prompt"])
            choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
            self._answer({"id": "c", "object": "text_completion", "created": 0, "model": body["model"],
                          "choices": [choice], "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                                         "total_tokens": 2}})
        elif self.path == "/v1/chat/completions":
            message = {"role": "assistant", "content": remark_text(body["messages"])}
            self._answer({"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                          "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                          "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}})
        else:
            self._send(404, {"error": "not found"})

    def _answer(self, body: dict) -> None:
        options = self.options
        with LOCK:
            ANSWERED["count"] += 1
            dies = options.die_after and ANSWERED["count"] > options.die_after and not options.once_file.exists()
            if dies:
                options.once_file.touch()
                os._exit(9)  # dies mid-run: requests in flight get no answer
        self._send(200, body)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--fail", action="store_true")
    parser.add_argument("--die-after", type=int, default=0)
    parser.add_argument("--once-file", type=Path, default=Path(os.devnull))
    options = parser.parse_args()
    if options.fail:
        print("loading model ...\nValueError: the model folder holds no config.json", flush=True)
        sys.exit(3)
    Handler.options = options
    ThreadingHTTPServer(("127.0.0.1", options.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
