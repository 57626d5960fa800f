"""`python -m saie_lib.reproduce --executor ray`: the study's runs as Ray tasks, in dependency order.

Ray schedules each run by its declared resources (one GPU for a CUDA run, `cpus_per_run` CPUs, the profile's
stated peak RAM), retries a run whose worker died (`max_retries`; the run resumes from its last checkpoint and
its stored partner remarks are read from the cache, not asked again), and runs a run that raised (a bad
config, missing data) once: what needs it is not started, the rest of the graph goes on, and the outcome names
what is missing. Without RAY_ADDRESS (or `address`) a Ray instance is started on this machine and shut down at
the end; with it, the runs go to that cluster.

Every worker must see the results root (and the data folder) at the same path, and import the same code: that
is checked on every node before anything runs. The partner remark cache is opened by one process on this machine
and served to the runs (`saie_lib.remark_cache_server`). SAIE_* variables of this process (results root, cache, remark
cache, progress) are handed to the runs; secrets are not: an API partner's key must be in the workers' own
environment. Each run writes its output to runs/<profile>/ray-logs/<run>.log under the results root.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
import traceback
import uuid
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .run_graph import RunNode, log_name, resume_point, run_node

INSTALL_HINT = "the ray executor needs Ray: pip install -e '.[ray]' -c constraints.txt (or `make install`)"
FORWARDED_PREFIX = "SAIE_"  # paths and switches of this library; never a secret
ATTEMPT_HEADER = "== attempt on "
LOGS_FOLDER = "ray-logs"
OBJECT_STORE_BYTES = 200 * 2**20  # runs hand each other only small results (run dir names)
# A loaded machine can take longer than Ray's default 30 s to start the node's agent processes.
START_ATTEMPTS = 3
SLOW_START_SETTINGS = {"RAY_agent_register_timeout_ms": "120000"}


class SharedFilesystemError(RuntimeError):
    """A worker cannot see or write what the runs share (the results root, the remark cache's folder) or runs
    other code than this process."""


@dataclass
class GraphOutcome:
    finished: dict[str, Path] = field(default_factory=dict)  # label -> run dir
    reused: set[str] = field(default_factory=set)  # finished before this dispatch
    failed: dict[str, str] = field(default_factory=dict)  # label -> the error, one line
    not_run: dict[str, list[str]] = field(default_factory=dict)  # label -> the failed runs it needs
    seconds: dict[str, float] = field(default_factory=dict)  # label -> seconds its task ran
    wall_seconds: float = 0.0

    @property
    def missing(self) -> list[str]:
        return [*self.failed, *self.not_run]


def import_ray():
    try:
        import ray
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    return ray


@contextmanager
def ray_cluster(address: str | None = None, *, workers: int | None = None) -> Iterator[bool]:
    """Connected to the cluster at `address` (else env RAY_ADDRESS), or to a Ray instance started here with
    `workers` CPUs (default: all) and this machine's GPUs, shut down on exit. Yields whether it was started."""
    ray = import_ray()
    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        yield False
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        start_local_ray(workers)
    try:
        yield not address
    finally:
        ray.shutdown()


def start_local_ray(workers: int | None) -> None:
    """ray.init on this machine. Its raylet gives its agent process 15 s to come up and aborts otherwise, which
    a heavily loaded machine can miss: the start is tried START_ATTEMPTS times, the processes of a failed
    attempt (this process's new children) ended first."""
    ray = import_ray()
    for name, value in SLOW_START_SETTINGS.items():
        os.environ.setdefault(name, value)
    for attempt in range(1, START_ATTEMPTS + 1):
        before = child_processes()
        try:
            ray.init(num_cpus=workers, include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES,
                     log_to_driver=False)
            return
        except Exception as error:  # Ray raises a bare Exception when its node does not start in time
            if "timed out during startup" not in str(error) or attempt == START_ATTEMPTS:
                raise
        for pid in child_processes() - before:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        print(f"[ray] the local Ray node did not start in time (a loaded machine?); attempt {attempt + 1} of "
              f"{START_ATTEMPTS}", file=sys.stderr, flush=True)


def child_processes() -> set[int]:
    """The process ids whose parent is this process (Linux /proc; empty elsewhere)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == os.getpid():
                children.add(int(stat.parent.name))
    return children


def forwarded_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_PREFIX)}


def code_identity() -> dict[str, Any]:
    """What must agree between this process and every worker: the package version and the commit."""
    from . import __version__
    from .artifacts import git_state

    return {"saie": __version__, "git_sha": git_state().get("git_sha")}


def probe_node(probe: str, token: str, data_dir: str | None, code: dict[str, Any]) -> list[str]:
    """On one node: the problems with what the runs share (runs as a Ray task pinned to that node)."""
    problems = []
    path = Path(probe)
    if not path.is_file() or path.read_text() != token:
        problems.append(f"cannot read {path.parent}: the results root is not on a filesystem this node sees")
    problems += unwritable(path.parent, token)
    if data_dir and not Path(data_dir).is_dir():
        problems.append(f"cannot see the data folder {data_dir}")
    mine = code_identity()
    known_commits = None not in (mine["git_sha"], code["git_sha"])
    if mine["saie"] != code["saie"] or (known_commits and mine != code):
        problems.append(f"runs other code ({mine}) than the driver ({code}): install the same checkout on every node")
    return problems


def unwritable(folder: Path, token: str) -> list[str]:
    """[] when a file can be created in `folder` (made if missing), else the problem."""
    check = folder / f".write-check-{token}-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        check.touch()
        check.unlink()
    except OSError as error:
        return [f"cannot write {folder}: {error.strerror}"]
    return []


def check_shared_filesystem(results_root: Path, data_dir: str | None = None) -> None:
    """Before any run: every alive node reads a file written here under the results root, writes the results
    root, sees `data_dir` and runs the same code, and this machine (where the remark cache is served) writes the
    remark cache's folder; else SharedFilesystemError."""
    ray = import_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from .paths import remark_cache_file

    token = uuid.uuid4().hex
    local = unwritable(remark_cache_file().parent, token)
    if local:
        raise SharedFilesystemError(f"the remark cache is served from this machine, which {local[0]}")
    probe = results_root / f".ray-probe-{token}"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text(token)
    try:
        checks = {f"{node['NodeManagerAddress']} ({node['NodeID'][:8]})": ray.remote(probe_node).options(
            num_cpus=0, runtime_env={"env_vars": forwarded_environment()},
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
        ).remote(str(probe), token, data_dir, code_identity()) for node in ray.nodes() if node["Alive"]}
        problems = {host: ray.get(ref) for host, ref in checks.items()}
    finally:
        probe.unlink(missing_ok=True)
    bad = {host: found for host, found in problems.items() if found}
    if bad:
        lines = "; ".join(f"node {host}: {', '.join(found)}" for host, found in bad.items())
        raise SharedFilesystemError(f"every Ray worker must see the results root {results_root} at the same path "
                                    f"(a shared filesystem) and run the same code. {lines}")


@contextmanager
def output_to(path: Path) -> Iterator[None]:
    """This process's stdout and stderr (file descriptors 1 and 2, so C libraries' output too) appended to
    `path`, restored afterwards (a Ray worker runs many tasks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("a", encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def execute_logged(node: RunNode, profile_path: str, log_path: str, progress: bool,
                   locations: dict[str, Any]) -> dict[str, Any]:
    """A run as a Ray task: its output in its log, its run dir and seconds returned, its error raised."""
    with output_to(Path(log_path)):
        print(f"{ATTEMPT_HEADER}{socket.gethostname()} pid {os.getpid()} at "
              f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}: {node.label}", flush=True)
        point = resume_point(node)
        if point:
            print(f"resuming from checkpoint {point}", flush=True)
        started = time.perf_counter()
        try:
            out = run_node(node, profile_path, progress=progress, **locations)
        except BaseException:
            traceback.print_exc()
            raise
        seconds = round(time.perf_counter() - started, 1)
        print(f"== finished in {seconds} s: {out}", flush=True)
    return {"run_dir": str(out), "seconds": seconds}


def attempts(log: Path) -> int:
    """How many times a run's task started (a retry after a worker died starts it again)."""
    try:
        return log.read_text(encoding="utf-8", errors="replace").count(ATTEMPT_HEADER)
    except FileNotFoundError:
        return 0


def error_line(error: BaseException) -> str:
    cause = getattr(error, "cause", None) or error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}"[:300]


