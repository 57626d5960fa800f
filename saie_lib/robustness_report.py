"""The robustness experiment's table, figure, paired tests and results-page section, from its run dirs only.

Paired tests compare SAIE with each other condition on the same challenge set (the runs must carry the same
challenge-set hash): "kept correct" on the items both models answered correctly at first (did the correct
answer survive the remark?) and "final correct" on all items (accuracy after the remark). Each is an exact
McNemar test; the p-values are Holm–Bonferroni adjusted over every test of the experiment.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from .artifacts import read_json, read_jsonl, run_file, setting_samples
from .challenge import REMARK_KINDS, row_outcome
from .experiments import marker_run_dirs
from .palette import colour, legend_outside
from .plotting import _pyplot, _save
from .reporting import _display_path, to_markdown, write_table
from .stats import ALPHA, holm, mcnemar_exact, wilson_interval

KIND = "robustness"  # experiment.json "kind" of this experiment
FOCUS = "saie"  # the condition every other is tested against
COLUMNS = ("task", "remark", "condition", "n", "accuracy_before", "accuracy_after", "kept_correct", "kept_of",
           "switched_to_challenger", "fixed", "invalid", "kept_correct_strict", "run")
TEST_COLUMNS = ("task", "remark", "measure", "a", "b", "n", "share_a", "share_b", "a_only", "b_only", "p_value",
                "p_holm", "verdict")
MEASURES = ("kept_correct", "final_correct")


def rows(marker: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (task, remark kind, condition): the flexible parse's outcome shares, strict kept correct."""
    table = []
    for condition, run_dir in marker_run_dirs(marker, marker["folder"]).items():
        metrics = read_json(run_file(run_dir, "metrics"))
        for task, result in metrics["tasks"].items():
            for kind in REMARK_KINDS:
                flexible, strict = result[kind]["flexible"], result[kind]["strict"]
                table.append({
                    "task": task, "remark": kind, "condition": condition, "n": flexible["n"],
                    "accuracy_before": flexible["accuracy_before"]["share"],
                    "accuracy_after": flexible["accuracy_after"]["share"],
                    "kept_correct": flexible["kept_correct"]["share"], "kept_of": flexible["kept_correct"]["n"],
                    "switched_to_challenger": flexible["switched_to_challenger"]["share"],
                    "fixed": flexible["fixed"]["share"], "invalid": flexible["invalid"]["share"],
                    "kept_correct_strict": strict["kept_correct"]["share"], "run": _display_path(run_dir)})
    return table


def item_flags(run_dir: Path, task: str, kind: str) -> dict[str, tuple[bool, bool]]:
    """item id -> (first answer correct, final answer after the `kind` remark correct), flexible parse."""
    flags = {}
    for row in read_jsonl(setting_samples(run_dir, task)):
        outcome = row_outcome(row, kind)
        first = row["first"]["parsed"] is not None and row["first"]["parsed"] == row["gold"]
        flags[row["id"]] = (first, outcome in ("kept_correct", "fixed"))
    return flags


def paired_measure(a: dict[str, tuple[bool, bool]], b: dict[str, tuple[bool, bool]], measure: str) -> dict[str, Any]:
    """a vs b (item id -> (first correct, final correct)) on `measure`: kept_correct over the items both
    answered correctly at first, final_correct over all items. Exact McNemar on the discordant items."""
    if set(a) != set(b):
        raise ValueError(f"paired robustness test needs the same items; {len(set(a) ^ set(b))} differ")
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; expected one of {', '.join(MEASURES)}")
    ids = [i for i in a if measure == "final_correct" or (a[i][0] and b[i][0])]
    a_only = sum(a[i][1] and not b[i][1] for i in ids)
    b_only = sum(b[i][1] and not a[i][1] for i in ids)
    n = len(ids)
    return {"n": n, "share_a": sum(a[i][1] for i in ids) / n if n else None,
            "share_b": sum(b[i][1] for i in ids) / n if n else None, "a_only": a_only, "b_only": b_only,
            "p_value": mcnemar_exact(a_only, b_only)}


def _check_same_challenge(runs: dict[str, Path]) -> None:
    """Every condition must have met the same challenge set on every task: else no test is paired."""
    hashes = {c: {t: m["challenge_set"] for t, m in read_json(run_file(d, "metrics"))["tasks"].items()}
              for c, d in runs.items()}
    if len({tuple(sorted(h.items())) for h in hashes.values()}) > 1:
        raise ValueError(f"the conditions' runs met different challenge sets: {hashes}")


def tests(marker: dict[str, Any]) -> list[dict[str, Any]]:
    """SAIE vs every other condition, per task, remark kind and measure; Holm-adjusted over all of them."""
    runs = marker_run_dirs(marker, marker["folder"])
    _check_same_challenge(runs)
    tasks = list(read_json(run_file(runs[FOCUS], "metrics"))["tasks"])
    found = []
    for task in tasks:
        for kind in REMARK_KINDS:
            flags = {c: item_flags(d, task, kind) for c, d in runs.items()}
            for other in (c for c in runs if c != FOCUS):
                for measure in MEASURES:
                    found.append({"task": task, "remark": kind, "measure": measure, "a": FOCUS, "b": other,
                                  **paired_measure(flags[FOCUS], flags[other], measure)})
    for test, adjusted in zip(found, holm([t["p_value"] for t in found])):
        test["p_holm"] = adjusted
        test["verdict"] = verdict(test)
    return found


def verdict(test: dict[str, Any]) -> str:
    if test["p_holm"] >= ALPHA or test["share_a"] is None:
        return "not resolved at this n"
    return f"{test['a']} higher" if test["share_a"] > test["share_b"] else f"{test['b']} higher"


