"""The study serial vs on Ray workers on this machine (measured), and a profile's projected wall time on N GPUs.

    SAIE_DATA_DIR=../shared/data .venv/bin/python bench/bench_ray.py --profile tiny --workers 2 --out results/bench
    .venv/bin/python bench/bench_ray.py --plot results/bench/ray-tiny.json --out results/bench   # figure only

Measured: every run of the profile's study from nothing, serial (one process runs them one after another, as the
notebooks do) and on a Ray instance started here with N worker CPUs (`study_dispatch.dispatch_study`, as
`--executor ray` does before its notebooks), each in its own process with one thread per process
(OMP_NUM_THREADS=1, as Ray gives a one-CPU task), its own scratch results folder and remark cache (the built
models are shared): wall seconds (for Ray including its start), the dispatch's own wall seconds, and whether its
records equal the serial run's (`saie_lib.record_compare`). The notebooks, which read the same run dirs either
way, are not timed. Projected (`--project-profile`, default gpu-paper): every run of that profile's graph
given hours from the one measured basis this project has for a full-size run, `results/bench/gpu_check-*.json`
(a full GSM8K SAIE run on one H200 projected from its measured pieces), scaled by each run's example count; the
runs then list-scheduled on N GPUs (longest ready run first, inference and robustness runs after the training
runs they read). A projection, with its assumptions in the record: not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from saie_lib import artifacts
from saie_lib.challenge import REMARK_KINDS
from saie_lib.paths import cache_dir, repo_root
from saie_lib.record_compare import differences, record_files

GSM8K_TRAIN, GSM8K_TEST = 7473, 1319  # the examples the gpu_check projection is for


SERIAL = """
import sys
from saie_lib.experiments import EXPERIMENTS, run_experiment
from saie_lib.profiles import load_profile
profile = load_profile(sys.argv[1])
for name in profile.experiments or EXPERIMENTS:
    run_experiment(profile, name, progress=False, data_dir=sys.argv[2] or None, results_root=sys.argv[3])
"""
ON_RAY = """
import sys
from pathlib import Path
from saie_lib.experiments import EXPERIMENTS
from saie_lib.profiles import load_profile
from saie_lib.reproduce import log
from saie_lib.study_dispatch import dispatch_study
profile = load_profile(sys.argv[1])
names = list(profile.experiments or EXPERIMENTS)
done = dispatch_study(profile, names, data_dir=sys.argv[2] or None, results_root=Path(sys.argv[3]), log=log,
                      workers=int(sys.argv[4]), progress=False)