@dataclass
class Dispatch:
    """The state of one graph's dispatch on a connected cluster."""

    nodes: list[RunNode]
    submit: Callable[[RunNode], Any]  # node -> ObjectRef
    logs: Callable[[RunNode], Path]
    say: Callable[[str], None]
    outcome: GraphOutcome = field(default_factory=GraphOutcome)
    running: dict[Any, RunNode] = field(default_factory=dict)
    seen_attempts: dict[str, int] = field(default_factory=dict)

    def release(self, pending: list[RunNode]) -> list[RunNode]:
        """Submit what has all its needs finished, give up on what needs a failed run; return the rest."""
        waiting = []
        for node in pending:
            lost = [n for n in node.needs if n in self.outcome.failed or n in self.outcome.not_run]
            if lost:
                self.outcome.not_run[node.label] = lost
                self.say(f"{node.label}: not run: it needs {', '.join(lost)}, which did not finish")
            elif all(n in self.outcome.finished for n in node.needs):
                self.start(node)
            else:
                waiting.append(node)
        return waiting

    def start(self, node: RunNode) -> None:
        from . import artifacts

        if node.run_dir is not None and artifacts.is_finished(node.run_dir):
            self.outcome.finished[node.label] = node.run_dir
            self.outcome.reused.add(node.label)
            self.say(f"{node.label}: already finished, reused ({node.run_dir})")
            return
        self.running[self.submit(node)] = node

    def announce_starts(self) -> None:
        for node in self.running.values():
            count = attempts(self.logs(node))
            if count > self.seen_attempts.get(node.label, 0):
                retry = f" again (attempt {count}: its worker died; it resumes)" if count > 1 else ""
                self.say(f"{node.label}: started{retry} (log: {self.logs(node)})")
                self.seen_attempts[node.label] = count

    def collect(self, ref: Any) -> None:
        ray = import_ray()
        node = self.running.pop(ref)
        try:
            result = ray.get(ref)
        except Exception as error:  # the run's own error (run once) or its worker lost past max_retries
            self.outcome.failed[node.label] = error_line(error)
            self.say(f"{node.label}: FAILED: {self.outcome.failed[node.label]} (log: {self.logs(node)})")
            return
        self.outcome.finished[node.label] = Path(result["run_dir"])
        self.outcome.seconds[node.label] = result["seconds"]
        self.say(f"{node.label}: finished in {result['seconds']} s -> {result['run_dir']}")

    def run(self, poll_s: float = 1.0) -> GraphOutcome:
        ray = import_ray()
        started = time.perf_counter()
        pending = list(self.nodes)
        while pending or self.running:
            pending = self.release(pending)
            if not self.running:
                break  # what is left waits for runs outside the graph: release() reports none
            done, _ = ray.wait(list(self.running), num_returns=1, timeout=poll_s)
            self.announce_starts()
            for ref in done:
                self.collect(ref)
        for node in pending:  # needs that can never finish (not in the graph and not finished)
            self.outcome.not_run[node.label] = [n for n in node.needs if n not in self.outcome.finished]
        self.outcome.wall_seconds = round(time.perf_counter() - started, 1)
        return self.outcome


