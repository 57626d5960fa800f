"""Benchmark: the memory allocator under a training step on CPU. One LoRA step (forward and backward on the target
tokens, `Learner.target_loss`) of SmolLM2-135M at the shape of cpu-small's heaviest step (GSM8K, mixed target: 8 rows
left-padded to `--tokens`, `--target` target tokens each), with gradient checkpointing off and on, under each
allocator installed here (glibc's malloc, and tcmalloc / jemalloc preloaded). Each case runs in its own process,
so its peak RSS is its own. Writes results/bench/allocators-<model>.json and .png.

    .venv/bin/python bench/bench_allocators.py --model smollm2-135m-instruct

The allocator changes where freed memory goes, never a computed number: the record checks that every case gives
the same loss and gradient norm.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench_plots import bar_panels, save

from saie_lib import artifacts
from saie_lib.paths import results_dir

LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")
PRELOADS = {"tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"), "jemalloc": ("libjemalloc.so.2",)}


def installed_allocators() -> dict[str, str | None]:
    """glibc (nothing to preload) and each allocator found in the usual library folders or $CONDA_PREFIX/lib."""
    folders = [*LIBRARY_DIRS, *([f"{os.environ['CONDA_PREFIX']}/lib"] if os.environ.get("CONDA_PREFIX") else [])]
    found: dict[str, str | None] = {"glibc": None}
    for name, files in PRELOADS.items():
        paths = [Path(folder) / file for folder in folders for file in files]
        hit = next((p for p in paths if p.is_file()), None)
        if hit:
            found[name] = str(hit)
    return found


def child(args: argparse.Namespace) -> None:
    """One case in this process: the step `--repeats` times; prints its JSON record."""
    import torch

    from saie_lib.learner import Learner, LoraSettings
    from saie_lib.resources import allocator
    from saie_lib.training import IGNORE_INDEX

    torch.manual_seed(0)
    learner = Learner.create(args.model, LoraSettings(), device="cpu", dtype="float32",
                             gradient_checkpointing=args.checkpointing)
    generator = torch.Generator().manual_seed(0)
    target = args.target
    rows = [torch.randint(100, 40000, (args.tokens,), generator=generator).tolist() for _ in range(args.rows)]
    features = [{"input_ids": row, "labels": [IGNORE_INDEX] * (len(row) - target) + row[-target:]} for row in rows]
    learner.for_training()
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        loss = learner.target_loss(features)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(learner.trainable_parameters(), float("inf"))
        learner.model.zero_grad(set_to_none=True)
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"allocator": allocator(), "checkpointing": args.checkpointing, "step_s": min(seconds),
                      "all_s": seconds, "loss": float(loss), "grad_norm": float(norm),
                      "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                      "load_average": os.getloadavg()}))


def run_case(args: argparse.Namespace, preload: str | None, checkpointing: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    if preload:
        env["LD_PRELOAD"] = preload
    command = [sys.executable, __file__, "--child", "--model", args.model, "--rows", str(args.rows),
               "--tokens", str(args.tokens), "--target", str(args.target), "--repeats", str(args.repeats),
               "--checkpointing", checkpointing]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def plot(record: dict, path: Path) -> None:
    cases = record["cases"]
    labels = [f"{c['allocator']}\nckpt {c['checkpointing']}" for c in cases]
    panels = [([c["step_s"] for c in cases], "seconds", "step time"),
              ([c["peak_rss_gb"] for c in cases], "GB", "peak RSS of the step's process")]
    title = f"{record['model']}, one LoRA step on {record['shape']} tokens, {os.cpu_count()} CPU cores"
    fig, _ = bar_panels(labels, [f"C{i % 2}" for i in range(len(cases))], panels, title, width=11)
    save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-random-smollm2")
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--target", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--checkpointing", default="off")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--plot-only", action="store_true", help="redraw the figure from the existing record")
    args = parser.parse_args()
    if args.child:
        return child(args)
    record_path = results_dir() / "bench" / f"allocators-{artifacts.slug(args.model)}.json"
    if args.plot_only:
        return plot(artifacts.read_json(record_path), record_path.with_suffix(".png"))

    env, cases = artifacts.env_record(), []
    for name, preload in installed_allocators().items():
        for checkpointing in ("off", "on"):
            cases.append(run_case(args, preload, checkpointing))
            print(cases[-1], flush=True)
    losses = {(round(c["loss"], 6), round(c["grad_norm"], 6)) for c in cases}
    record = {"model": args.model, "shape": [args.rows, args.tokens], "target_tokens": args.target,
              "repeats": args.repeats, "cases": cases, "same_loss_and_grad_norm": len(losses) == 1, "env": env}
    artifacts.write_json(record_path, record)
    plot(record, record_path.with_suffix(".png"))


if __name__ == "__main__":
    main()
