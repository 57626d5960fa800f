"""`make demo`: the baseline notebook (01) under a study file, executed like the reproduction's notebooks.

    python -m saie_lib.demo --study configs/studies/baseline_demo.yaml [--results-root DIR] [--force]

The study file's keys are notebook 01's parameters; the executed copy lands in <results root>/runs/<study>/.
Finished runs there are reused (`--force` computes them again). Afterwards it prints, one line each, what it
computed or reused, and whether its runs' samples are the same as the committed ones in results/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from .kernel_io import NotebookFailed
from .notebook_runner import execute
from .paths import committed_results_dir
from .paths import results_root as resolve_results_root
from .run_report import activity_line, build_report, comparison_line, finished_runs, remove_runs, shown
from .yaml_files import read_yaml_mapping

NOTEBOOK = "01_baseline_eval.ipynb"
RECOMPUTE_HINT = "make demo FORCE=1 (python -m saie_lib.demo --force)"


def run_demo(study_file: str | Path, *, results_root: str | Path | None = None, progress: bool = True,
             force: bool = False) -> Path:
    parameters = read_yaml_mapping(Path(study_file))
    root = resolve_results_root(results_root)
    if results_root:
        parameters["results_root"] = str(root)
    folder = root / "runs" / str(parameters.get("study", "baseline"))
    if force:
        removed = remove_runs(folder)
        print(f"[demo] --force: removed {len(removed)} finished run(s) in {folder} to compute them again",
              file=sys.stderr)
    return execute(NOTEBOOK, folder / NOTEBOOK, parameters, progress=progress, results_root=root,
                   data_dir=parameters.get("data_dir"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m saie_lib.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="configs/studies/baseline_demo.yaml", help="a study YAML file")
    parser.add_argument("--results-root", default=None, help="default: env SAIE_RESULTS_DIR, else <repo>/results")
    parser.add_argument("--force", action="store_true", help="remove the study's runs first and compute them again")
    args = parser.parse_args(argv)
    root = resolve_results_root(args.results_root)
    folder = root / "runs" / str(read_yaml_mapping(Path(args.study)).get("study", "baseline"))
    before = finished_runs(folder)
    try:
        executed = run_demo(args.study, results_root=args.results_root, force=args.force)
    except NotebookFailed as failure:
        print(f"error: {failure}", file=sys.stderr)
        return 1
    report = build_report(root, {} if args.force else before, [folder], reference=committed_results_dir())
    print(f"executed notebook: {shown(executed)}")
    print(activity_line(report, RECOMPUTE_HINT))
    compared = comparison_line(report)
    if compared:
        print(compared)
    return 0


if __name__ == "__main__":
    sys.exit(main())
