"""Executing a notebook in batch (papermill): parameters checked against the notebook's own parameters cell,
cell output streamed to this terminal as it comes, and the executed copy made portable (no machine paths,
no frozen progress widgets) before it is kept beside the runs it made."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .paths import repo_root
from .portable import root_labels
from .record_audit import rewrite_file


def notebook_path(notebook: str) -> Path:
    return repo_root() / "notebooks" / notebook


def check_parameters(notebook: str, parameters: dict[str, Any]) -> None:
    """A misspelt parameter would be injected beside the real one and silently ignored: refuse it."""
    import papermill

    known = papermill.inspect_notebook(str(notebook_path(notebook)))
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ValueError(f"notebooks/{notebook}: unknown parameter(s) {unknown}; its parameters are "
                         f"{sorted(known)}")


def execute(notebook: str, output: Path, parameters: dict[str, Any], *, progress: bool = True,
            results_root: str | Path | None = None, data_dir: str | Path | None = None) -> Path:
    """Run notebooks/<notebook> with `parameters` into `output`; raises papermill's error on a failed cell
    (the executed copy, with the error, is still written)."""
    try:
        import papermill
    except ImportError as error:
        raise ImportError("batch runs execute notebooks with papermill: pip install -e '.[notebook]'") from error
    check_parameters(notebook, parameters)
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(str(notebook_path(notebook)), str(output), parameters=parameters,
                                   cwd=str(notebook_path(notebook).parent), progress_bar=progress,
                                   kernel_name="python3", stdout_file=sys.stdout if progress else None,
                                   stderr_file=sys.stderr if progress else None)
    finally:
        if output.is_file():
            roots = root_labels(results_root=results_root, data_dir=data_dir)
            rewrite_file(output, roots, widgets=True)
    return output


SNAPSHOT_NAME = "DEFINED_BEFORE_PARAMETERS"
_KERNEL_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "open", SNAPSHOT_NAME})


def refuse_unknown_parameters(namespace: dict[str, Any], before: set[str], known: tuple[str, ...]) -> None:
    """Inside a notebook, right after its parameters: a name that appeared since the imports and is not one of
    the notebook's parameters was injected by papermill under a misspelt name (`-p proflie ...`), which papermill
    itself only warns about. Refuse it, listing the known parameters."""
    new = {name for name in namespace if name not in before and not name.startswith("_")}
    unknown = sorted(new - set(known) - _KERNEL_NAMES)
    if unknown:
        raise ValueError(f"unknown notebook parameter(s) {unknown}; this notebook's parameters are {sorted(known)}")
