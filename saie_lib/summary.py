"""The reproduction's tables, figures, paired comparisons and results/README.md, built from run dirs only.

Each experiment folder (results/runs/<profile>/<experiment>/) holds an experiment.json naming the run dir of
each condition; everything here starts from those files, so a summary never mixes in a run it did not name.
Comparisons between two conditions are paired (same examples): an exact two-sided McNemar test on the
examples where exactly one of the two is correct. An unparseable answer counts as wrong throughout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .artifacts import read_json, read_jsonl, run_file, setting_samples
from .conditions import REMARK_POLICIES
from .experiments import EXPERIMENTS, MARKER, experiment_dir, marker_run_dirs
from .paths import results_root as _root
from .plotting import plot_accuracy, plot_inference_conditions, plot_training
from .reporting import inference_rows, ordered_settings, summary_row, training_log, write_table
from .stats import ALPHA, mcnemar_exact
from .voting import vote_many

CONDITION_COLUMNS = ("experiment", "task", "condition", "n", "accuracy", "ci95_low", "ci95_high", "invalid_rate",
                     "accuracy_strict", "invalid_rate_strict", "rouge1", "rouge2", "rougeL", "steps", "run")
INFERENCE_COLUMNS = ("condition", "setting", "n", "generations_per_example", "accuracy", "ci95_low", "ci95_high",
                     "invalid_rate", "rougeL", "run")


def finished_experiments(profile: str, results_root: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """experiment name -> its experiment.json, for the experiments of `profile` that have finished."""
    found = {}
    for name in EXPERIMENTS:
        path = experiment_dir(profile, name, results_root) / MARKER
        if path.is_file():
            found[name] = {**read_json(path), "folder": path.parent}
    return found


def profiles_with_results(results_root: str | Path | None = None) -> list[str]:
    runs = _root(results_root) / "runs"
    return sorted(p.name for p in runs.iterdir() if p.is_dir() and any((p / e / MARKER).is_file()
                                                                      for e in EXPERIMENTS)) if runs.is_dir() else []


# ---------------------------------------------------------------- training experiments

def condition_rows(marker: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per condition of a training experiment: accuracy, CI, invalid rate, ROUGE of the reasoning."""
    rows = []
    for condition, run_dir in marker_run_dirs(marker, marker["folder"]).items():
        metrics = read_json(run_file(run_dir, "metrics"))
        rouge = metrics.get("rouge") or {}
        rows.append({**summary_row(run_dir), "experiment": marker["experiment"], "condition": condition,
                     "rouge1": rouge.get("rouge1"), "rouge2": rouge.get("rouge2"), "rougeL": rouge.get("rougeL"),
                     "steps": metrics.get("steps", 0)})
    return rows


def _correct_by_id(run_dir: Path) -> dict[str, bool]:
    return {r["id"]: bool(r["correct"]) for r in read_jsonl(run_file(run_dir, "samples"))}


def _final_vote_correct(run_dir: Path, setting: str, seed: int) -> dict[str, bool]:
    rows = read_jsonl(setting_samples(run_dir, setting))
    last = max(r["round"] for r in rows)
    final = [r for r in rows if r["round"] == last]
    gold = {r["id"]: r["gold"] for r in final}
    return {i: v.answer is not None and v.answer == gold[i] for i, v in vote_many(final, seed=seed).items()}


def paired(a: dict[str, bool], b: dict[str, bool]) -> dict[str, Any]:
    """Condition a vs b on the examples both answered."""
    if set(a) != set(b):
        raise ValueError(f"paired comparison needs the same examples; {len(set(a) ^ set(b))} differ")
    a_only = sum(a[i] and not b[i] for i in a)
    b_only = sum(b[i] and not a[i] for i in a)
    n = len(a)
    return {"n": n, "accuracy_a": sum(a.values()) / n, "accuracy_b": sum(b.values()) / n,
            "a_only": a_only, "b_only": b_only, "p_value": mcnemar_exact(a_only, b_only)}


def verdict(comparison: dict[str, Any]) -> str:
    better = comparison["accuracy_a"] - comparison["accuracy_b"]
    if comparison["p_value"] < ALPHA:
        return "holds" if better > 0 else "reversed"
    return "not resolved at this n"


# ---------------------------------------------------------------- inference experiment

