"""Finished means consistent: each row of a run's logs once, in the order it was written.

Two processes writing one run (as two `make reproduce` started at once did before run dirs had a lock) leave
duplicated, interleaved rows in train_log.jsonl and transcripts.jsonl, and metrics counted over both. Every
row of a JSONL file in a run dir is identified by the fields below; a key seen twice, or a training step or
batch that goes backwards, is a finding (file, row, what). A stage refuses to mark such a run finished
(`check_consistent`), and `python -m saie_lib.record_audit --check` reports the run dirs holding one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .artifacts import RUN_FILES, is_finished

# file name -> (fields naming one row, fields that never go backwards, whether the first of those strictly grows)
LOG_RULES = {
    RUN_FILES["train_log"]: (("phase", "batch", "round"), ("step",), True),
    RUN_FILES["transcripts"]: (("batch", "round", "id"), ("batch", "round"), False),
}
SAMPLE_KEY = ("setting", "task", "id", "agent", "round")  # samples*.jsonl: one row per example (per agent, round)


@dataclass(frozen=True)
class Finding:
    file: Path
    row: int  # line number, from 1
    problem: str

    def __str__(self) -> str:
        return f"{self.file}:{self.row}: {self.problem}"


class InconsistentRunError(RuntimeError):
    """A run whose logs hold a row twice or out of order: never marked finished."""


def _rules(name: str) -> tuple[tuple[str, ...], tuple[str, ...], bool] | None:
    if name in LOG_RULES:
        return LOG_RULES[name]
    if name.startswith("samples") and name.endswith(".jsonl"):
        return SAMPLE_KEY, (), False
    return None


def _rows(path: Path, torn_tail_allowed: bool) -> Iterator[tuple[int, Any]]:
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if torn_tail_allowed and not text.endswith("\n"):
        lines = lines[:-1]
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                yield number, error


def file_findings(path: Path, *, torn_tail_allowed: bool = False) -> list[Finding]:
    """Rows of one run file that are not valid JSON, repeat an earlier row's key, or go backwards."""
    rules = _rules(path.name)
    if rules is None:
        return []
    key_fields, order_fields, strictly = rules
    first_at: dict[tuple, int] = {}
    previous: tuple | None = None
    found = []
    for number, row in _rows(path, torn_tail_allowed):
        if not isinstance(row, dict):
            found.append(Finding(path, number, f"not a JSON object ({getattr(row, 'msg', type(row).__name__)})"))
            continue
        key = tuple(row.get(f) for f in key_fields)
        if key in first_at:
            found.append(Finding(path, number, f"repeats row {first_at[key]} ({_named(key_fields, key)})"))
        first_at.setdefault(key, number)
        order = tuple(row.get(f) for f in order_fields)
        if order_fields and previous is not None and None not in order + previous and \
                (order < previous or (strictly and order[0] == previous[0])):
            found.append(Finding(path, number, f"out of order: {_named(order_fields, order)} after "
                                               f"{_named(order_fields, previous)}"))
        previous = order
    return found


def _named(fields: tuple[str, ...], values: tuple) -> str:
    return ", ".join(f"{f} {v}" for f, v in zip(fields, values) if v is not None)


def run_findings(run_dir: str | Path) -> list[Finding]:
    """Every finding in a run dir's logs and samples (an unfinished run's may end in one torn line)."""
    run_dir = Path(run_dir)
    torn = not is_finished(run_dir)
    return [f for path in sorted(run_dir.glob("*.jsonl")) for f in file_findings(path, torn_tail_allowed=torn)]


def check_consistent(run_dir: str | Path) -> None:
    """Before a run is marked finished: raise InconsistentRunError naming the first rows found."""
    found = run_findings(run_dir)
    if found:
        shown = "; ".join(str(f) for f in found[:3]) + (f"; and {len(found) - 3} more" if len(found) > 3 else "")
        raise InconsistentRunError(f"{run_dir} holds rows twice or out of order ({shown}): two processes wrote "
                                   "it at once, or a file was edited. The run stays unfinished: remove its run dir "
                                   "and run again")


def run_dirs(root: str | Path) -> Iterator[Path]:
    """Every run dir (a folder holding config.json) under `root`, skipping adapters and checkpoints."""
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if d not in (RUN_FILES["adapter"], RUN_FILES["checkpoints"],
                                                                   RUN_FILES["merged"]))
        if RUN_FILES["config"] in files:
            yield Path(folder)


def tree_findings(root: str | Path) -> list[Finding]:
    """Every finding in every run dir under `root`, with files named relative to it."""
    root = Path(root)
    return [Finding(f.file.relative_to(root), f.row, f.problem) for d in run_dirs(root) for f in run_findings(d)]
