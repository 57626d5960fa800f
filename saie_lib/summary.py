"""The reproduction's tables, figures, paired comparisons and results/README.md, built from run dirs only.

Each experiment folder (results/runs/<profile>/<experiment>/) holds an experiment.json naming the run dir of
each condition; everything here starts from those files, so a summary never mixes in a run it did not name.
Comparisons between two conditions are paired (same examples): an exact two-sided McNemar test on the
examples where exactly one of the two is correct, pooled over the profile's seeds (each seed's examples paired
within that seed), with a Holm–Bonferroni correction over the claims of one experiment. The chain-of-thought
claim is a paired Wilcoxon signed-rank test of per-example ROUGE-L where the runs store it. An unparseable
answer counts as wrong throughout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import robustness_report
from .artifacts import read_json, read_jsonl, run_file, setting_samples
from .experiments import EXPERIMENTS, MARKER, experiment_dir, marker_run_dirs, marker_seed_run_dirs
from .paths import results_root as _root
from .plotting import plot_accuracy, plot_inference_conditions, plot_letter_distribution, plot_training
from .reporting import inference_rows, ordered_settings, pooled_summary_row, training_log, write_table
from .stance import pooled_fidelity
from .stats import ALPHA, holm, mcnemar_exact, wilcoxon_signed_rank
from .tasks import get_task
from .voting import vote_many

CONDITION_COLUMNS = ("experiment", "task", "condition", "seeds", "n", "accuracy", "ci95_low", "ci95_high",
                     "per_seed", "invalid_rate", "accuracy_strict", "invalid_rate_strict", "rouge1", "rouge2",
                     "rougeL", "stance_fidelity", "stance_first_try", "stance_retries", "stance_remarks",
                     "stance_no_answer", "learner_turns", "learner_turns_no_answer", "steps", "run")
INFERENCE_COLUMNS = ("condition", "setting", "n", "generations_per_example", "accuracy", "ci95_low", "ci95_high",
                     "invalid_rate", "accuracy_strict", "invalid_rate_strict", "rougeL", "run")


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

def by_condition(marker: dict[str, Any]) -> dict[str, dict[int, Path]]:
    """condition -> {seed -> run dir} of an experiment, in the canonical condition order."""
    seeds = marker_seed_run_dirs(marker, marker["folder"])
    return {c: {seed: runs[c] for seed, runs in seeds.items()} for c in next(iter(seeds.values()))}


def condition_rows(marker: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per condition of a training experiment, pooled over its seeds: accuracy, CI, invalid rate, ROUGE
    of the reasoning (mean over every scored example of every seed)."""
    rows = []
    for condition, runs in by_condition(marker).items():
        metrics = [read_json(run_file(d, "metrics")) for d in runs.values()]
        rouge = {t: _pooled_rouge(metrics, t) for t in ("rouge1", "rouge2", "rougeL")}
        rows.append({**pooled_summary_row(list(runs.values())), "experiment": marker["experiment"],
                     "condition": condition, **rouge, **pooled_fidelity(metrics), **_pooled_turns(metrics),
                     "steps": metrics[0].get("steps", 0)})
    return rows


def _pooled_turns(metrics: list[dict[str, Any]]) -> dict[str, int | None]:
    """The learner's discussion turns over all seeds, and those that stated no answer; None before they were
    counted (runs not re-checked) or where there was no discussion."""
    found = [m["learner_turns"] for m in metrics if (m.get("learner_turns") or {}).get("turns")]
    if not found:
        return {"learner_turns": None, "learner_turns_no_answer": None}
    return {"learner_turns": sum(t["turns"] for t in found),
            "learner_turns_no_answer": sum(t["no_answer"] for t in found)}


def _pooled_rouge(metrics: list[dict[str, Any]], kind: str) -> float | None:
    scored = [(m["rouge"][kind], m["rouge"]["n"]) for m in metrics if (m.get("rouge") or {}).get(kind) is not None]
    total = sum(n for _, n in scored)
    return sum(v * n for v, n in scored) / total if total else None


