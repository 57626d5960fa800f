"""What a batch command (`make demo`, `make reproduce`) did, in one line each: which runs it computed and which it
found finished and reused, and whether the runs it produced give the same model outputs as the committed ones.

A run counts as computed when its metrics.json appeared or changed during the command. Two runs are the same
when every samples*.jsonl row (model output, parsed answer, gold, correctness, ...) is identical; a row whose
model outputs are identical but whose parse differs is counted apart (a newer parser, not a different model).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .artifacts import read_jsonl, run_file
from .paths import repo_root

PARTIAL_SUFFIX = ".partial.jsonl"


def finished_runs(folder: Path) -> dict[Path, float]:
    """run dir -> mtime of its metrics.json, for every finished run under `folder`."""
    if not folder.is_dir():
        return {}
    return {p.parent: p.stat().st_mtime_ns for p in folder.rglob(run_file(".", "metrics").name)}


def computed_and_reused(before: dict[Path, float], after: dict[Path, float]) -> tuple[list[Path], list[Path]]:
    computed = sorted(d for d, mtime in after.items() if before.get(d) != mtime)
    reused = sorted(d for d in after if d in before and before[d] == after[d])
    return computed, reused


def _sample_files(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.glob("samples*.jsonl") if not p.name.endswith(PARTIAL_SUFFIX))


def _outputs(value: Any) -> list[str]:
    """Every model output in a samples row (robustness rows nest them per turn)."""
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in
                ([item] if key == "output" and isinstance(item, str) else _outputs(item))]
    if isinstance(value, list):
        return [text for item in value for text in _outputs(item)]
    return []


@dataclass
class RunComparison:
    run: Path
    rows: int = 0
    outputs_differ: int = 0
    parses_differ: int = 0
    missing: str | None = None  # why there is nothing to compare with

    @property
    def same(self) -> bool:
        return self.missing is None and not self.outputs_differ and not self.parses_differ


def compare_run(run_dir: Path, reference: Path) -> RunComparison:
    found = RunComparison(run_dir)
    if not run_file(reference, "metrics").is_file():
        found.missing = "no finished run of that name in the reference"
        return found
    for path in _sample_files(run_dir):
        other = reference / path.name
        if not other.is_file():
            found.missing = f"the reference has no {path.name}"
            return found
        new, old = read_jsonl(path), read_jsonl(other)
        if len(new) != len(old):
            found.missing = f"{path.name} has {len(new)} rows, the reference {len(old)}"
            return found
        found.rows += len(new)
        found.outputs_differ += sum(_outputs(a) != _outputs(b) for a, b in zip(new, old))
        found.parses_differ += sum(a != b and _outputs(a) == _outputs(b) for a, b in zip(new, old))
    return found


@dataclass
class Report:
    root: Path
    computed: list[Path] = field(default_factory=list)
    reused: list[Path] = field(default_factory=list)
    compared: list[RunComparison] = field(default_factory=list)
    reference: Path | None = None


def shown(path: Path) -> str:
    """A path as the user would type it: relative to the checkout where it lies inside it."""
    try:
        return str(Path(os.path.relpath(path, repo_root()))) if path.is_relative_to(repo_root()) else str(path)
    except ValueError:
        return str(path)


def activity_line(report: Report, recompute_hint: str) -> str:
    """One line: what was computed, what was reused, and how to recompute when nothing was."""
    where = shown(report.root)
    if report.computed and not report.reused:
        return f"computed {len(report.computed)} run(s) into {where}/runs"
    if report.computed:
        return (f"computed {len(report.computed)} run(s) and reused {len(report.reused)} finished run(s) in "
                f"{where}/runs")
    if report.reused:
        return (f"reused {len(report.reused)} finished run(s) in {where}/runs: nothing was recomputed; "
                f"to recompute: {recompute_hint}")
    return f"no run finished under {where}/runs"


def comparison_line(report: Report) -> str | None:
    """One line: the produced runs against the same-named runs of the reference root (the committed results)."""
    if report.reference is None or not report.compared:
        return None
    reference = shown(report.reference)
    missing = [c for c in report.compared if c.missing]
    differ = [c for c in report.compared if not c.same and not c.missing]
    same = [c for c in report.compared if c.same]
    rows = sum(c.rows for c in same)
    if len(missing) == len(report.compared):
        return f"nothing to compare: {reference} holds none of these runs"
    if not differ and not missing:
        return f"same as {reference}: {len(same)} of {len(same)} run(s), every one of {rows} samples identical"
    parts = [f"{len(same)} run(s) identical"] if same else []
    for c in differ:
        what = f"{c.outputs_differ} of {c.rows} model outputs differ" if c.outputs_differ else \
            f"same outputs, {c.parses_differ} of {c.rows} parsed answers differ"
        parts.append(f"{c.run.name}: {what}")
    if missing:
        parts.append(f"{len(missing)} run(s) not in {reference} ({missing[0].missing})")
    return f"differs from {reference}: " + "; ".join(parts)


def build_report(root: Path, before: dict[Path, float], folders: Iterable[Path], *,
                 reference: Path | None) -> Report:
    """Compare runs under `folders` (inside `root`) after a command with the snapshot taken before it."""
    after: dict[Path, float] = {}
    for folder in folders:
        after.update(finished_runs(folder))
    computed, reused = computed_and_reused(before, after)
    report = Report(root=root, computed=computed, reused=reused)
    if reference is not None and reference.resolve() != root.resolve():
        report.reference = reference
        report.compared = [compare_run(d, reference / d.relative_to(root)) for d in sorted(after)]
    return report


def remove_runs(folder: Path) -> list[Path]:
    """`--force`: delete every run dir under `folder` (a dir holding config.json) and its experiment.json, so the
    next command computes them again. Returns what it removed."""
    import shutil

    from .artifacts import EXPERIMENT_MARKER

    runs = sorted(p.parent for p in folder.glob(f"*/{run_file('.', 'config').name}")) if folder.is_dir() else []
    for run in runs:
        shutil.rmtree(run)
    (folder / EXPERIMENT_MARKER).unlink(missing_ok=True)
    return runs