sys.exit(1 if done.outcome.missing else 0)
"""


def runs_once(profile: str, workers: int | None, scratch: Path, data_dir: str | None) -> dict:
    """The study's runs from nothing, in their own process, one thread per process: serial (workers None: one
    after another, as its notebooks run them) or on a Ray instance started here with `workers` CPUs."""
    results, cache = scratch / "results", scratch / "cache"
    cache.mkdir(parents=True)
    (cache / "models").symlink_to(cache_dir() / "models", target_is_directory=True)
    command = [sys.executable, "-c", ON_RAY if workers else SERIAL, profile, data_dir or "", str(results)]
    command += [str(workers)] if workers else []
    env = {**os.environ, "SAIE_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    load_start, started = os.getloadavg(), time.perf_counter()
    done = subprocess.run(command, cwd=repo_root(), env=env, capture_output=True, text=True)
    seconds = round(time.perf_counter() - started, 1)
    if done.returncode:
        raise RuntimeError(f"{'ray' if workers else 'serial'} runs failed:\n{done.stderr[-3000:]}")
    log = artifacts.read_jsonl(results / "runs" / profile / artifacts.REPRODUCE_LOG) if workers else []
    dispatch = [row["dispatch_wall_seconds"] for row in log if row.get("executor") == "ray"]
    return {"executor": "ray" if workers else "serial", "workers": workers or 1, "wall_seconds": seconds,
            "dispatch_wall_seconds": dispatch[0] if dispatch else None,
            "load_average": {"start": load_start, "end": os.getloadavg()}, "results": results}


def measure(profile: str, workers: list[int], data_dir: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as folder:
        modes = [runs_once(profile, None, Path(folder) / "serial", data_dir)]
        modes += [runs_once(profile, n, Path(folder) / f"ray-{n}", data_dir) for n in workers]
        roots = [mode.pop("results") for mode in modes]
        for mode, root in zip(modes, roots):
            mode["record_files"] = len(record_files(root))
            mode["differences_from_serial"] = [line.replace(str(roots[0]), "serial").replace(str(root), "this")
                                               for line in differences(roots[0], root)]
    return {"profile": profile, "what": "the study's runs only (no notebooks), one thread per process", "modes": modes}


def run_hours(profile_name: str, basis: dict, data_dir: str | None) -> tuple[dict[str, float], dict[str, list]]:
    """Hours per run of the profile's graph, from the basis run's per-example hours."""
    from saie_lib.data import load_task
    from saie_lib.experiments import EXPERIMENTS, condition_configs
    from saie_lib.profiles import load_profile
    from saie_lib.run_graph import study_graph
    from saie_lib.tasks import get_task

    profile = load_profile(profile_name)
    locations = {"data_dir": data_dir, "results_root": tempfile.mkdtemp(prefix="bench-ray-graph-")}
    nodes = study_graph(profile, **locations)
    train_h, eval_h = basis["train_hours"] / GSM8K_TRAIN, basis["eval_hours"] / GSM8K_TEST
    count = lambda task, split, limit, seed: len(load_task(task, split, data_dir=data_dir, limit=limit, seed=seed))
    hours = {}
    training = [n for n in nodes if EXPERIMENTS[n.experiment].is_training]
    for node in training:
        cfg = condition_configs(profile, EXPERIMENTS[node.experiment], **locations, seed=node.seed)["saie"]
        task = get_task(cfg.task)
        evaluated = count(cfg.task, task.eval_split, cfg.eval_limit, cfg.seed) * eval_h
        trained = 0.0 if node.condition == "base" else count(cfg.task, task.train_split, cfg.limit, cfg.seed) * train_h
        hours[node.label] = trained + evaluated
    inference = profile.inference_config()
    turns = {"individual": 1, "self_consistency": inference.agents, "self_discussion": 1 + inference.rounds,
             "multi_agent": inference.agents * (1 + inference.rounds), "partner_discussion": 1 + 2 * inference.rounds}
    examples = count(inference.task, get_task(inference.task).eval_split, inference.limit, inference.seed)
    challenge = profile.challenge_config()
    items = sum(count(t, get_task(t).eval_split, limit, challenge.seed) for t, limit in zip(challenge.tasks,
                                                                                           challenge.limits))
    for node in (n for n in nodes if n not in training):
        generations = (examples * sum(turns[s] for s in inference.settings) if node.experiment == "multiagent"
                       else items * (1 + len(REMARK_KINDS)))
        hours[node.label] = generations * eval_h
    return hours, {n.label: [*n.needs, *n.after] for n in nodes}  # a run starts after both


def schedule(hours: dict[str, float], needs: dict[str, list], gpus: int) -> float:
    """Wall hours of list scheduling on `gpus` GPUs: whenever one is free, the longest run whose needs are done."""
    free, done_at, clock, waiting = [0.0] * gpus, {}, 0.0, dict(hours)
    while waiting:
        clock = min(free)
        ready = [r for r in waiting if all(done_at.get(n, float("inf")) <= clock for n in needs[r])]
        if not ready:  # wait for the next run to finish
            free[free.index(clock)] = min(t for t in done_at.values() if t > clock)
            continue
        run = max(ready, key=lambda r: waiting[r])
        slot = free.index(clock)
        done_at[run] = free[slot] = clock + waiting.pop(run)
    return max(done_at.values())


def project(profile: str, gpu_record: Path, gpus: list[int], data_dir: str | None) -> dict:
    basis = artifacts.read_json(gpu_record)["projected_gsm8k_saie"]
    hours, needs = run_hours(profile, basis, data_dir)
    from saie_lib.profiles import load_profile

    return {"profile": profile, "stated_serial_estimate": load_profile(profile).expected_wall_time,
            "basis": {"record": str(gpu_record.relative_to(repo_root())), **basis},
            "assumptions": [
                "a training run costs the basis's hours per training example, whatever its condition (none and "
                "placebo ask no partner, so they cost less: an upper bound)",
                "every evaluated example, inference turn and challenge answer costs the basis's evaluation hours per "
                "GSM8K test example (answers of other tasks are shorter or longer)",
                "one run per GPU, no time to load models or start workers, the partner on the learner's GPU",
                "the basis itself is a projection from one H200 session's pieces (random-weight Qwen2.5-1.5B, batch "
                "8, 128 new tokens a turn)"],
            "runs": len(hours), "serial_hours": round(sum(hours.values()), 1),
            "wall_hours": {str(n): round(schedule(hours, needs, n), 1) for n in gpus},
            "critical_path_hours": round(schedule(hours, needs, len(hours)), 1),  # as many GPUs as runs
            "run_hours": {label: round(h, 2) for label, h in hours.items()}}


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from bench_plots import save

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    modes = record["measured"]["modes"]
    labels = ["serial" if m["executor"] == "serial" else f"ray, {m['workers']} workers" for m in modes]
    totals = [m["wall_seconds"] for m in modes]
    runs = [m["dispatch_wall_seconds"] or 0 for m in modes]
    left.bar(labels, totals, color="#c6d4e1", label="whole process (Ray: with its start)")
    left.bar(labels, runs, color="#4c72b0", label="the dispatch itself")
    for x, total in enumerate(totals):
        left.text(x, total, f"{total:.0f} s", ha="center", va="bottom", fontsize=8)
    measured_on = f"{record['cpu_count']} cores (measured)"  # the machine the record was made on
    left.set(ylabel="wall seconds", title=f"`{record['measured']['profile']}` study's runs, {measured_on}")
    left.set_ylim(0, max(totals) * 1.35)  # room above the bars for the legend
    left.legend(fontsize=7, loc="upper left")
    projection = record["projection"]
    gpus = sorted(projection["wall_hours"], key=int)  # a JSON record holds them sorted as text
    right.bar(gpus, [projection["wall_hours"][n] / 24 for n in gpus], color="#dd8452")
    right.set(xlabel="GPUs", ylabel="days", title=f"`{projection['profile']}` on N GPUs (PROJECTED, not measured)")
    save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny", help="the study measured serial vs on Ray")
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--project-profile", default="gpu-paper")
    parser.add_argument("--gpu-record", type=Path,
                        default=repo_root() / "results" / "bench" / "gpu_check-qwen2.5-1.5b-h200.json")
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--out", type=Path, default=repo_root() / "results" / "bench")
    parser.add_argument("--plot", type=Path, default=None, help="only redraw the figure of this record")
    args = parser.parse_args()
    if args.plot:
        record = artifacts.read_json(args.plot)
        plot(record, args.out / args.plot.with_suffix(".png").name)
        return
    data_dir = os.environ.get("SAIE_DATA_DIR")
    env = artifacts.env_record()  # before the work: the commit that ran it
    projection = project(args.project_profile, args.gpu_record, args.gpus, data_dir)  # seconds: first
    record = {"env": env, "cpu_count": os.cpu_count(),
              "measured": measure(args.profile, args.workers, data_dir), "projection": projection}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"ray-{args.profile}.json"
    artifacts.write_json(path, record)
    plot(record, path.with_suffix(".png"))
    print(json.dumps({f"{m['executor']}-{m['workers']}": m["wall_seconds"] for m in record["measured"]["modes"]}
                     | {"projected_wall_hours": record["projection"]["wall_hours"]}))


if __name__ == "__main__":
    main()
