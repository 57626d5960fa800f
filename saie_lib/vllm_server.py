"""A vLLM OpenAI-compatible server run as a subprocess of this process.

    server = VllmServer(ServerSpec(model_dir, served_name="smollm2", dtype="float32")).start()
    server.base_url        # http://127.0.0.1:<free port>/v1
    server.stop()

`start` picks a free port on 127.0.0.1, waits until the server answers /health, and raises `VllmServerError`
with the tail of the server's log when it exits or does not answer in time. A server is never left running:
`stop` ends its whole process group (the API server and the engine core it forks: a killed API server leaves
its engine core running otherwise), every server still running is stopped when this process exits (atexit),
and the kernel stops it when this process dies without running atexit (Linux: PR_SET_PDEATHSIG).
`shared_server` keeps one server per spec for the whole process (several runs, one startup of minutes).

The server runs `python -m vllm.entrypoints.openai.api_server` with this interpreter (the `vllm` command
is missing under the CPU build's package name); greedy stays greedy: `--generation-config vllm` keeps the
model's generation_config out of the defaults (as saie_lib.generation.generation_settings does for HF).
"""

from __future__ import annotations

import atexit
import importlib.metadata
import importlib.util
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .paths import cache_dir

INSTALL_HINT = ("vLLM is not installed: `make test-vllm` builds .venv-vllm with it (CPU build: pip install -c "
                "constraints.txt -e '.[vllm]'), or install `vllm` on a CUDA machine")
ENTRYPOINT = "vllm.entrypoints.openai.api_server"
START_TIMEOUT_S = 900.0  # a 2-core CPU took 60-240 s (torch.compile warm-up under load)
STOP_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 40
EXTRA_ARGS_ENV = "SAIE_VLLM_ARGS"  # more server arguments, e.g. "--enforce-eager" (recorded with the engine)
DEFAULT_KVCACHE_GIB = "2"  # VLLM_CPU_KVCACHE_SPACE unless set: the KV cache a CPU server reserves
_PR_SET_PDEATHSIG = 1


class VllmServerError(RuntimeError):
    """A vLLM server failed to start or died; the message holds its log's last lines."""


def vllm_version() -> str | None:
    """The installed vLLM's version (the CPU build installs as 'vllm-cpu'), None when not installed."""
    for dist in ("vllm", "vllm-cpu"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def require_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise ImportError(INSTALL_HINT)


@dataclass(frozen=True)
class ServerSpec:
    """What a server serves and how: these decide its outputs, so a shared server is kept per spec."""

    model: str  # a local model directory (or a Hub id the server can fetch)
    served_name: str  # the name requests ask for
    dtype: str = "float32"
    max_model_len: int | None = None  # None: the model's own
    extra_args: tuple[str, ...] = ()

    def command(self, port: int) -> list[str]:
        args = [sys.executable, "-m", ENTRYPOINT, "--model", self.model, "--served-model-name", self.served_name,
                "--dtype", self.dtype, "--host", "127.0.0.1", "--port", str(port), "--generation-config", "vllm",
                "--seed", "0", "--disable-uvicorn-access-log"]
        if self.max_model_len:
            args += ["--max-model-len", str(self.max_model_len)]
        return args + list(self.extra_args)


def extra_args_from_env() -> tuple[str, ...]:
    return tuple(shlex.split(os.environ.get(EXTRA_ARGS_ENV, "")))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: atexit and stop() still end the server
        pass


def server_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("VLLM_CACHE_ROOT", str(cache_dir() / "vllm"))
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", DEFAULT_KVCACHE_GIB)
    return env


class VllmServer:
    """One server process (group). `restarts` counts the starts after the first."""

    def __init__(self, spec: ServerSpec, *, start_timeout_s: float = START_TIMEOUT_S):
        self.spec, self.start_timeout_s = spec, start_timeout_s
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self.log_path: Path | None = None
        self.starts = 0
        self.startup_seconds: list[float] = []

    @property
    def restarts(self) -> int:
        return max(self.starts - 1, 0)

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> "VllmServer":
        """Start the server and wait until it answers; VllmServerError (with its log's tail) if it does not."""
        require_vllm()
        self.stop()
        self.port = free_port()
        logs = cache_dir() / "vllm" / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"{self.spec.served_name.replace('/', '_')}-{self.port}.log"
        started = time.monotonic()
        with open(self.log_path, "w", encoding="utf-8") as log:
            self.process = subprocess.Popen(self.spec.command(self.port), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=server_environment(),
                                            start_new_session=True, preexec_fn=_die_with_parent)
        _RUNNING.add(self)
        self.starts += 1
        self._wait_ready(started)
        self.startup_seconds.append(round(time.monotonic() - started, 1))
        return self

    def _wait_ready(self, started: float) -> None:
        while time.monotonic() - started < self.start_timeout_s:
            if not self.alive():
                code = self.process.returncode
                self.stop()
                raise VllmServerError(f"the vLLM server for {self.spec.model} exited with code {code} while "
                                      f"starting. {self.log_tail()}")
            if self._healthy():
                return
            time.sleep(1.0)
        self.stop()
        raise VllmServerError(f"the vLLM server for {self.spec.model} did not answer within "
                              f"{self.start_timeout_s:g} s; it was stopped. {self.log_tail()}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.root_url}/health", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def version(self) -> str | None:
        """The version the running server reports (GET /version)."""
        return server_version(self.root_url)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return "No server log was written."
        tail = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        return f"Last {len(tail)} lines of its log ({self.log_path}):\n" + "\n".join(tail)

    def stop(self) -> None:
        """End the server's process group: SIGTERM, then SIGKILL after STOP_TIMEOUT_S. Safe to call twice."""
        process, self.process = self.process, None
        _RUNNING.discard(self)
        if process is None:
            return
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(process.pid, signal.SIGKILL)  # the engine core too, if it outlived the API server
        process.wait()
        _wait_group_gone(process.pid)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> "VllmServer":
        return self.start() if not self.alive() else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_group_gone(pgid: int, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Until no process of the group is left (killed children are reaped by init a moment later)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.2)


def server_version(root_url: str) -> str | None:
    """GET <root>/version of a vLLM server (a remote one too); None when it does not answer with one."""
    try:
        with urllib.request.urlopen(f"{root_url.rstrip('/')}/version", timeout=10) as response:
            return json.loads(response.read().decode("utf-8")).get("version")
    except (urllib.error.URLError, OSError, ValueError, AttributeError):
        return None


_RUNNING: set[VllmServer] = set()
_SHARED: dict[ServerSpec, VllmServer] = {}


def shared_server(spec: ServerSpec) -> VllmServer:
    """The process-wide server for `spec`, started on first use and restarted when it died."""
    server = _SHARED.setdefault(spec, VllmServer(spec))
    if not server.alive():
        server.start()
    return server


def stop_all() -> None:
    """Stop every server this process started (shared ones too)."""
    for server in list(_RUNNING):
        server.stop()
    _SHARED.clear()


atexit.register(stop_all)


def describe(server: VllmServer | None, base_url: str) -> dict[str, Any]:
    """Where a server runs, for records: started here (with its arguments and start times) or reached at a URL."""
    if server is None:
        return {"server": "connected", "base_url": base_url}
    return {"server": "started by the library", "server_args": list(server.spec.extra_args),
            "startup_seconds": list(server.startup_seconds), "restarts": server.restarts}