def _correct_by_id(runs: dict[int, Path]) -> dict[tuple[int, str], bool]:
    """(seed, example id) -> correct, over every seed's run of one condition."""
    return {(seed, r["id"]): bool(r["correct"]) for seed, d in runs.items()
            for r in read_jsonl(run_file(d, "samples"))}


def _rouge_by_id(runs: dict[int, Path]) -> dict[tuple[int, str], float] | None:
    """(seed, example id) -> ROUGE-L of the reasoning, or None when a run stores no per-example ROUGE."""
    found = {}
    for seed, d in runs.items():
        per_example = (read_json(run_file(d, "metrics")).get("rouge") or {}).get("per_example")
        if per_example is None:
            return None
        found.update({(seed, i): s["rougeL"] for i, s in per_example.items()})
    return found


def _final_vote_correct(runs: dict[int, Path], setting: str) -> dict[tuple[int, str], bool]:
    correct = {}
    for seed, run_dir in runs.items():
        rows = read_jsonl(setting_samples(run_dir, setting))
        last = max(r["round"] for r in rows)
        final = [r for r in rows if r["round"] == last]
        gold = {r["id"]: r["gold"] for r in final}
        vote_seed = read_json(run_file(run_dir, "metrics"))["seed"]
        correct.update({(seed, i): v.answer is not None and v.answer == gold[i]
                        for i, v in vote_many(final, seed=vote_seed).items()})
    return correct


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
    """From the Holm-adjusted p-value when there is one (a claim among an experiment's several), else the raw."""
    better = comparison["accuracy_a"] - comparison["accuracy_b"]
    if comparison.get("p_holm", comparison["p_value"]) < ALPHA:
        return "holds" if better > 0 else "reversed"
    return "not resolved at this n"


# ---------------------------------------------------------------- inference experiment

