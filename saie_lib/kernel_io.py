"""The plumbing around a batch-executed notebook's kernel (saie_lib.notebook_runner): a kernel that talks over
local sockets (IPC: no "running over TCP without encryption" warning) and starts quiet (saie_lib.notebook_log),
streamed output that never shares a terminal line with another stream, an executed copy whose progress bars
are one line each, and a failure told by its message first."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, TextIO

# IPython's startup line in every batch kernel (IPKernelApp.exec_lines): the libraries' messages to the log file
QUIET_KERNEL = "--IPKernelApp.exec_lines=['from saie_lib.notebook_log import quiet_libraries; quiet_libraries()']"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class NotebookFailed(RuntimeError):
    """A cell of a batch-executed notebook raised; the message is its error, then where the traceback is."""


@contextlib.contextmanager
def kernel_environment(variables: dict[str, str]) -> Iterator[None]:
    """Environment variables the kernel (a child process) inherits, restored afterwards."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def ipc_kernels() -> Iterator[type]:
    """A KernelManager class whose kernels use IPC sockets in a private temporary folder."""
    from jupyter_client.manager import KernelManager

    folder = tempfile.mkdtemp(prefix="saie-kernel-")

    class IpcKernelManager(KernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(transport="ipc", ip=os.path.join(folder, "kernel"), **kwargs)

    try:
        yield IpcKernelManager
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class LineKeeper:
    """Two terminal streams (stdout, stderr) whose writes never continue a line the other one left open."""

    def __init__(self) -> None:
        self.open_on: TextIO | None = None  # the stream whose last write did not end a line

    def write(self, target: TextIO, text: str) -> None:
        if not text:
            return
        if self.open_on is not None and self.open_on is not target:
            self.open_on.write("\n")
            self.open_on.flush()
        target.write(text)
        target.flush()
        self.open_on = None if text.endswith("\n") else target

    def stream(self, target: TextIO) -> "_Stream":
        return _Stream(self, target)

    def finish(self) -> None:
        if self.open_on is not None:
            self.open_on.write("\n")
            self.open_on = None


class _Stream:
    def __init__(self, keeper: LineKeeper, target: TextIO) -> None:
        self.keeper, self.target = keeper, target

    def write(self, text: str) -> int:
        self.keeper.write(self.target, text)
        return len(text)

    def flush(self) -> None:
        self.target.flush()


def collapse_carriage_returns(text: str) -> str:
    """What a terminal shows: on each line, only the text after its last carriage return."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def coalesce_streams(path: Path) -> None:
    """Merge each cell's consecutive stream outputs of one name and keep what a terminal would show, so a
    progress bar updated in place is one line in the executed copy (renderers that do not apply carriage
    returns otherwise show every update)."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    for cell in notebook.get("cells", []):
        merged: list[dict[str, Any]] = []
        for output in cell.get("outputs", []):
            previous = merged[-1] if merged else None
            if (output.get("output_type") == "stream" and previous and previous.get("output_type") == "stream"
                    and previous.get("name") == output.get("name")):
                previous["text"] = _text(previous) + _text(output)
            else:
                merged.append(output)
        for output in merged:
            if output.get("output_type") == "stream":
                output["text"] = collapse_carriage_returns(_text(output)).splitlines(keepends=True)
        if "outputs" in cell:
            cell["outputs"] = merged
    path.write_text(json.dumps(notebook, sort_keys=True, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _text(output: dict[str, Any]) -> str:
    text = output.get("text", "")
    return "".join(text) if isinstance(text, list) else text


def failure_message(error: Any, output: Path, log: Path) -> str:
    """A failed cell in three lines: its error, the cell, where the full traceback and the log are."""
    from .run_report import shown

    value = ANSI.sub("", str(error.evalue)).strip()
    return (f"{error.ename}: {value}\n  in cell {error.exec_count} of {shown(output)}\n"
            f"  full traceback: that executed notebook; library messages: {shown(log)}")
