"""`python -m saie_lib.reproduce --executor ray`: the study's runs as Ray tasks, in dependency order.

Ray schedules each run by its declared resources (one GPU for a CUDA run, `cpus_per_run` CPUs, the profile's
stated peak RAM), retries a run whose worker died (`max_retries`; the run resumes from its last checkpoint and
its stored partner remarks are read from the cache, not asked again), and runs a run that raised (a bad
config, missing data) once: what needs it is not started, the rest of the graph goes on, and the outcome names
what is missing.

The cluster itself, and the checks before any run, are `saie_lib.ray_cluster`; the partner remark cache is
opened by one process on this machine and served to the runs (`saie_lib.remark_cache_server`). Each run writes
its output to runs/<profile>/ray-logs/<run>.log under the results root.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .ray_cluster import forwarded_environment, import_ray
from .run_graph import RunNode, log_name, resume_point, run_node

ATTEMPT_HEADER = "== attempt on "
LOGS_FOLDER = "ray-logs"


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
            out, reused = run_node(node, profile_path, progress=progress, **locations)
        except BaseException:
            traceback.print_exc()
            raise
        seconds = round(time.perf_counter() - started, 1)
        print(f"== {'already finished, reused' if reused else 'finished'} in {seconds} s: {out}", flush=True)
    return {"run_dir": str(out), "seconds": seconds, "reused": reused}


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
        """Submit what has all its needs finished and every run it comes after done (finished, failed or not
        run; a run it comes after that is not in this dispatch is not waited for), give up on what needs a failed
        run; return the rest."""
        while True:  # again while a pass settles runs (reused, not run) that others wait for
            waiting = self._release_once(pending)
            if len(waiting) == len(pending):
                return waiting
            pending = waiting

    def _release_once(self, pending: list[RunNode]) -> list[RunNode]:
        waiting = []
        dispatched = {node.label for node in self.nodes}
        done = {**self.outcome.finished, **self.outcome.failed, **self.outcome.not_run}
        for node in pending:
            lost = [n for n in node.needs if n in self.outcome.failed or n in self.outcome.not_run]
            if lost:
                self.outcome.not_run[node.label] = lost
                self.say(f"{node.label}: not run: it needs {', '.join(lost)}, which did not finish")
            elif all(n in self.outcome.finished for n in node.needs) and all(
                    n in done or n not in dispatched for n in node.after):
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
        if result["reused"]:
            self.outcome.reused.add(node.label)
            self.say(f"{node.label}: already finished, reused ({result['run_dir']})")
            return
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
    from .remark_cache_server import SERVED_ENV, start_server

    server = start_server()  # held until the dispatch ends: an actor nobody holds is ended
    env = {**forwarded_environment(), SERVED_ENV: "1"}
    say = say or (lambda line: print(f"[ray] {line}", file=sys.stderr, flush=True))
    logs = lambda node: logs_dir / log_name(node)
    task = ray.remote(execute_logged)

    def submit(node: RunNode) -> Any:
        options = ray_options(node, cpus_per_run=cpus_per_run, memory_bytes=memory_bytes, max_retries=max_retries,
                              env=env)
        return task.options(**options).remote(node, str(profile_path), str(logs(node)), progress, locations)

    outcome = Dispatch(list(nodes), submit, logs, say).run()
    del server
    return outcome
