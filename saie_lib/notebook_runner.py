"""Executing a notebook in batch (papermill): parameters checked against the notebook's own parameters cell,
cell output streamed to this terminal as it comes (library messages to a log file beside the executed copy), a
failure reported by its message first, and the executed copy made portable (no machine paths, no frozen
progress widgets, one line per progress bar) before it is kept beside the runs it made."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .kernel_io import (
    QUIET_KERNEL,
    LineKeeper,
    NotebookFailed,
    coalesce_streams,
    failure_message,
    ipc_kernels,
    kernel_environment,
)
from .notebook_log import LOG_ENV
from .paths import repo_root
from .portable import root_labels
from .progress import PROGRESS_ENV
from .record_audit import rewrite_file
from .run_report import shown


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
    """Run notebooks/<notebook> with `parameters` into `output`; raises `NotebookFailed` (its message: the
    failing cell's error, then where the full traceback is) on a failed cell, whose executed copy is still
    written. The libraries' warnings go to `output`.log (`saie_lib.notebook_log`); with `progress`, the cells'
    own output streams to this terminal, each stream starting on its own line."""
    try:
        import papermill
    except ImportError as error:
        raise ImportError("batch runs execute notebooks with papermill: pip install -e '.[notebook]'") from error
    check_parameters(notebook, parameters)
    output.parent.mkdir(parents=True, exist_ok=True)
    log = output.with_suffix(".log")
    if progress:
        print(f"[run] notebooks/{notebook} -> {shown(output)} (library messages: {shown(log)})", file=sys.stderr)
    lines = LineKeeper()
    try:
        # text progress lines (a widget would stay frozen at 0% in the executed copy), library messages to `log`
        batch_env = {LOG_ENV: str(log), PROGRESS_ENV: os.environ.get(PROGRESS_ENV) or "text"}
        with kernel_environment(batch_env), ipc_kernels() as manager:
            papermill.execute_notebook(
                str(notebook_path(notebook)), str(output), parameters=parameters,
                cwd=str(notebook_path(notebook).parent), progress_bar=False, kernel_name="python3",
                stdout_file=lines.stream(sys.stdout) if progress else None,
                stderr_file=lines.stream(sys.stderr) if progress else None,
                kernel_manager_class=manager, extra_arguments=[QUIET_KERNEL])
    except papermill.PapermillExecutionError as error:
        raise NotebookFailed(failure_message(error, output, log)) from None
    finally:
        lines.finish()
        if output.is_file():
            roots = root_labels(results_root=results_root, data_dir=data_dir)
            coalesce_streams(output)
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
