"""Figures built from summary rows (which come from run dirs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from .paths import figures_dir


def plot_accuracy(rows: Sequence[dict[str, Any]], name: str, *, title: str = "Accuracy with 95% CI",
                  results_root: str | os.PathLike | None = None) -> Path:
    """Bars of accuracy per task (one bar per model within a task), Wilson 95% CI whiskers,
    the invalid-answer rate written above each bar. Saved as results/figures/<name>.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(tasks), 3.6))
    for m_index, model in enumerate(models):
        for t_index, task in enumerate(tasks):
            row = next((r for r in rows if r["task"] == task and r["model"] == model), None)
            if row is None:
                continue
            x = t_index + (m_index - (len(models) - 1) / 2) * width
            err = [[row["accuracy"] - row["ci95_low"]], [row["ci95_high"] - row["accuracy"]]]
            ax.bar(x, row["accuracy"], width, yerr=err, capsize=4, color=f"C{m_index}",
                   label=model if t_index == 0 else None)
            ax.text(x, row["ci95_high"] + 0.02, f"n={row['n']}\ninv {row['invalid_rate']:.0%}",
                    ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("accuracy (flexible parse)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    path = figures_dir(results_root) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path
