"""Batch reproduction: `python -m saie_lib.reproduce --profile cpu-small` (or `make reproduce PROFILE=...`).

Runs every experiment notebook with papermill under one profile, keeps each executed notebook in its
experiment's folder (results/runs/<profile>/<experiment>/), skips experiments whose runs have all finished,
and lets the library resume unfinished runs from their checkpoints (`--force` removes an experiment's runs first
and computes them again). Then runs notebooks/90_figures_tables, which builds the combined tables, figures and
README.md of the results root from run dirs only. Every invocation appends what it did, and how long each
notebook took, to <results root>/runs/<profile>/reproduce_log.jsonl, and prints, one line each, what it computed
or reused and whether its runs' samples are the same as the committed ones in results/.

Two invocations on one results folder never write the same thing at once: an experiment (and the summary) is
run holding its folder's lock (`run_lock`), so the second waits for what the first is running and then skips
it as finished.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from . import artifacts, run_lock
from .experiments import (
    EXPERIMENTS,
    MARKER,
    challenge_configs,
    experiment_dir,
    get_experiment,
    inference_configs,
    marker_seed_run_dirs,
    seed_run_dirs,
)
from .kernel_io import NotebookFailed
from .notebook_runner import execute
from .paths import committed_results_dir, remark_cache_file
from .paths import results_root as resolve_results_root
from .profiles import Profile, load_profile
from .resources import allocator
from .run_report import activity_line, build_report, comparison_line, finished_runs, remove_runs
from .stages.challenge import challenge_run_dir
from .stages.discuss import inference_run_dir
from .write_errors import RunWriteError

SUMMARY_NOTEBOOK = "90_figures_tables.ipynb"
RECOMPUTE_HINT = "make reproduce PROFILE={profile} FORCE=1 (python -m saie_lib.reproduce --force)"
EXECUTORS = ("local", "ray")


def experiment_finished(profile: Profile, name: str, **locations: Any) -> bool:
    """True when the experiment's marker names exactly the run dirs the profile implies now and all finished
    (a changed profile therefore reruns, into new run dirs)."""
    experiment = get_experiment(name)
    marker_path = experiment_dir(profile.name, name, locations.get("results_root")) / MARKER
    if not marker_path.is_file():
        return False
    marker = artifacts.read_json(marker_path)
    try:
        if experiment.kind == "inference":  # the first seed's models only
            expected = {c: inference_run_dir(cfg) for c, cfg in inference_configs(profile, **locations).items()}
            return all(marker["conditions"].get(c) == d.name and artifacts.is_finished(d) for c, d in expected.items())
        expected = seed_run_dirs(profile, experiment, **locations) if experiment.is_training else {
            seed: {c: challenge_run_dir(cfg) for c, cfg in configs.items()}
            for seed, configs in challenge_configs(profile, **locations).items()}
    except RuntimeError:  # the inference or robustness experiment's training runs are missing
        return False
    recorded = marker_seed_run_dirs(marker, marker_path.parent)  # every seed's runs, each condition finished
    return set(recorded) == set(expected) and all(
        recorded[seed].get(c, Path()).name == d.name and artifacts.is_finished(d)
        for seed, runs in expected.items() for c, d in runs.items())


@functools.cache
def code_state() -> dict[str, Any]:
    """Commit and dirty flag, read once per process: before this log (a tracked file) is first appended to,
    so they describe the code that ran, not the log's own new rows."""
    return artifacts.git_state()


