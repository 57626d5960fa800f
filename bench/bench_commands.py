"""Time the README's commands as a new user runs them, and record what they printed:

    python bench/bench_commands.py [--install] [--venv .venv] [--out results/bench/commands.json]
    python bench/bench_commands.py --test --out results/bench/make-test.json

- `make demo` into a fresh results root (every run computed), then again into the same root (every run reused);
  with --reuse-only, `make demo` into a copy of the committed results (every run reused);
- `make reproduce PROFILE=cpu-quick` into a copy of the committed results (every experiment finished: reused);
- with --install, `make install` into a fresh virtualenv in a copy of the tracked files (the lock, torch's CPU
  build, the embedded model), and the disk it takes;
- with --test, `make test` alone in a copy of the tracked files (what CI runs), into a record of its own.

Each command runs with the given environment's Python and without reinstalling it (make -o <stamp>), so the
times are the commands' own. The machine's load average at start and end is recorded beside each time: on a
shared machine a time is only as good as that load. Writes one JSON record (no absolute paths).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from saie_lib.artifacts import git_state  # noqa: E402
from saie_lib.paths import cache_dir  # noqa: E402


def timed(command: list[str], *, cwd: Path, env: dict[str, str]) -> dict:
    load_start = os.getloadavg()
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    printed = [line for line in done.stdout.splitlines() if line.strip()]
    return {"seconds": round(seconds, 1), "exit_code": done.returncode, "last_lines": printed[-3:],
            "stderr_tail": done.stderr.splitlines()[-3:] if done.returncode else [],
            "load_average_start": [round(x, 2) for x in load_start],
            "load_average_end": [round(x, 2) for x in os.getloadavg()]}


def size_gb(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 1e9, 2)


def make(target: str, venv: Path, *variables: str) -> list[str]:
    return ["make", target, f"VENV={venv}", "-o", f"{venv}/.installed", *variables]


def bench_demo_and_reproduce(venv: Path, env: dict[str, str], scratch: Path, *, compute: bool) -> dict:
    copy = scratch / "results-copy"
    shutil.copytree(REPO / "results", copy)
    results: dict = {}
    if compute:
        demo_root = scratch / "demo"
        results["make demo (fresh results root: computes)"] = timed(
            make("demo", venv, f"RESULTS_ROOT={demo_root}"), cwd=REPO, env=env)
        results["make demo (same root again: reuses)"] = timed(
            make("demo", venv, f"RESULTS_ROOT={demo_root}"), cwd=REPO, env=env)
    else:  # the committed baseline runs are finished: the demo reuses them
        results["make demo (committed runs: reuses)"] = timed(make("demo", venv, f"RESULTS_ROOT={copy}"),
                                                             cwd=REPO, env=env)
    results["make reproduce PROFILE=cpu-quick (committed runs: reuses)"] = timed(
        make("reproduce", venv, "PROFILE=cpu-quick", f"RESULTS_ROOT={copy}"), cwd=REPO, env=env)
    return results


def tracked_copy(scratch: Path) -> Path:
    """A copy of the tracked files (what a clean clone holds) under scratch/checkout."""
    tree = scratch / "checkout"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in filter(None, files.split("\0")):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, tree / name)
    return tree


def bench_test(venv: Path, env: dict[str, str], scratch: Path) -> dict:
    """`make test` in a copy of the tracked files, with the given environment (its kernels import the copy)."""
    tree = tracked_copy(scratch)
    return {"make test (copy of the tracked files)": timed(make("test", venv), cwd=tree,
                                                           env={**env, "PYTHONPATH": str(tree)})}


def bench_install(scratch: Path, env: dict[str, str]) -> dict:
    tree = tracked_copy(scratch)
    record = timed(["make", "install", "VENV=.venv"], cwd=tree, env={k: v for k, v in env.items()
                                                                      if k not in ("CONDA_PREFIX", "PYTHONPATH")})
    record["venv_gb"] = size_gb(tree / ".venv")
    return {"make install (fresh .venv)": record}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", default=str(REPO / ".venv"), help="an installed environment (not rebuilt)")
    parser.add_argument("--install", action="store_true", help="also time `make install` into a fresh venv")
    parser.add_argument("--reuse-only", action="store_true",
                        help="time the commands on a copy of the committed runs only (no demo computing: on a "
                             "busy machine its time says little; the committed runs record their eval_seconds)")
    parser.add_argument("--test", action="store_true",
                        help="time `make test` only, in a copy of the tracked files (--out: a record of its own)")
    parser.add_argument("--out", default=str(REPO / "results" / "bench" / "commands.json"))
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # the kernels import this checkout's saie_lib
    code = git_state()  # the code that ran, read before anything runs
    with tempfile.TemporaryDirectory(prefix="saie-commands-") as scratch:
        if args.test:
            commands = bench_test(Path(args.venv).resolve(), env, Path(scratch))
        else:
            commands = bench_demo_and_reproduce(Path(args.venv).resolve(), env, Path(scratch),
                                                compute=not args.reuse_only)
        if args.install:
            commands.update(bench_install(Path(scratch), env))
    models = cache_dir() / "models"
    record = {"commands": commands, "cpu_count": os.cpu_count(), **code,
              "model_cache_gb": {p.name: size_gb(p) for p in sorted(models.iterdir())
                                 if p.name.startswith("smollm2-135m-instruct")} if models.is_dir() else {},
              "note": "times include papermill and the kernel start; the load average shows what else ran"}
    text = portable(json.dumps(record, indent=1, sort_keys=True), scratch)
    Path(args.out).write_text(text + "\n")
    print(text)
    return 0


def portable(text: str, scratch: str) -> str:
    """The record without this machine's paths: the scratch folder and the checkout become placeholders."""
    return text.replace(scratch, "<scratch>").replace(str(REPO), "<checkout>")


if __name__ == "__main__":
    sys.exit(main())
