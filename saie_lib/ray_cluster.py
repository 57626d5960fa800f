"""A Ray cluster for the study's runs: connected to one (RAY_ADDRESS) or started on this machine, and checked
before any run: every node sees the results root (and the data folder) at the same path and runs the same code,
and this machine, which serves the partner remark cache (`saie_lib.remark_cache_server`), can write its folder.
SAIE_* variables of this process (results root, cache, progress) are handed to the runs; secrets are not: an API
partner's key must be in the workers' own environment.
"""

from __future__ import annotations

import os
import signal
import sys
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterator

INSTALL_HINT = "the ray executor needs Ray: pip install -e '.[ray]' -c constraints.txt (or `make install`)"
FORWARDED_PREFIX = "SAIE_"  # paths and switches of this library; never a secret
OBJECT_STORE_BYTES = 200 * 2**20  # runs hand each other only small results (run dir names)
# A loaded machine can take longer than Ray's default 30 s to start the node's agent processes.
START_ATTEMPTS = 3
SLOW_START_SETTINGS = {"RAY_agent_register_timeout_ms": "120000"}


class SharedFilesystemError(RuntimeError):
    """A worker cannot see or write what the runs share (the results root, the remark cache's folder) or runs
    other code than this process."""


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
    """ray.init on this machine, tried START_ATTEMPTS times: on a heavily loaded machine a node can miss Ray's
    start-up deadlines. The processes of a failed attempt (this process's new children) are ended first."""
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


def child_processes(parent: int | None = None) -> set[int]:
    """The process ids whose parent is `parent` (default: this process); Linux /proc, empty elsewhere."""
    parent = parent or os.getpid()
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
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
