"""Figures built from summary rows (which come from run dirs)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any, Sequence

from .palette import CHANCE_STYLE, OUTCOME_COLOURS, colour, legend_outside, letter_colour
from .paths import figures_dir
from .reporting import ordered_settings
from .tasks import get_task


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, name: str, results_root: str | os.PathLike | None) -> Path:
    path = figures_dir(results_root) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")  # the tight box keeps legends placed outside the axes
    _pyplot().close(fig)
    return path


def _title(ax: Any, text: str, width_in: float) -> None:
    """A title wrapped to the axes' width, so a long one is never cut."""
    ax.set_title(textwrap.fill(text, max(30, int(width_in * 11))), fontsize=10)


def _mark_zero(ax: Any, x: float, width: float, value: float, color: str) -> None:
    """A bar of height 0 is invisible: draw its base in its colour, so the reader sees a 0, not a gap."""
    if value == 0:
        ax.hlines(0.004, x - width / 2, x + width / 2, colors=color, linewidth=3)


def _task_label(task: str, rows: Sequence[dict[str, Any]]) -> str:
    sizes = sorted({r["n"] for r in rows})
    return f"{task}\n(n = {sizes[0]} each)" if len(sizes) == 1 else f"{task}\n(n = {sizes[0]}–{sizes[-1]})"


def _chance(ax: Any, task: str, x_from: float, x_to: float, *, label: bool) -> None:
    labels = get_task(task).labels
    if labels:  # chance level of a multiple-choice task
        ax.hlines(1 / len(labels), x_from, x_to, label="chance" if label else None, **CHANCE_STYLE)


def plot_accuracy(rows: Sequence[dict[str, Any]], name: str, *, title: str = "Accuracy with 95% CI",
                  group: str = "model", results_root: str | os.PathLike | None = None) -> Path:
    """Bars of accuracy per task, one bar per `group` value (coloured by name: `saie_lib.palette`), every bar with
    its Wilson 95% interval; n under each task. One task: the groups along the x axis; several: grouped bars with
    the legend beside the axes. The invalid-answer rate is written on a bar only where a task has one bar (else
    it is in the table). Saved as results/figures/<name>.png."""
    plt = _pyplot()
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    groups = list(dict.fromkeys(r[group] for r in rows))
    single = len(tasks) == 1
    width = 0.7 if single else 0.8 / max(len(groups), 1)
    fig_width = (2.2 + 0.75 * len(groups)) if single else (2.0 + (0.5 + 0.22 * len(groups)) * len(tasks))
    fig, ax = plt.subplots(figsize=(fig_width, 3.6))
    for g_index, key in enumerate(groups):
        for t_index, task in enumerate(tasks):
            row = next((r for r in rows if r["task"] == task and r[group] == key), None)
            if row is None:
                continue
            x = g_index if single else t_index + (g_index - (len(groups) - 1) / 2) * width
            err = [[row["accuracy"] - row["ci95_low"]], [row["ci95_high"] - row["accuracy"]]]
            ax.bar(x, row["accuracy"], width, yerr=err, capsize=3, color=colour(str(key), g_index),
                   error_kw={"elinewidth": 1}, label=None if single or t_index else key)
            _mark_zero(ax, x, width, row["accuracy"], colour(str(key), g_index))
            if len(groups) == 1:
                ax.text(x, row["ci95_high"] + 0.02, f"invalid {row['invalid_rate']:.0%}", ha="center", fontsize=7)
    for t_index, task in enumerate(tasks):
        span = (-0.5, len(groups) - 0.5) if single else (t_index - 0.45, t_index + 0.45)
        _chance(ax, task, *span, label=t_index == len(tasks) - 1)
    if single:
        ax.set_xticks(range(len(groups)), groups, rotation=30 if len(groups) > 4 else 0,
                      ha="right" if len(groups) > 4 else "center", fontsize=8)
        ax.set_xlabel(_task_label(tasks[0], rows).replace("\n", " "), fontsize=8)
    else:
        ax.set_xticks(range(len(tasks)), [_task_label(t, [r for r in rows if r["task"] == t]) for t in tasks],
                      fontsize=8)
    ax.set_ylim(0, _top(rows))
    ax.set_ylabel("accuracy (flexible parse)")
    _title(ax, title, fig_width)
    legend_outside(ax)
    return _save(fig, name, results_root)