def inference_condition_rows(marker: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for condition, runs in by_condition(marker).items():
        if len(runs) != 1:
            raise ValueError(f"the inference experiment runs one seed; its marker names {len(runs)}")
        for row in inference_rows(list(runs.values())):
            rows.append({**row, "condition": condition})
    return rows


# ---------------------------------------------------------------- the paper's findings, checked

TRAINING_CLAIMS = (("saie", "none", "SAIE beats conventional fine-tuning"),
                   ("saie", "supportive", "SAIE beats supportive-only discussion"),
                   ("saie", "adversarial", "SAIE beats adversarial-only discussion"),
                   ("saie", "placebo", "SAIE beats a placebo discussion with no stance (our control)"),
                   ("saie_mixed", "none", "SAIE with the mixed target beats conventional fine-tuning (our control)"),
                   ("saie_scripted", "none",
                    "SAIE with the scripted partner beats conventional fine-tuning (our control)"),
                   ("saie_scripted", "supportive_scripted",
                    "SAIE beats supportive-only discussion, both with the scripted partner (our control)"),
                   ("saie_scripted", "adversarial_scripted",
                    "SAIE beats adversarial-only discussion, both with the scripted partner (our control)"),
                   ("saie_scripted", "saie", "SAIE with the scripted partner beats SAIE with the model partner "
                    "(our control: does a stance that holds matter?)"),
                   ("none", "base",
                    "conventional fine-tuning beats the untrained model (a sanity check, not a paper claim)"))
INFERENCE_CLAIMS = (("saie", "none", "the SAIE model beats the conventionally fine-tuned one"),
                    ("saie", "base", "the SAIE model beats the untrained model"))


ROUGE_CLAIM = ("saie", "none", "SAIE's reasoning is closer to the reference rationales (ROUGE-L) than "
                                "conventional fine-tuning's")


def findings(profile: str, results_root: str | Path | None = None) -> list[dict[str, Any]]:
    """Each paper claim this profile's runs can test, with the paired comparison pooled over seeds, the
    Holm–Bonferroni adjusted p-value over the claims of its experiment (`p_holm`) and a verdict read from it."""
    results = []
    for name, marker in finished_experiments(profile, results_root).items():
        if marker["kind"] == robustness_report.KIND:  # its own tests: saie_lib.robustness_report
            continue
        runs = by_condition(marker)
        where = {"experiment": name, "task": marker["task"], "seeds": len(runs["base"])}
        family = []
        if marker["kind"] == "training":
            for a, b, claim in [c for c in TRAINING_CLAIMS if c[0] in runs and c[1] in runs]:  # older runs lack some
                comparison = paired(_correct_by_id(runs[a]), _correct_by_id(runs[b]))
                family.append({**where, "setting": "individual", "measure": "accuracy", "claim": claim, "a": a,
                               "b": b, **comparison})
            family += _rouge_claim(runs, where)
        elif marker["kind"] == "inference":
            first = next(iter(runs["base"].values()))
            for setting in [s for s, _ in ordered_settings(read_json(run_file(first, "metrics")))]:
                for a, b, claim in INFERENCE_CLAIMS:
                    comparison = paired(_final_vote_correct(runs[a], setting), _final_vote_correct(runs[b], setting))
                    family.append({**where, "setting": setting, "measure": "accuracy", "claim": claim, "a": a,
                                   "b": b, **comparison})
        for row, adjusted in zip(family, holm([f["p_value"] for f in family])):
            row["p_holm"] = adjusted
            row["verdict"] = verdict(row)
        results += family
    return results


def _rouge_claim(runs: dict[str, dict[int, Path]], where: dict[str, Any]) -> list[dict[str, Any]]:
    """The chain-of-thought claim as a paired test (Wilcoxon signed-rank on per-example ROUGE-L over the examples
    both conditions have a reference for), when both conditions' runs store per-example ROUGE; else nothing."""
    a, b, claim = ROUGE_CLAIM
    scores_a, scores_b = _rouge_by_id(runs[a]), _rouge_by_id(runs[b])
    if not scores_a or not scores_b:
        return []
    if set(scores_a) != set(scores_b):
        raise ValueError(f"per-example ROUGE of {a} and {b} covers different examples; "
                         f"{len(set(scores_a) ^ set(scores_b))} differ")
    keys = sorted(scores_a)
    test = wilcoxon_signed_rank([scores_a[k] for k in keys], [scores_b[k] for k in keys])
    return [{**where, "setting": "individual", "measure": "ROUGE-L", "claim": claim, "a": a, "b": b,
             "n": len(keys), "accuracy_a": sum(scores_a.values()) / len(keys),
             "accuracy_b": sum(scores_b.values()) / len(keys), "a_only": test["a_higher"],
             "b_only": test["b_higher"], "p_value": test["p_value"]}]


def rouge_findings(profile: str, results_root: str | Path | None = None) -> list[dict[str, Any]]:
    """Mean ROUGE-L of the SAIE model's reasoning, conventional fine-tuning's and the untrained model's, where
    the task has reference rationales, and whether the runs store per-example ROUGE (then `findings` holds the
    paired test of SAIE vs conventional fine-tuning; otherwise this is descriptive only)."""
    results = []
    for name, marker in finished_experiments(profile, results_root).items():
        if marker["kind"] != "training":
            continue
        rows = {r["condition"]: r for r in condition_rows(marker)}
        if rows["saie"]["rougeL"] is None or rows["none"]["rougeL"] is None:
            continue
        delta = rows["saie"]["rougeL"] - rows["none"]["rougeL"]
        runs = by_condition(marker)
        results.append({"experiment": name, "task": marker["task"], "rougeL_saie": rows["saie"]["rougeL"],
                        "rougeL_none": rows["none"]["rougeL"], "rougeL_base": rows["base"]["rougeL"],
                        "difference": delta, "direction": "higher" if delta > 0 else "lower" if delta < 0 else "equal",
                        "tested": bool(_rouge_by_id(runs["saie"]) and _rouge_by_id(runs["none"]))})
    return results


def letter_distributions(profile: str, results_root: str | Path | None = None) -> dict[str, dict[str, dict]]:
    """task -> {condition -> {letter or "invalid" -> count}} of the flexible parse's predicted letters over every
    seed's evaluation samples, and a "gold" entry with the gold letters: for the multiple-choice tasks, whose
    conditions may differ only by collapsing onto one letter."""
    found: dict[str, dict[str, dict]] = {}
    for marker in finished_experiments(profile, results_root).values():
        labels = get_task(marker["task"]).labels if marker["kind"] == "training" else None
        if not labels:
            continue
        table: dict[str, dict] = {}
        for condition, runs in by_condition(marker).items():
            samples = [r for d in runs.values() for r in read_jsonl(run_file(d, "samples"))]
            table[condition] = _count_letters([r["parsed"] for r in samples], labels)
            table.setdefault("gold", _count_letters([r["gold"] for r in samples], labels))
        found[marker["task"]] = {c: table[c] for c in [c for c in table if c != "gold"] + ["gold"]}
    return found


def _count_letters(values: list[str | None], labels: tuple[str, ...] | list[str]) -> dict[str, int]:
    unknown = sorted({v for v in values if v is not None and v not in labels})
    if unknown:
        raise ValueError(f"predicted or gold letters {unknown} are not among the task's labels {list(labels)}")
    return {**{letter: values.count(letter) for letter in labels}, "invalid": values.count(None)}


# ---------------------------------------------------------------- outputs

def write_experiment_outputs(profile: str, experiment: str, results_root: str | Path | None = None) -> dict[str, Path]:
    """The table and figures of one finished experiment: results/tables|figures/<profile>_<experiment>*."""
    marker = finished_experiments(profile, results_root)[experiment]
    name = f"{profile}_{experiment}"
    if marker["kind"] == robustness_report.KIND:
        return robustness_report.write_outputs(profile, marker, results_root)
    if marker["kind"] == "training":
        rows = condition_rows(marker)
        csv_path, md_path = write_table(rows, name, results_root, columns=CONDITION_COLUMNS)
        runs = marker_run_dirs(marker, marker["folder"])
        return {"table": md_path, "csv": csv_path,
                "figure": plot_accuracy(rows, name, group="condition", results_root=results_root,
                                        title=f"{profile}: {marker['title']}, {len(rows)} conditions"),
                "training": plot_training({c: training_log(d) for c, d in runs.items() if c != "base"},
                                          f"{name}_training", results_root=results_root,
                                          title=f"{profile}: {marker['title']}, training"
                                          + (" (first seed)" if len(marker.get("seeds") or {}) > 1 else ""))}
    rows = inference_condition_rows(marker)
    csv_path, md_path = write_table(rows, name, results_root, columns=INFERENCE_COLUMNS)
    return {"table": md_path, "csv": csv_path, "figure": plot_inference_conditions(
        rows, name, title=f"{marker['task']}: inference settings per trained model ({profile})",
        results_root=results_root)}


FINDING_COLUMNS = ("experiment", "task", "setting", "measure", "claim", "seeds", "n", "accuracy_a", "accuracy_b",
                   "a_only", "b_only", "p_value", "p_holm", "verdict")


def write_combined(profile: str, results_root: str | Path | None = None) -> dict[str, Path]:
    """The profile's combined tables (conditions of every task, findings), the conditions figure and the figure of
    predicted letters per condition (multiple-choice tasks)."""
    experiments = finished_experiments(profile, results_root)
    rows = [r for m in experiments.values() if m["kind"] == "training" for r in condition_rows(m)]
    written: dict[str, Path] = {}
    if rows:
        written["conditions"] = write_table(rows, f"{profile}_conditions", results_root, CONDITION_COLUMNS)[1]
        conditions = len({r["condition"] for r in rows})
        written["figure"] = plot_accuracy(rows, f"{profile}_conditions", group="condition", results_root=results_root,
                                          title=f"{profile}: accuracy of {conditions} conditions per task")
    letters = letter_distributions(profile, results_root)
    if letters:
        written["letters"] = plot_letter_distribution(letters, f"{profile}_letters", results_root=results_root,
                                                      title=f"Predicted letters per condition ({profile})")
    checked = findings(profile, results_root)
    if checked:
        written["findings"] = write_table(checked, f"{profile}_findings", results_root, FINDING_COLUMNS)[1]
    return written
