"""What a notebook shows its reader, compact: a config as the fields that differ from the defaults (the full one
is the run dir's config.json), and tables with the columns a reader compares (the full tables are the CSV and
Markdown files in results/tables)."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any, Sequence

from .reporting import to_markdown

# columns a reader compares, in this order; the interval is shown as one column
COMPACT_COLUMNS = ("task", "remark", "condition", "setting", "n", "accuracy", "95% CI", "invalid_rate",
                   "accuracy_strict", "rougeL", "stance_fidelity", "kept_correct", "kept_of",
                   "kept_correct_per_seed", "switched_to_challenger", "fixed", "invalid")
FINDING_COLUMNS = ("task", "setting", "remark", "seed", "measure", "a", "b", "n", "accuracy_a", "accuracy_b", "share_a",
                   "share_b", "a_only", "b_only", "p_holm", "verdict")
ALWAYS = ("study", "task", "model")


def config_summary(cfg: Any) -> str:
    """One Markdown line: the config's study, task and model, then every field set away from its default."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    shown = {name: getattr(cfg, name) for name in ALWAYS if name in fields}
    shown.update({name: value for name, value in dataclasses.asdict(cfg).items()
                  if name not in shown and value != _default(fields[name]) and name != "results_root"})
    return (f"**{type(cfg).__name__}** ({len(fields)} fields; the full config is each run dir's `config.json`): "
            + " · ".join(f"`{name}` {_plain(value)}" for name, value in shown.items()))


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return object()


def _plain(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def compact_table(csv_path: str | Path, columns: Sequence[str] = COMPACT_COLUMNS) -> str:
    """A results table (its CSV file) with the compared columns only: the interval in one column, columns empty
    in every row and a column with one value in every row (named above the table instead) left out."""
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = [_with_interval(r) for r in csv.DictReader(handle)]
    kept = [c for c in columns if any(r.get(c) for r in rows)]
    constant = [c for c in kept if c in ("task", "remark") and len({r[c] for r in rows}) == 1 and len(rows) > 1]
    heading = " · ".join(f"{c}: {rows[0][c]}" for c in constant)
    table = to_markdown(rows, [c for c in kept if c not in constant])
    return (f"*{heading}*\n\n" if heading else "") + table


def compact_findings(checked: Sequence[dict[str, Any]]) -> str:
    """The paired tests with the columns a reader compares (claim texts are in the statements above them)."""
    return to_markdown(list(checked), [c for c in FINDING_COLUMNS if any(c in f for f in checked)])


def _with_interval(row: dict[str, str]) -> dict[str, str]:
    if row.get("ci95_low") and row.get("ci95_high"):
        return {**row, "95% CI": f"[{float(row['ci95_low']):.2f}, {float(row['ci95_high']):.2f}]"}
    return row
