"""The benchmarks' figure: side-by-side bar charts over the same cases (one panel per measured quantity)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

Panel = tuple[Sequence[float], str, str]  # values (one per label), y-axis label, title


def bar_panels(labels: Sequence[str], colors: Sequence[str], panels: Sequence[Panel], title: str, *,
               width: float, label_size: int = 8) -> tuple[Any, Any]:
    """A figure with one bar chart per panel; returns (figure, axes) for any extra marks, then `save`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(1, len(panels), figsize=(width, 3.8), squeeze=False)
    axes = grid[0]
    for axis, (values, unit, panel_title) in zip(axes, panels):
        axis.bar(labels, values, color=colors)
        axis.set(ylabel=unit, title=panel_title)
        axis.tick_params(axis="x", labelsize=label_size)
    fig.suptitle(title)
    return fig, axes


def save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
