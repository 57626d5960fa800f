"""Benchmark: evaluation batch size on CPU, in float32 and in the CPU's native bfloat16. The untrained model of a
profile (default cpu-quick) evaluates its evaluation examples of each task at each batch size, each into its
own temporary results folder; the record keeps wall time, accuracy, and how many answers come out word for word
the same as at the first batch size. Writes results/bench/eval-batch-<profile>.json and .png.

    SAIE_DATA_DIR=... .venv/bin/python bench/bench_eval_batch.py --profile cpu-quick

Greedy answers should not depend on the batch a row shares: left padding is masked. They do by float rounding
(the padded shapes change the matrix products' summation order), and the record measures how far, per dtype.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from bench_plots import bar_panels, save

from saie_lib import artifacts
from saie_lib.experiment_registry import training_experiment_for
from saie_lib.experiments import condition_configs
from saie_lib.paths import results_dir
from saie_lib.profiles import load_profile
from saie_lib.stages.evaluate import run_evaluation


def evaluate(cfg, batch_size: int, dtype: str) -> dict:
    """One base-model evaluation in a fresh results folder: seconds, accuracy and each example's output."""
    with tempfile.TemporaryDirectory() as root:
        case = dataclasses.replace(cfg, batch_size=batch_size, dtype=dtype, results_root=root)
        started = time.perf_counter()
        run = run_evaluation(case, progress=False)
        seconds = time.perf_counter() - started
        metrics = artifacts.read_json(artifacts.run_file(run, "metrics"))
        outputs = {row["id"]: row["output"] for row in artifacts.read_jsonl(artifacts.run_file(run, "samples"))}
        dtype_used = artifacts.read_json(artifacts.run_file(run, "env"))["model"]["dtype"]
    return {"task": cfg.task, "dtype": dtype, "dtype_used": dtype_used, "batch_size": batch_size,
            "seconds": seconds, "accuracy": metrics["accuracy"], "n": len(outputs), "outputs": outputs}


def same_share(case: dict, reference: dict) -> float:
    return sum(case["outputs"][i] == out for i, out in reference["outputs"].items()) / len(reference["outputs"])


def plot(record: dict, path: Path) -> None:
    cases = record["cases"]
    labels = [f"{c['task']}\n{c['dtype_used']} b{c['batch_size']}" for c in cases]
    colors = [f"C{i % len(record['batch_sizes'])}" for i in range(len(cases))]
    panels = [([c["seconds"] for c in cases], "seconds", "evaluation wall time"),
              ([c["same_as_first_batch_size"] for c in cases], "share", "answers identical to the first batch size")]
    fig, _ = bar_panels(labels, colors, panels, label_size=7, width=12,
                        title=f"{record['profile']}: untrained model, {cases[0]['n']} examples per task")
    save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu-quick")
    parser.add_argument("--tasks", default="gsm8k,commonsense_qa")
    parser.add_argument("--batch-sizes", default="8,32")
    parser.add_argument("--dtypes", default="float32,native")
    args = parser.parse_args()
    profile = load_profile(args.profile)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    cases = []
    for task in args.tasks.split(","):
        cfg = condition_configs(profile, training_experiment_for(task))["base"]
        for dtype in args.dtypes.split(","):
            runs = [evaluate(cfg, size, dtype) for size in sizes]
            for run in runs:
                run["same_as_first_batch_size"] = same_share(run, runs[0])
                print({k: v for k, v in run.items() if k != "outputs"}, flush=True)
            cases += runs
    record = {"profile": profile.name, "batch_sizes": sizes, "cases": cases, "env": artifacts.env_record()}
    path = results_dir() / "bench" / f"eval-batch-{profile.name}.json"
    artifacts.write_json(path, record)
    plot(record, path.with_suffix(".png"))


if __name__ == "__main__":
    main()