def plot_training(logs: dict[str, Sequence[dict[str, Any]]], name: str, *, title: str | None = None,
                  results_root: str | os.PathLike | None = None) -> Path:
    """Training curves per run label (a condition, coloured by name): loss per optimiser step, and during
    discussion the share of learner answers that were correct before the partner's remark (dashed) and after the
    learner's revision (solid). One legend, beside the right panel."""
    plt = _pyplot()
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for index, (label, rows) in enumerate(logs.items()):
        steps = [r for r in rows if r.get("loss") is not None]
        loss_ax.plot([r["step"] for r in steps], [r["loss"] for r in steps], color=colour(label, index), label=label)
        talk = [r for r in rows if "correct_before_remark" in r]
        if talk:
            x = [r["step"] for r in talk]
            acc_ax.plot(x, [r["correct_before_remark"] for r in talk], color=colour(label, index), ls="--", alpha=0.7)
            acc_ax.plot(x, [r["correct_after_remark"] for r in talk], color=colour(label, index))
    loss_ax.set(xlabel="optimiser step", ylabel="loss (target tokens)", title="Training loss")
    acc_ax.set(xlabel="optimiser step", ylabel="learner correct", ylim=(-0.05, 1.05),
               title="Discussion: before remark (dashed) / after revision")
    handles, labels = loss_ax.get_legend_handles_labels()
    if handles:
        acc_ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, name, results_root)


def plot_inference(metrics: dict[str, Any], name: str, *, results_root: str | os.PathLike | None = None) -> Path:
    """Left: voted accuracy by round per setting with 95% CIs (individual at round 0; self-consistency, which
    spends the discussion's budget, drawn at the last round). Right: answer flips per round."""
    plt = _pyplot()
    settings = dict(ordered_settings(metrics))
    last = max(max(r["round"] for r in s["by_round"]) for s in settings.values())
    robust = settings.get("partner_discussion", {}).get("robustness")
    fig, axes = plt.subplots(1, 3 if robust else 2, figsize=(15 if robust else 10, 3.8))
    acc_ax, flip_ax = axes[0], axes[1]
    for index, (setting, result) in enumerate(settings.items()):
        points = result["by_round"]
        offset = (index - (len(settings) - 1) / 2) * 0.06  # settings often share values: spread them apart
        x = [last + offset] if setting == "self_consistency" else [p["round"] + offset for p in points]
        y = [p["accuracy"] for p in points]
        err = [[p["accuracy"] - p["ci95"][0] for p in points], [p["ci95"][1] - p["accuracy"] for p in points]]
        acc_ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=colour(setting, index), label=setting)
    acc_ax.set(xlabel="round", ylabel="accuracy (vote over valid answers)", ylim=(-0.05, 1.05))
    acc_ax.set_title(f"{metrics['label']}\n{metrics['task']}, n={metrics['n']}", fontsize=8)
    acc_ax.set_xticks(range(last + 1))
    acc_ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    _flip_bars(flip_ax, settings)
    if robust:
        _robustness_bars(axes[2], robust)
    fig.tight_layout()
    return _save(fig, name, results_root)


def _robustness_bars(ax: Any, cells: dict[str, Any]) -> None:
    """Share of answers changed by a partner's remark, with 95% CIs; cells with n = 0 are marked, not drawn."""
    names = [k for k, v in cells.items() if isinstance(v, dict)]
    for i, key in enumerate(names):
        cell = cells[key]
        if cell["share"] is None:
            ax.text(i, 0.02, "n=0", ha="center", fontsize=7)
            continue
        err = [[cell["share"] - cell["ci95"][0]], [cell["ci95"][1] - cell["share"]]]
        ax.bar(i, cell["share"], yerr=err, capsize=3,
               color=OUTCOME_COLOURS["broke"] if "abandoned" in key else OUTCOME_COLOURS["fixed"])
        ax.text(i, cell["ci95"][1] + 0.02, f"{cell['count']}/{cell['n']}", ha="center", fontsize=7)
    ax.set_xticks(range(len(names)), [n.replace("_under_", "\nunder ").replace("_", " ") for n in names], fontsize=7)
    ax.set(ylim=(0, 1.1), ylabel="share", title="Partner remarks: answers abandoned / fixed")


def _flip_bars(ax: Any, settings: dict[str, Any]) -> None:
    bars = [(s, f) for s, result in settings.items() for f in result["flips"]]
    labels = [f"{s} r{f['round']}" for s, f in bars]
    fixed = [f["wrong_to_right"] for _, f in bars]
    broke = [f["right_to_wrong"] for _, f in bars]
    x = range(len(bars))
    ax.bar([i - 0.2 for i in x], fixed, 0.4, color=OUTCOME_COLOURS["fixed"], label="wrong → right")
    ax.bar([i + 0.2 for i in x], broke, 0.4, color=OUTCOME_COLOURS["broke"], label="right → wrong")
    ax.set_xticks(list(x), labels, fontsize=7, rotation=45, ha="right")
    ax.set(ylabel="answers", title="Flips per round (each agent)")
    ax.legend(fontsize=7, frameon=False)


