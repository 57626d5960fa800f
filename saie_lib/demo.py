"""`make demo`: the baseline notebook (01) under a study file, executed like the reproduction's notebooks.

    python -m saie_lib.demo --study configs/studies/baseline_demo.yaml

The study file's keys are notebook 01's parameters; the executed copy lands in results/runs/<study>/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from .notebook_runner import execute
from .paths import results_root as resolve_results_root
from .yaml_files import read_yaml_mapping

NOTEBOOK = "01_baseline_eval.ipynb"


def run_demo(study_file: str | Path, *, results_root: str | Path | None = None, progress: bool = True) -> Path:
    parameters = read_yaml_mapping(Path(study_file))
    root = resolve_results_root(results_root)
    if results_root:
        parameters["results_root"] = str(root)
    output = root / "runs" / str(parameters.get("study", "baseline")) / NOTEBOOK
    return execute(NOTEBOOK, output, parameters, progress=progress, results_root=root,
                   data_dir=parameters.get("data_dir"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m saie_lib.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="configs/studies/baseline_demo.yaml", help="a study YAML file")
    parser.add_argument("--results-root", default=None, help="default: env SAIE_RESULTS_DIR, else <repo>/results")
    args = parser.parse_args(argv)
    print(run_demo(args.study, results_root=args.results_root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
