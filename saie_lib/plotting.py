"""Figures built from summary rows (which come from run dirs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

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
    fig.savefig(path, dpi=150)
    _pyplot().close(fig)
    return path


def plot_accuracy(rows: Sequence[dict[str, Any]], name: str, *, title: str = "Accuracy with 95% CI",
                  group: str = "model", results_root: str | os.PathLike | None = None) -> Path:
    """Bars of accuracy per task (one bar per `group` value within a task), Wilson 95% CI whiskers,
    the invalid-answer rate written above each bar. Saved as results/figures/<name>.png."""
    plt = _pyplot()
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    models = list(dict.fromkeys(r[group] for r in rows))
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(tasks), 3.6))
    for m_index, model in enumerate(models):
        for t_index, task in enumerate(tasks):
            row = next((r for r in rows if r["task"] == task and r[group] == model), None)
            if row is None:
                continue
            x = t_index + (m_index - (len(models) - 1) / 2) * width
            err = [[row["accuracy"] - row["ci95_low"]], [row["ci95_high"] - row["accuracy"]]]
            ax.bar(x, row["accuracy"], width, yerr=err, capsize=4, color=f"C{m_index}",
                   label=model if t_index == 0 else None)
            ax.text(x, row["ci95_high"] + 0.02, f"n={row['n']}\ninv {row['invalid_rate']:.0%}",
                    ha="center", va="bottom", fontsize=7)
    for t_index, task in enumerate(tasks):
        labels = get_task(task).labels
        if labels:  # chance level of a multiple-choice task
            ax.hlines(1 / len(labels), t_index - 0.45, t_index + 0.45, colors="grey", linestyles=":",
                      label="chance" if t_index == len(tasks) - 1 else None)
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("accuracy (flexible parse)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return _save(fig, name, results_root)


def plot_training(logs: dict[str, Sequence[dict[str, Any]]], name: str, *,
                  results_root: str | os.PathLike | None = None) -> Path:
    """Training curves per run label: loss per optimiser step, and during discussion the share of learner
    answers that were correct before the partner's remark and after the learner's revision."""
    plt = _pyplot()
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for index, (label, rows) in enumerate(logs.items()):
        steps = [r for r in rows if r.get("loss") is not None]
        loss_ax.plot([r["step"] for r in steps], [r["loss"] for r in steps], color=f"C{index}", label=label)
        talk = [r for r in rows if "correct_before_remark" in r]
        if talk:
            x = [r["step"] for r in talk]
            acc_ax.plot(x, [r["correct_before_remark"] for r in talk], color=f"C{index}", ls="--", alpha=0.7)
            acc_ax.plot(x, [r["correct_after_remark"] for r in talk], color=f"C{index}", label=label)
    loss_ax.set(xlabel="optimiser step", ylabel="loss (target tokens)", title="Training loss")
    acc_ax.set(xlabel="optimiser step", ylabel="learner correct", ylim=(-0.05, 1.05),
               title="Discussion: before remark (dashed) / after revision")
    loss_ax.legend(fontsize=8)
    if acc_ax.lines:
        acc_ax.legend(fontsize=8)
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
        acc_ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=f"C{index}", label=setting)
    acc_ax.set(xlabel="round", ylabel="accuracy (vote over valid answers)", ylim=(-0.05, 1.05))
    acc_ax.set_title(f"{metrics['label']}\n{metrics['task']}, n={metrics['n']}", fontsize=8)
    acc_ax.set_xticks(range(last + 1))
    acc_ax.legend(fontsize=8)
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
        ax.bar(i, cell["share"], yerr=err, capsize=3, color="C3" if "abandoned" in key else "C2")
        ax.text(i, cell["ci95"][1] + 0.02, f"{cell['count']}/{cell['n']}", ha="center", fontsize=7)
    ax.set_xticks(range(len(names)), [n.replace("_under_", "\nunder ").replace("_", " ") for n in names], fontsize=7)
    ax.set(ylim=(0, 1.1), ylabel="share", title="Partner remarks: answers abandoned / fixed")


def _flip_bars(ax: Any, settings: dict[str, Any]) -> None:
    bars = [(s, f) for s, result in settings.items() for f in result["flips"]]
    labels = [f"{s} r{f['round']}" for s, f in bars]
    fixed = [f["wrong_to_right"] for _, f in bars]
    broke = [f["right_to_wrong"] for _, f in bars]
    x = range(len(bars))
    ax.bar([i - 0.2 for i in x], fixed, 0.4, color="C2", label="wrong → right")
    ax.bar([i + 0.2 for i in x], broke, 0.4, color="C3", label="right → wrong")
    ax.set_xticks(list(x), labels, fontsize=7, rotation=45, ha="right")
    ax.set(ylabel="answers", title="Flips per round (each agent)")
    ax.legend(fontsize=8)


def plot_inference_conditions(rows: Sequence[dict[str, Any]], name: str, *, title: str,
                              results_root: str | os.PathLike | None = None) -> Path:
    """Final-round accuracy per trained model (condition), one bar per inference setting, 95% CI whiskers."""
    plt = _pyplot()
    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    width = 0.8 / max(len(settings), 1)
    fig, ax = plt.subplots(figsize=(2 + 1.5 * len(conditions), 3.8))
    for s_index, setting in enumerate(settings):
        for c_index, condition in enumerate(conditions):
            row = next((r for r in rows if r["condition"] == condition and r["setting"] == setting), None)
            if row is None:
                continue
            x = c_index + (s_index - (len(settings) - 1) / 2) * width
            err = [[row["accuracy"] - row["ci95_low"]], [row["ci95_high"] - row["accuracy"]]]
            ax.bar(x, row["accuracy"], width, yerr=err, capsize=3, color=f"C{s_index}",
                   label=setting if c_index == 0 else None)
    task = rows[0]["task"] if rows else None
    labels = get_task(task).labels if task else None
    if labels:
        ax.axhline(1 / len(labels), color="grey", ls=":", label="chance")
    ax.set_xticks(range(len(conditions)), conditions)
    ax.set(ylim=(0, 1.1), ylabel="accuracy (vote over valid answers)", xlabel="model (training condition)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper right", ncol=2)
    fig.tight_layout()
    return _save(fig, name, results_root)


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
                   color="lightgrey" if letter == "invalid" else f"C{index}", hatch="//" if letter == "invalid"
                   else None, edgecolor="white")
            bottoms = [b + s for b, s in zip(bottoms, shares)]
        for g_index, group in enumerate(groups):
            ax.text(g_index, 1.02, f"n={sum(table[group].values())}", ha="center", fontsize=7)
        ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right", fontsize=8)
        ax.set(ylim=(0, 1.1), ylabel="share of answers (flexible parse)", title=task)
    handles = {}  # every task's letters in one legend (CommonsenseQA has E, MMLU not)
    for ax in axes[0]:
        handles.update(zip(*reversed(ax.get_legend_handles_labels())))
    order = sorted(handles, key=lambda label: (label == "invalid", label))
    axes[0][-1].legend([handles[k] for k in order], order, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, name, results_root)