def log(profile: str, results_root: Path, row: dict[str, Any]) -> None:
    """One row of reproduce_log.jsonl."""
    git = code_state()
    artifacts.append_jsonl(results_root / "runs" / profile / artifacts.REPRODUCE_LOG, [{
        **row, "profile": profile, "git_sha": git.get("git_sha"), "git_dirty": git.get("git_dirty"),
        "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}])


def remark_cache_entries() -> int:
    """Partner remarks already in the default cache file: a run that finds them asks the partner less, so a wall
    time is from scratch only where this was 0 (point env SAIE_REMARK_CACHE at a new file for that)."""
    from .remark_cache import RemarkCache

    path = remark_cache_file()
    if not path.is_file():
        return 0
    with RemarkCache(path) as cache:
        return cache.stats()["entries"]


def forget_runs(profile: Profile, name: str, results_root: Path) -> None:
    """`--force`: remove the experiment's runs, so that they are computed again."""
    removed = remove_runs(experiment_dir(profile.name, name, results_root))
    print(f"[reproduce] {profile.name}/{name}: --force removed {len(removed)} run(s) to compute them again",
          file=sys.stderr)


def run_one(profile: Profile, name: str, *, data_dir: str | None, results_root: Path, force: bool,
            progress: bool, execute_finished: bool = False) -> str:
    """The experiment's notebook, unless its runs have all finished. `execute_finished`: execute it all the same
    (it reuses the finished runs; after a Ray dispatch ran them, the notebook renders them)."""
    experiment = get_experiment(name)
    locations = {"data_dir": data_dir, "results_root": str(results_root)}
    if force:
        forget_runs(profile, name, results_root)
    finished = experiment_finished(profile, name, **locations)
    if finished and not execute_finished:
        log(profile.name, results_root, {"experiment": name, "status": "skipped (all runs finished)"})
        return "skipped"
    output = experiment_dir(profile.name, name, results_root) / experiment.notebook
    cached = remark_cache_entries()
    started = time.perf_counter()
    try:
        execute(experiment.notebook, output, {"profile": profile.name, **locations}, progress=progress,
                results_root=results_root, data_dir=data_dir)
    except Exception:
        log(profile.name, results_root, {"experiment": name, "status": "failed",
                                         "seconds": round(time.perf_counter() - started, 1)})
        raise
    # A re-execution of finished runs only re-reads them: its seconds are not the experiment's wall time.
    log(profile.name, results_root, {"experiment": name,
                                     "status": "re-executed (all runs finished, reused)" if finished else "ran",
                                     "seconds": round(time.perf_counter() - started, 1),
                                     "remark_cache_entries_at_start": cached})
    return "re-executed" if finished else "ran"


def run_one_locked(profile: Profile, name: str, *, results_root: Path, **options: Any) -> str:
    """`run_one` holding the experiment folder's lock: a second `make reproduce` on the same results waits for
    an experiment that another one is running, then skips it as finished (or resumes what that one left)."""
    with run_lock.hold(experiment_dir(profile.name, name, results_root), what="experiment"):
        return run_one(profile, name, results_root=results_root, **options)


def build_summary(results_root: Path, *, progress: bool) -> Path:
    output = results_root / "runs" / SUMMARY_NOTEBOOK
    with run_lock.hold(results_root / "runs", what="the summary (tables, figures, results page) of"):
        execute(SUMMARY_NOTEBOOK, output, {"results_root": str(results_root)}, progress=progress,
                results_root=results_root)
    return output


def reproduce(profile_name: str, experiments: Sequence[str] | None = None, *, data_dir: str | None = None,
              results_root: str | Path | None = None, summary: bool = True, force: bool = False,
              progress: bool = True, executor: str = "local", ray: dict[str, Any] | None = None) -> dict[str, str]:
    """`executor` local: each notebook runs its experiment's runs; ray: the runs first go to a Ray cluster
    (`ray`: options of `study_dispatch.dispatch_study`), then the notebooks only read, render and plot."""
    profile = load_profile(profile_name)
    code_state()
    root = resolve_results_root(results_root)
    names = list(experiments or profile.experiments or EXPERIMENTS)
    for name in names:
        get_experiment(name)
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r}; expected one of {EXECUTORS}")
    if executor == "ray":
        from .study_dispatch import reproduce_on_ray

        for name in names if force else []:
            with run_lock.hold(experiment_dir(profile.name, name, root), what="experiment"):
                forget_runs(profile, name, root)
        statuses = reproduce_on_ray(profile, names, render=run_one_locked, log=log, data_dir=data_dir,
                                    results_root=root, progress=progress, options=ray or {})
    else:
        statuses = {name: run_one_locked(profile, name, data_dir=data_dir, results_root=root, force=force,
                                         progress=progress) for name in names}
    if summary:
        build_summary(root, progress=progress)
    return statuses


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m saie_lib.reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", required=True, help="configs/profiles/<name>.yaml, e.g. cpu-small")
    parser.add_argument("--experiments", default=None,
                        help=f"comma-separated subset of {','.join(EXPERIMENTS)} (default: the profile's "
                             "`experiments`, else all, in that order)")
    parser.add_argument("--data-dir", default=None,
                        help="original data files (default: env SAIE_DATA_DIR, else the Hub)")
    parser.add_argument("--results-root", default=None, help="default: env SAIE_RESULTS_DIR, else <repo>/results")
    parser.add_argument("--no-summary", action="store_true", help="skip notebooks/90_figures_tables")
    parser.add_argument("--force", action="store_true",
                        help="remove each experiment's runs first and compute them again")
    from .study_dispatch import add_executor_arguments, ray_arguments

    add_executor_arguments(parser, EXECUTORS)
    args = parser.parse_args(argv)
    names = args.experiments.split(",") if args.experiments else None
    root, profile = resolve_results_root(args.results_root), load_profile(args.profile)
    folders = [experiment_dir(profile.name, name, root) for name in names or profile.experiments or EXPERIMENTS]
    before = {} if args.force else {d: t for folder in folders for d, t in finished_runs(folder).items()}
    if allocator() == "glibc":
        print("note: running on glibc's malloc; CPU training peaks at about twice its live memory. With tcmalloc "
              "installed (apt install libtcmalloc-minimal4, or conda's gperftools) `make reproduce` preloads it.",
              file=sys.stderr)
    try:
        statuses = reproduce(args.profile, names, data_dir=args.data_dir, results_root=args.results_root,
                             summary=not args.no_summary, force=args.force, executor=args.executor,
                             ray=ray_arguments(args))
    except RunWriteError as error:  # the message names the path, what to change, and that the run resumes
        print(f"error: {error}", file=sys.stderr)
        return 1
    except NotebookFailed as failure:
        print(f"error: {failure}\nRerunning resumes: finished runs are kept and an interrupted one continues "
              "from its last checkpoint.", file=sys.stderr)
        return 1
    for name, status in statuses.items():
        print(f"{name}: {status}")
    report = build_report(root, before, folders, reference=committed_results_dir())
    print(activity_line(report, RECOMPUTE_HINT.format(profile=profile.name)))
    compared = comparison_line(report)
    if compared:
        print(compared)
    return 1 if "incomplete" in statuses.values() else 0


if __name__ == "__main__":
    sys.exit(main())
