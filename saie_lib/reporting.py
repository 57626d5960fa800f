"""Tables built from run dirs only (one row per finished run, written as CSV and Markdown), and the sentences the
results page states about noise and power, computed from sample sizes and paired comparisons."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from .artifacts import atomic_write_text, read_json, read_jsonl, run_file
from .conditions import INFERENCE_SETTINGS
from .paths import repo_root, tables_dir
from .stats import (
    ALPHA,
    ASSUMED_DISCORDANCE,
    POWER,
    mcnemar_exact,
    min_detectable_difference,
    min_discordant,
    wilson_interval,
)

SUMMARY_COLUMNS = ("task", "split", "model", "condition", "model_source", "n", "accuracy", "ci95_low",
                   "ci95_high", "accuracy_strict", "invalid_rate", "invalid_rate_strict", "run")


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(repo_root()))
    except ValueError:
        return str(path)


def summary_row(run_dir: str | Path) -> dict[str, Any]:
    metrics = read_json(run_file(run_dir, "metrics"))
    low, high = metrics["ci95"]
    return {
        "task": metrics["task"], "split": metrics["split"], "model": metrics["model"],
        "condition": metrics.get("condition", metrics.get("remark_policy", "base")),
        "model_source": metrics["model_source"], "n": metrics["n"], "accuracy": metrics["accuracy"],
        "ci95_low": low, "ci95_high": high, "accuracy_strict": metrics["accuracy_strict"],
        "invalid_rate": metrics["invalid_rate"], "invalid_rate_strict": metrics["invalid_rate_strict"],
        "run": _display_path(Path(run_dir)),
    }


def summary_rows(run_dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    return [summary_row(d) for d in run_dirs]


def pooled_summary_row(run_dirs: Sequence[str | Path]) -> dict[str, Any]:
    """One condition's row over several seeds' runs (each on its own examples): accuracies and invalid rates over
    all their examples together, the Wilson interval of that pooled count, `seeds` and `per_seed` accuracies.
    The `run` shown is the first seed's. With one run it is that run's `summary_row`."""
    rows = [summary_row(d) for d in run_dirs]
    if not rows:
        raise ValueError("a pooled row needs at least one run")
    n = sum(r["n"] for r in rows)
    pooled = {key: sum(r[key] * r["n"] for r in rows) / n if n else 0.0
              for key in ("accuracy", "accuracy_strict", "invalid_rate", "invalid_rate_strict")}
    low, high = wilson_interval(round(pooled["accuracy"] * n), n)
    extra = f" (+{len(rows) - 1} more seeds)" if len(rows) > 1 else ""
    return {**rows[0], **pooled, "n": n, "ci95_low": low, "ci95_high": high, "seeds": len(rows),
            "per_seed": " / ".join(f"{r['accuracy']:.3f}" for r in rows), "run": rows[0]["run"] + extra}


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "" if value is None else str(value)


def _cell(value: Any, width: int = 240) -> str:
    """A Markdown table cell: one line, pipes escaped, long text shortened."""
    text = _fmt(value).replace("\n", " ⏎ ").replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def sample_preview(run_dir: str | Path, k: int = 3) -> list[dict[str, Any]]:
    """The first k per-sample rows of a run, for a reader to look at."""
    return read_jsonl(run_file(run_dir, "samples"))[:k]


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] = SUMMARY_COLUMNS) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: _fmt(r[c]) for c in columns} for r in rows)
    return buffer.getvalue()


def to_markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str] = SUMMARY_COLUMNS) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_table(rows: Sequence[dict[str, Any]], name: str, results_root: str | os.PathLike | None = None,
                columns: Sequence[str] = SUMMARY_COLUMNS) -> tuple[Path, Path]:
    """results/tables/<name>.csv and .md."""
    folder = tables_dir(results_root)
    csv_path, md_path = folder / f"{name}.csv", folder / f"{name}.md"
    atomic_write_text(csv_path, to_csv(rows, columns))
    atomic_write_text(md_path, to_markdown(rows, columns))
    return csv_path, md_path


def transcript_preview(run_dir: str | Path, *, example_index: int = 0) -> list[dict[str, Any]]:
    """Every round of the first discussed example (or the n-th), as it happened."""
    rows = read_jsonl(run_file(run_dir, "transcripts"))
    ids = list(dict.fromkeys(r["id"] for r in rows))
    if not ids:
        return []
    chosen = ids[min(example_index, len(ids) - 1)]
    return [r for r in rows if r["id"] == chosen]


def training_log(run_dir: str | Path) -> list[dict[str, Any]]:
    return read_jsonl(run_file(run_dir, "train_log"))


INFERENCE_COLUMNS = ("task", "label", "setting", "n", "generations_per_example", "accuracy", "ci95_low",
                     "ci95_high", "invalid_rate", "accuracy_strict", "invalid_rate_strict",
                     "rouge1", "rouge2", "rougeL", "run")


def inference_rows(run_dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """One row per (run, setting): the final-round voted accuracy, its CI, budget and ROUGE."""
    rows = []
    for run_dir in run_dirs:
        metrics = read_json(run_file(run_dir, "metrics"))
        for setting, result in ordered_settings(metrics):
            final, rouge = result["final"], result["rouge"]
            rows.append({
                "task": metrics["task"], "label": metrics["label"], "setting": setting, "n": final["n"],
                "generations_per_example": result["generations_per_example"], "accuracy": final["accuracy"],
                "ci95_low": final["ci95"][0], "ci95_high": final["ci95"][1], "invalid_rate": final["invalid_rate"],
                **_strict_final(result),
                "rouge1": rouge["rouge1"], "rouge2": rouge["rouge2"], "rougeL": rouge["rougeL"],
                "run": _display_path(Path(run_dir)),
            })
    return rows


def _strict_final(result: dict[str, Any]) -> dict[str, Any]:
    """The strict parse's final-round accuracy and invalid rate; None for runs recorded before inference rows
    kept the strict parse."""
    strict = result.get("final_strict") or {}
    return {"accuracy_strict": strict.get("accuracy"), "invalid_rate_strict": strict.get("invalid_rate")}


def ordered_settings(metrics: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """An inference run's settings in the canonical order (metrics.json stores them sorted by name)."""

    return [(s, metrics["settings"][s]) for s in INFERENCE_SETTINGS if s in metrics["settings"]]