def inference_condition_rows(marker: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for condition, run_dir in marker_run_dirs(marker, marker["folder"]).items():
        for row in inference_rows([run_dir]):
            rows.append({**row, "condition": condition})
    return rows


# ---------------------------------------------------------------- the paper's findings, checked

TRAINING_CLAIMS = (("saie", "none", "SAIE beats conventional fine-tuning"),
                   ("saie", "supportive", "SAIE beats supportive-only discussion"),
                   ("saie", "adversarial", "SAIE beats adversarial-only discussion"),
                   ("none", "base",
                    "conventional fine-tuning beats the untrained model (a sanity check, not a paper claim)"))
INFERENCE_CLAIMS = (("saie", "none", "the SAIE model beats the conventionally fine-tuned one"),
                    ("saie", "base", "the SAIE model beats the untrained model"))


def findings(profile: str, results_root: str | Path | None = None) -> list[dict[str, Any]]:
    """Each paper claim this profile's runs can test, with the paired comparison and a verdict."""
    results = []
    for name, marker in finished_experiments(profile, results_root).items():
        runs = marker_run_dirs(marker, marker["folder"])
        if marker["kind"] == "training":
            for a, b, claim in TRAINING_CLAIMS:
                comparison = paired(_correct_by_id(runs[a]), _correct_by_id(runs[b]))
                results.append({"experiment": name, "task": marker["task"], "setting": "individual",
                                "claim": claim, "a": a, "b": b, **comparison, "verdict": verdict(comparison)})
            continue
        seed = read_json(run_file(runs["base"], "metrics"))["seed"]
        settings = [s for s, _ in ordered_settings(read_json(run_file(runs["base"], "metrics")))]
        for setting in settings:
            for a, b, claim in INFERENCE_CLAIMS:
                comparison = paired(_final_vote_correct(runs[a], setting, seed),
                                    _final_vote_correct(runs[b], setting, seed))
                results.append({"experiment": name, "task": marker["task"], "setting": setting, "claim": claim,
                                "a": a, "b": b, **comparison, "verdict": verdict(comparison)})
    return results


def rouge_findings(profile: str, results_root: str | Path | None = None) -> list[dict[str, Any]]:
    """ROUGE-L of the SAIE model's reasoning against conventional fine-tuning's, where the task has reference
    rationales. Descriptive only: no test (per-example ROUGE is not kept)."""
    results = []
    for name, marker in finished_experiments(profile, results_root).items():
        if marker["kind"] != "training":
            continue
        rows = {r["condition"]: r for r in condition_rows(marker)}
        if rows["saie"]["rougeL"] is None or rows["none"]["rougeL"] is None:
            continue
        delta = rows["saie"]["rougeL"] - rows["none"]["rougeL"]
        results.append({"experiment": name, "task": marker["task"], "rougeL_saie": rows["saie"]["rougeL"],
                        "rougeL_none": rows["none"]["rougeL"], "difference": delta,
                        "direction": "higher" if delta > 0 else "lower" if delta < 0 else "equal"})
    return results


# ---------------------------------------------------------------- outputs

def write_experiment_outputs(profile: str, experiment: str, results_root: str | Path | None = None) -> dict[str, Path]:
    """The table and figures of one finished experiment: results/tables|figures/<profile>_<experiment>*."""
    marker = finished_experiments(profile, results_root)[experiment]
    name = f"{profile}_{experiment}"
    if marker["kind"] == "training":
        rows = condition_rows(marker)
        csv_path, md_path = write_table(rows, name, results_root, columns=CONDITION_COLUMNS)
        runs = marker_run_dirs(marker, marker["folder"])
        return {"table": md_path, "csv": csv_path,
                "figure": plot_accuracy(rows, name, group="condition", results_root=results_root,
                                        title=f"{marker['title']}: five conditions ({profile})"),
                "training": plot_training({c: training_log(runs[c]) for c in REMARK_POLICIES}, f"{name}_training",
                                          results_root=results_root)}
    rows = inference_condition_rows(marker)
    csv_path, md_path = write_table(rows, name, results_root, columns=INFERENCE_COLUMNS)
    return {"table": md_path, "csv": csv_path, "figure": plot_inference_conditions(
        rows, name, title=f"{marker['task']}: inference settings per trained model ({profile})",
        results_root=results_root)}


FINDING_COLUMNS = ("experiment", "task", "setting", "claim", "n", "accuracy_a", "accuracy_b", "a_only", "b_only",
                   "p_value", "verdict")


def write_combined(profile: str, results_root: str | Path | None = None) -> dict[str, Path]:
    """The profile's combined tables (conditions of every task, findings) and the conditions figure."""
    experiments = finished_experiments(profile, results_root)
    rows = [r for m in experiments.values() if m["kind"] == "training" for r in condition_rows(m)]
    written: dict[str, Path] = {}
    if rows:
        written["conditions"] = write_table(rows, f"{profile}_conditions", results_root, CONDITION_COLUMNS)[1]
        written["figure"] = plot_accuracy(rows, f"{profile}_conditions", group="condition", results_root=results_root,
                                          title=f"Five conditions per task ({profile})")
    checked = findings(profile, results_root)
    if checked:
        written["findings"] = write_table(checked, f"{profile}_findings", results_root, FINDING_COLUMNS)[1]
    return written