def plot_inference_conditions(rows: Sequence[dict[str, Any]], name: str, *, title: str,
                              results_root: str | os.PathLike | None = None) -> Path:
    """Final-round accuracy per inference setting, one bar per trained model (condition, coloured by name as in
    every figure), 95% CI whiskers, the legend beside the axes."""
    plt = _pyplot()
    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    width = 0.8 / max(len(conditions), 1)
    fig_width = 2.0 + (0.5 + 0.22 * len(conditions)) * len(settings)
    fig, ax = plt.subplots(figsize=(fig_width, 3.6))
    for c_index, condition in enumerate(conditions):
        for s_index, setting in enumerate(settings):
            row = next((r for r in rows if r["condition"] == condition and r["setting"] == setting), None)
            if row is None:
                continue
            x = s_index + (c_index - (len(conditions) - 1) / 2) * width
            err = [[row["accuracy"] - row["ci95_low"]], [row["ci95_high"] - row["accuracy"]]]
            ax.bar(x, row["accuracy"], width, yerr=err, capsize=2, color=colour(condition, c_index),
                   error_kw={"elinewidth": 1}, label=condition if s_index == 0 else None)
            _mark_zero(ax, x, width, row["accuracy"], colour(condition, c_index))
    if rows:
        _chance(ax, rows[0]["task"], -0.5, len(settings) - 0.5, label=True)
    ax.set_xticks(range(len(settings)), [_task_label(s, [r for r in rows if r["setting"] == s]) for s in settings],
                  fontsize=8)
    ax.set(ylim=(0, _top(rows)), ylabel="accuracy (vote over valid answers)", xlabel="inference setting")
    _title(ax, title, fig_width)
    legend_outside(ax, title="model (training condition)", title_fontsize=8)
    return _save(fig, name, results_root)


def _top(rows: Sequence[dict[str, Any]]) -> float:
    """The y axis's top: room above the highest interval, never past 1."""
    return min(1.02, max((r["ci95_high"] for r in rows), default=1.0) + 0.12)


def plot_letter_distribution(distributions: dict[str, dict[str, dict[str, int]]], name: str, *,
                             title: str = "Predicted letters per condition",
                             results_root: str | os.PathLike | None = None) -> Path:
    """One panel per multiple-choice task: per condition (and the gold answers, last) a stacked bar of the
    share of each predicted letter, invalid answers in grey. A condition that collapses onto one letter shows
    as one tall segment. `distributions` is task -> {condition -> {letter or "invalid" -> count}}."""
    if not distributions:
        raise ValueError("no letter distributions to plot")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(distributions), figsize=(4.2 * len(distributions), 3.8), squeeze=False)
    for ax, (task, table) in zip(axes[0], distributions.items()):
        letters = [k for k in next(iter(table.values())) if k != "invalid"]
        groups = list(table)
        bottoms = [0.0] * len(groups)
        for index, letter in enumerate([*letters, "invalid"]):
            shares = [table[g].get(letter, 0) / max(sum(table[g].values()), 1) for g in groups]
            ax.bar(range(len(groups)), shares, 0.7, bottom=bottoms, label=letter,
                   color="lightgrey" if letter == "invalid" else letter_colour(index), hatch="//"
                   if letter == "invalid" else None, edgecolor="white")
            bottoms = [b + s for b, s in zip(bottoms, shares)]
        sizes = sorted({sum(counts.values()) for counts in table.values()})
        ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right", fontsize=8)
        ax.set(ylim=(0, 1.0), ylabel="share of answers (flexible parse)")
        ax.set_title(f"{task} (n = {sizes[0]} each)" if len(sizes) == 1 else f"{task} (n = {sizes[0]}–{sizes[-1]})",
                     fontsize=9)
    handles = {}  # every task's letters in one legend (CommonsenseQA has E, MMLU not)
    for ax in axes[0]:
        handles.update(zip(*reversed(ax.get_legend_handles_labels())))
    order = sorted(handles, key=lambda label: (label == "invalid", label))
    axes[0][-1].legend([handles[k] for k in order], order, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5),
                       frameon=False, title="answer")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, name, results_root)