def robustness_markdown(cells: dict[str, Any]) -> str:
    """The robustness cells (share, count/n, CI) as a small Markdown table; empty cells shown as n = 0."""
    rows = [{"cell": name, "share": cell["share"], "count": cell["count"], "n": cell["n"],
             "ci95": "" if cell["ci95"] is None else f"{cell['ci95'][0]:.2f}–{cell['ci95'][1]:.2f}"}
            for name, cell in cells.items() if isinstance(cell, dict)]
    return to_markdown(rows, columns=("cell", "share", "count", "n", "ci95"))


# ---------------------------------------------------------------- sentences about noise and power, computed

def half_width(n: int, share: float = 0.5) -> float:
    """Half the width of the 95% Wilson interval of an accuracy of `share` at n examples (widest at 0.5)."""
    low, high = wilson_interval(round(share * n), n)
    return (high - low) / 2


def noise_line(sizes: list[int]) -> str:
    widths = ", ".join(f"±{half_width(n):.2f} at n = {n}" for n in sorted(set(sizes), reverse=True))
    return (f"Noise at this profile's sample sizes: a 95% Wilson interval around an accuracy of 0.5 spans {widths} "
            "(narrower near 0 or 1).")


def mde_text(n: int, discordance: float = ASSUMED_DISCORDANCE) -> str:
    mde = min_detectable_difference(n, discordance)
    return "none detectable" if mde is None else f"{mde:.2f}"


def power_line(sizes: list[int], checked: list[dict[str, Any]]) -> str:
    """The smallest accuracy difference a paired test detects with POWER at these sizes: under the stated
    assumption on how often two conditions disagree, and under the disagreement these records show."""
    ns = sorted(set(sizes), reverse=True)
    accuracy = [f for f in checked if f.get("measure", "accuracy") == "accuracy"]
    total = sum(f["n"] for f in accuracy)
    observed = sum(f["a_only"] + f["b_only"] for f in accuracy) / total if total else 0.0
    line = (f"Power: the smallest accuracy difference between two conditions that a paired test (two-sided, alpha "
            f"{ALPHA}) detects with {POWER:.0%} power is " + ", ".join(f"{mde_text(n)} at n = {n}" for n in ns)
            + f", if the two disagree in correctness on {ASSUMED_DISCORDANCE:.0%} of the examples (the most that "
            "two conditions with independent errors can; normal approximation of McNemar's test, "
            "`saie_lib.stats.min_detectable_difference`)")
    if observed > 0:
        line += (f"; at the disagreement these comparisons show ({observed:.0%} of examples) it is "
                 + ", ".join(f"{mde_text(n, observed)} at n = {n}" for n in ns))
    return line + "."


def discordance_note(checked: list[dict[str, Any]]) -> str:
    """What an exact McNemar test needs, stated at this profile's own numbers: the fewest discordant examples
    that can reach p < alpha, and at the most discordant examples seen here, the most even split that does."""
    note = (f"(Before any correction, the fewest discordant examples that can reach p < {ALPHA} is "
            f"{min_discordant()}, all favouring one side")
    most = max((f["a_only"] + f["b_only"] for f in checked if f.get("measure", "accuracy") == "accuracy"), default=0)
    even = [k for k in range(most + 1) if mcnemar_exact(k, most - k) < ALPHA and k <= most - k]
    if even:
        note += (f"; with {most} discordant examples, the most seen here, {most - max(even)}:{max(even)} is the "
                 f"most even split that does (p = {mcnemar_exact(most - max(even), max(even)):.3f})")
    return note + ".)"
