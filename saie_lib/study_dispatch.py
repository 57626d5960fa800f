"""A profile's study dispatched on Ray, before its notebooks run: the graph of runs (`run_graph.study_graph`)
executed on a cluster (`ray_executor`), experiment.json written for every experiment whose runs all finished,
and one row per experiment appended to reproduce_log.jsonl. `reproduce --executor ray` then executes the
notebooks of those experiments, which find every run finished and only read, render and plot."""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .profiles import Profile
from .ray_cluster import check_shared_filesystem, ray_cluster
from .ray_executor import LOGS_FOLDER, GraphOutcome, run_graph
from .run_graph import RunNode, study_graph, write_finished_markers

STATED_RAM = re.compile(r"(\d+(?:\.\d+)?)\s*GB RAM")


@dataclass
class StudyDispatch:
    outcome: GraphOutcome
    nodes: list[RunNode]
    ran: set[str] = field(default_factory=set)  # experiments that had runs executed by this dispatch
    incomplete: dict[str, list[str]] = field(default_factory=dict)  # experiment -> its runs that did not finish


def stated_ram_bytes(profile: Profile) -> int | None:
    """The profile's stated peak RAM of a run ('about 2.5 GB RAM ...'), declared to Ray as each CPU run's memory
    so that it does not start more runs than the machine holds; None when the profile states GPU memory only."""
    found = STATED_RAM.search(profile.expected_memory)
    return int(float(found.group(1)) * 2**30) if found else None


def logs_dir(profile: Profile, results_root: Path) -> Path:
    return results_root / "runs" / profile.name / LOGS_FOLDER


def dispatch_study(profile: Profile, experiments: Sequence[str], *, data_dir: str | None, results_root: Path,
                   log: Callable[[str, Path, dict[str, Any]], None], address: str | None = None,
                   workers: int | None = None, cpus_per_run: float = 1, memory_gb: float | None = None,
                   max_retries: int = 3, progress: bool = True) -> StudyDispatch:
    """Every run of `experiments` on the cluster; markers for the complete experiments; one `log` row per
    experiment (reproduce.log: reproduce_log.jsonl)."""
    locations: dict[str, Any] = {"data_dir": data_dir, "results_root": str(results_root)}
    with ray_cluster(address, workers=workers):
        check_shared_filesystem(results_root, data_dir)
        nodes = study_graph(profile, experiments, **locations)
        memory = int(memory_gb * 2**30) if memory_gb else stated_ram_bytes(profile)
        outcome = run_graph(nodes, profile.path, logs_dir=logs_dir(profile, results_root), progress=progress,
                            cpus_per_run=cpus_per_run, memory_bytes=memory,
                            max_retries=max_retries, **locations)
    dispatch = StudyDispatch(outcome, nodes)
    for node in nodes:
        if node.label in outcome.missing:
            dispatch.incomplete.setdefault(node.experiment, []).append(node.label)
        elif node.label not in outcome.reused:
            dispatch.ran.add(node.experiment)
    complete = [name for name in dict.fromkeys(n.experiment for n in nodes) if name not in dispatch.incomplete]
    write_finished_markers(profile, complete, **locations)
    for row in log_rows(dispatch, workers):
        log(profile.name, results_root, row)
    return dispatch


def log_rows(dispatch: StudyDispatch, workers: int | None) -> list[dict[str, Any]]:
    """One reproduce_log.jsonl row per experiment with runs executed or missing: its runs' seconds (they
    overlap with other experiments', so they are not its wall time) and the whole dispatch's wall seconds."""
    outcome, rows = dispatch.outcome, []
    for name in dict.fromkeys(n.experiment for n in dispatch.nodes):
        labels = [n.label for n in dispatch.nodes if n.experiment == name]
        if name not in dispatch.ran and name not in dispatch.incomplete:
            continue
        rows.append({
            "experiment": name, "status": "incomplete on ray" if name in dispatch.incomplete else "ran on ray",
            "executor": "ray", "workers": workers, "runs": len(labels),
            "reused": sum(label in outcome.reused for label in labels),
            "run_seconds": round(sum(outcome.seconds.get(label, 0.0) for label in labels), 1),
            "dispatch_wall_seconds": outcome.wall_seconds, "missing": dispatch.incomplete.get(name, [])})
    return rows


def missing_report(dispatch: StudyDispatch) -> list[str]:
    """What the summary lacks, one line per run that did not finish, with why."""
    outcome = dispatch.outcome
    lines = [f"{label}: failed: {why}" for label, why in outcome.failed.items()]
    lines += [f"{label}: not run (needs {', '.join(needs)})" for label, needs in outcome.not_run.items()]
    return lines


def reproduce_on_ray(profile: Profile, names: list[str], *, render: Callable[..., str],
                     log: Callable[[str, Path, dict[str, Any]], None], data_dir: str | None, results_root: Path,
                     progress: bool, options: dict[str, Any]) -> dict[str, str]:
    """The runs on Ray, then `render` (reproduce.run_one_locked: a notebook) for each experiment whose runs all
    finished, executed even though they finished where this dispatch ran some, so that it renders the new runs
    (`--force` removed the runs before the dispatch). An incomplete experiment's notebook is not run: it would
    train the missing runs here, one after another."""
    dispatch = dispatch_study(profile, names, data_dir=data_dir, results_root=results_root, log=log,
                              progress=progress, **options)
    statuses = {}
    for name in names:
        if name in dispatch.incomplete:
            statuses[name] = "incomplete"
            continue
        status = render(profile, name, data_dir=data_dir, results_root=results_root, force=False,
                        execute_finished=name in dispatch.ran, progress=progress)
        statuses[name] = "ran on ray" if name in dispatch.ran else status
    for line in missing_report(dispatch):
        print(f"[reproduce] missing from the summary: {line}", file=sys.stderr)
    return statuses


def add_executor_arguments(parser: argparse.ArgumentParser, executors: Sequence[str]) -> None:
    """`python -m saie_lib.reproduce` options: the executor, and where and how the runs go on Ray."""
    parser.add_argument("--executor", choices=executors, default="local",
                        help="local: the notebooks run the runs, one after another; ray: the runs go to a Ray "
                             "cluster first (README: Beyond one machine)")
    parser.add_argument("--ray-address", default=None,
                        help="an existing Ray cluster (default: env RAY_ADDRESS, else one started on this machine)")
    parser.add_argument("--workers", type=int, default=None,
                        help="a Ray instance started here: CPUs it offers (default: all); its GPUs are all used")
    parser.add_argument("--cpus-per-run", type=float, default=1, help="CPUs each run reserves (default 1)")
    parser.add_argument("--memory-gb-per-run", type=float, default=None,
                        help="RAM each run reserves (default: the profile's stated peak RAM, where it states one)")
    parser.add_argument("--max-retries", type=int, default=3,
                        help="times a run whose worker died is started again (it resumes); a run that raised is "
                             "not retried")


def ray_arguments(args: argparse.Namespace) -> dict[str, Any]:
    return {"address": args.ray_address, "workers": args.workers, "cpus_per_run": args.cpus_per_run,
            "memory_gb": args.memory_gb_per_run, "max_retries": args.max_retries}