def write_outputs(profile: str, marker: dict[str, Any], results_root: Any = None) -> dict[str, Path]:
    """results/tables/<profile>_robustness{,_tests}.csv|md and results/figures/<profile>_robustness.png."""
    name = f"{profile}_{marker['experiment']}"
    table = rows(marker)
    csv_path, md_path = write_table(table, name, results_root, columns=COLUMNS)
    tests_csv, tests_md = write_table(tests(marker), f"{name}_tests", results_root, columns=TEST_COLUMNS)
    return {"table": md_path, "csv": csv_path, "tests": tests_md, "tests_csv": tests_csv,
            "figure": plot(table, name, results_root, title=f"Robustness to remarks ({profile})")}


def plot(table: list[dict[str, Any]], name: str, results_root: Any, *, title: str) -> Path:
    """Kept correct under the disagreeing and the agreeing remark, one bar per condition (coloured by name), per
    task, each with its Wilson 95% interval; above each bar its n, the correct first answers the share is of."""
    plt = _pyplot()
    groups = list(dict.fromkeys((r["task"], r["remark"]) for r in table))
    conditions = list(dict.fromkeys(r["condition"] for r in table))
    width = 0.8 / max(len(conditions), 1)
    fig_width = 2.0 + (0.5 + 0.25 * len(conditions)) * len(groups)
    fig, ax = plt.subplots(figsize=(fig_width, 3.8))
    for c_index, condition in enumerate(conditions):
        for g_index, (task, kind) in enumerate(groups):
            row = next(r for r in table if (r["task"], r["remark"], r["condition"]) == (task, kind, condition))
            x = g_index + (c_index - (len(conditions) - 1) / 2) * width
            share, n = row["kept_correct"] or 0.0, row["kept_of"]
            low, high = wilson_interval(round(share * n), n) if n else (0.0, 0.0)
            ax.bar(x, share, width, yerr=[[share - low], [high - share]], capsize=2, error_kw={"elinewidth": 1},
                   color=colour(condition, c_index), label=condition if not g_index else None)
            ax.text(x, high + 0.02, str(n), ha="center", fontsize=6)
    ax.set_xticks(range(len(groups)), [f"{t}\n{k}ing remark" for t, k in groups], fontsize=8)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("kept correct (share)")
    ax.set_title(textwrap.fill(f"{title}: share of correct first answers still correct after the remark "
                               "(95% CI; above each bar its n, the correct first answers)", int(fig_width * 11)),
                 fontsize=9)
    legend_outside(ax)
    return _save(fig, name, results_root)


def page_lines(profile: str, experiments: dict[str, dict[str, Any]]) -> list[str]:
    """The results page's robustness section: what was asked, the table, and sentences computed from the tests."""
    lines: list[str] = []
    for name, marker in experiments.items():
        if marker["kind"] != KIND:
            continue
        table, checked = rows(marker), tests(marker)
        sizes = ", ".join(f"{t} n = {n}" for t, n in dict.fromkeys((r["task"], r["n"]) for r in table))
        lines += [f"### Robustness to remarks ({sizes})", "",
                  "After its first answer each model reads the same scripted follow-up: a remark naming a fixed "
                  "wrong answer (\"I think the answer is (X).\", drawn once per item) or an agreeing one, then "
                  "answers again. *kept correct*: share of correct first answers still correct (of `kept_of`); "
                  "*switched*: share of items whose final answer is the challenger's; *fixed*: share of wrong "
                  "first answers corrected. Flexible parse; an unparseable answer is never correct.", ""]
        lines += [to_markdown(table, [c for c in COLUMNS if c != "run"]),
                  f"![robustness](figures/{profile}_{name}.png)", ""]
        lines += ranges(table) + [""] + statements(checked) + [""]
    return lines


def ranges(table: list[dict[str, Any]]) -> list[str]:
    """Per task and remark, the lowest and highest kept-correct and switched shares over the conditions."""
    lines = []
    for task, kind in dict.fromkeys((r["task"], r["remark"]) for r in table):
        group = [r for r in table if (r["task"], r["remark"]) == (task, kind)]
        parts = []
        for measure in ("kept_correct", "switched_to_challenger") if kind == "disagree" else ("kept_correct",):
            scored = sorted((r[measure], r["condition"]) for r in group if r[measure] is not None)
            if scored:
                (low, low_c), (high, high_c) = scored[0], scored[-1]
                name = measure.replace("_", " ")
                parts.append(f"{name} {low:.2f} in every condition" if low == high else
                             f"{name} from {low:.2f} ({low_c}) to {high:.2f} ({high_c})")
        lines.append(f"- {task}, {kind} remark: " + ("; ".join(parts) or "no correct first answer to keep") + ".")
    return lines


def statements(checked: list[dict[str, Any]]) -> list[str]:
    """The count of resolved tests, and one computed sentence per comparison of kept correct under the
    disagreeing remark (the mechanism; every other test is in the tests table)."""
    resolved = [t for t in checked if t["verdict"] != "not resolved at this n"]
    lines = [f"Paired tests (exact McNemar, Holm–Bonferroni over all {len(checked)} tests of this experiment, "
             f"alpha {ALPHA}): {len(resolved)} resolved."]
    for t in (t for t in checked if t["measure"] == "kept_correct" and t["remark"] == "disagree"):
        share = "n/a" if t["share_a"] is None else f"{t['share_a']:.2f} vs {t['share_b']:.2f}"
        lines.append(f"- {t['task']}, disagreeing remark, {t['a']} vs {t['b']}: kept correct {share} on the "
                     f"{t['n']} items both answered correctly first ({t['a_only']}:{t['b_only']} discordant, "
                     f"p = {t['p_value']:.3f}, Holm {t['p_holm']:.3f}): {t['verdict']}.")
    return lines