def ray_options(node: RunNode, *, cpus_per_run: float, memory_bytes: int | None, max_retries: int,
                env: dict[str, str]) -> dict[str, Any]:
    """A run's declared resources. A GPU run gets a fresh worker process (max_calls=1): its GPU memory and any
    Unsloth patching go with the process."""
    options: dict[str, Any] = {"num_cpus": cpus_per_run, "num_gpus": 1 if node.gpu else 0,
                               "max_retries": max_retries, "retry_exceptions": False,
                               "runtime_env": {"env_vars": env}, "name": node.label}
    if node.gpu:
        options["max_calls"] = 1
    if memory_bytes:
        options["memory"] = memory_bytes
    return options


def run_graph(nodes: Sequence[RunNode], profile_path: str | Path, *, logs_dir: Path, progress: bool = True,
              cpus_per_run: float = 1, memory_bytes: int | None = None, max_retries: int = 3,
              say: Callable[[str], None] | None = None, **locations: Any) -> GraphOutcome:
    """Run `nodes` on the connected cluster in dependency order; one line per run started, finished or failed."""
    ray = import_ray()
    from .remark_cache import SERVED_ENV
    from .remark_cache_server import start_server

    start_server()
    env = {**forwarded_environment(), SERVED_ENV: "1"}
    say = say or (lambda line: print(f"[ray] {line}", file=sys.stderr, flush=True))
    logs = lambda node: logs_dir / log_name(node)
    task = ray.remote(execute_logged)

    def submit(node: RunNode) -> Any:
        options = ray_options(node, cpus_per_run=cpus_per_run, memory_bytes=memory_bytes, max_retries=max_retries,
                              env=env)
        return task.options(**options).remote(node, str(profile_path), str(logs(node)), progress, locations)

    return Dispatch(list(nodes), submit, logs, say).run()
