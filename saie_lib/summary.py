"""The reproduction's tables, figures, paired comparisons and results/README.md, built from run dirs only.

Each experiment folder (results/runs/<profile>/<experiment>/) holds an experiment.json naming the run dir of
each condition; everything here starts from those files, so a summary never mixes in a run it did not name.
Comparisons between two conditions are paired (same examples): an exact two-sided McNemar test on the
examples where exactly one of the two is correct. An unparseable answer counts as wrong throughout.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .artifacts import read_json, read_jsonl, run_file
from .experiments import CONDITIONS, EXPERIMENTS, MARKER, experiment_dir, marker_run_dirs
from .paths import results_dir
from .reporting import inference_rows, ordered_settings, summary_row

ALPHA = 0.05
CONDITION_COLUMNS = ("experiment", "task", "condition", "n", "accuracy", "ci95_low", "ci95_high", "invalid_rate",
                     "rouge1", "rouge2", "rougeL", "steps", "run")
INFERENCE_COLUMNS = ("condition", "setting", "n", "generations_per_example", "accuracy", "ci95_low", "ci95_high",
                     "invalid_rate", "rougeL", "run")


def _root(results_root: str | Path | None) -> Path:
    return Path(results_root) if results_root else results_dir()


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
    from .voting import vote_many

    rows = read_jsonl(run_dir / f"samples.{setting}.jsonl")
    last = max(r["round"] for r in rows)
    final = [r for r in rows if r["round"] == last]
    gold = {r["id"]: r["gold"] for r in final}
    return {i: v.answer is not None and v.answer == gold[i] for i, v in vote_many(final, seed=seed).items()}


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of the discordant pairs against 1/2."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(a_only, b_only) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def min_discordant() -> int:
    """The fewest discordant examples, all one way, that reach p < ALPHA."""
    return next(k for k in range(1, 100) if mcnemar_exact(k, 0) < ALPHA)


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
                   ("none", "base", "conventional fine-tuning beats the untrained model (a sanity check, not a paper claim)"))
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


def plain_statements(checked: list[dict[str, Any]]) -> list[str]:
    """One bullet per claim: where it holds, where it is reversed, where this sample size cannot tell."""
    lines = []
    for claim in dict.fromkeys(f["claim"] for f in checked):
        parts = []
        for f in (f for f in checked if f["claim"] == claim):
            where = f["task"] if f["setting"] == "individual" and f["experiment"] != "multiagent" else \
                f"{f['task']} {f['setting']}"
            parts.append(f"{where}: {f['verdict']} ({f['accuracy_a']:.3f} vs {f['accuracy_b']:.3f}, "
                         f"{f['a_only']}:{f['b_only']} discordant, p = {f['p_value']:.2f})")
        lines.append(f"- **{claim}** — " + "; ".join(parts) + ".")
    return lines


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
    from .plotting import plot_accuracy, plot_inference_conditions, plot_training
    from .reporting import training_log, write_table

    marker = finished_experiments(profile, results_root)[experiment]
    name = f"{profile}_{experiment}"
    if marker["kind"] == "training":
        rows = condition_rows(marker)
        csv_path, md_path = write_table(rows, name, results_root, columns=CONDITION_COLUMNS)
        runs = marker_run_dirs(marker, marker["folder"])
        return {"table": md_path, "csv": csv_path,
                "figure": plot_accuracy(rows, name, group="condition", results_root=results_root,
                                        title=f"{marker['title']}: five conditions ({profile})"),
                "training": plot_training({c: training_log(runs[c]) for c in CONDITIONS[1:]}, f"{name}_training",
                                          results_root=results_root)}
    rows = inference_condition_rows(marker)
    csv_path, md_path = write_table(rows, name, results_root, columns=INFERENCE_COLUMNS)
    return {"table": md_path, "csv": csv_path, "figure": plot_inference_conditions(
        rows, name, title=f"{marker['task']}: inference settings per trained model ({profile})",
        results_root=results_root)}


FINDING_COLUMNS = ("experiment", "task", "setting", "claim", "n", "accuracy_a", "accuracy_b", "a_only", "b_only",
                   "p_value", "verdict")


def _interval(row: dict[str, Any]) -> str:
    return f"{row['accuracy']:.3f} [{row['ci95_low']:.2f}, {row['ci95_high']:.2f}]"


def _pivot(rows: list[dict[str, Any]], key: str, columns: tuple[str, ...] | list[str], value) -> list[str]:
    lines = ["| " + " | ".join((key, *columns)) + " |", "|" + "---|" * (len(columns) + 1)]
    for group in dict.fromkeys(r[key] for r in rows):
        cells = {r["condition"] if key != "condition" else r["setting"]: r for r in rows if r[key] == group}
        lines.append("| " + " | ".join([str(group)] + [value(cells[c]) if c in cells else "" for c in columns]) + " |")
    return lines


def measured_seconds(profile: str, results_root: str | Path | None = None) -> dict[str, float]:
    """experiment -> seconds of its last completed notebook execution, from reproduce_log.jsonl."""
    path = _root(results_root) / "runs" / profile / "reproduce_log.jsonl"
    rows = read_jsonl(path) if path.is_file() else []
    return {r["experiment"]: r["seconds"] for r in rows if r["status"] == "ran"}


def profile_section(profile: str, results_root: str | Path | None = None) -> list[str]:
    from .profiles import load_profile
    from .reporting import to_markdown

    root = _root(results_root)
    experiments = finished_experiments(profile, root)
    outputs = {name: write_experiment_outputs(profile, name, root) for name in experiments}
    spec = load_profile(profile)
    seconds = measured_seconds(profile, root)
    lines = [f"## Profile `{profile}`", "", f"{spec.description}. Profile file: "
             f"[`configs/profiles/{profile}.yaml`](../configs/profiles/{profile}.yaml). Stated budget: "
             f"{spec.expected_wall_time}; memory {spec.expected_memory}.", ""]
    if seconds:
        total = sum(seconds.get(e, 0.0) for e in experiments)
        lines += [f"Measured notebook wall time (last full execution of each, from "
                  f"[`runs/{profile}/reproduce_log.jsonl`](runs/{profile}/reproduce_log.jsonl)): "
                  + ", ".join(f"{e} {seconds[e] / 60:.1f} min" for e in experiments if e in seconds)
                  + f"; {total / 60:.1f} min in all.", ""]
    training = [r for name, m in experiments.items() if m["kind"] == "training" for r in condition_rows(m)]
    if training:
        lines += ["### Accuracy of the five conditions", "",
                  "Flexible parse, unparseable = wrong; 95% Wilson interval in brackets. Same training examples, "
                  "steps, seed and evaluation examples in every column.", ""]
        lines += _pivot(training, "task", CONDITIONS, _interval)
        lines += ["", f"![conditions](figures/{profile}_conditions.png)", "",
                  "Invalid-answer rate and ROUGE-L of the reasoning (answer line removed) against the reference "
                  "rationales (GSM8K solutions, CoS-E for CommonsenseQA; MMLU has none):", ""]
        lines += _pivot(training, "task", CONDITIONS, lambda r: f"inv {r['invalid_rate']:.2f}"
                        + (f" · R-L {r['rougeL']:.3f}" if r["rougeL"] is not None else ""))
        lines.append("")
    for name, marker in experiments.items():
        if marker["kind"] == "inference":
            rows = inference_condition_rows(marker)
            settings = list(dict.fromkeys(r["setting"] for r in rows))
            lines += [f"### Discussion at inference time ({marker['task']})", "",
                      "Final-round accuracy (majority vote of valid answers) of each condition's model, per "
                      "setting:", ""]
            lines += _pivot(rows, "condition", settings, _interval)
            lines += ["", f"![inference](figures/{profile}_{name}.png)", ""]
    checked = findings(profile, root)
    if checked:
        counts = {v: sum(f["verdict"] == v for f in checked) for v in ("holds", "reversed", "not resolved at this n")}
        lines += ["### Do the paper's findings hold at this scale?", "",
                  f"Paired on the same examples (exact McNemar test, two-sided, alpha {ALPHA}). "
                  f"Of {len(checked)} comparisons: {counts['holds']} hold, {counts['reversed']} are reversed, "
                  f"{counts['not resolved at this n']} are not resolved at this sample size. (A claim can only hold "
                  f"when at least {min_discordant()} examples are discordant and all of them favour it.)", ""]
        lines += plain_statements(checked) + [""]
        lines.append(to_markdown(checked, FINDING_COLUMNS))
        rouge = rouge_findings(profile, root)
        if rouge:
            lines += ["Chain-of-thought verbalisation (the paper: better ROUGE against reference rationales). "
                      "ROUGE-L of SAIE vs conventional fine-tuning, descriptive only (no test):", ""]
            lines += [f"- {r['task']}: SAIE {r['rougeL_saie']:.3f} vs none {r['rougeL_none']:.3f} "
                      f"({r['direction']})" for r in rouge]
            lines.append("")
    lines += ["### Run records", ""]
    for name, marker in experiments.items():
        folder = marker["folder"].relative_to(root)
        notebook = EXPERIMENTS[name].notebook
        lines.append(f"- **{marker['title']}** — executed notebook [`{folder}/{notebook}`]({folder}/{notebook}); "
                     + ", ".join(f"[{c}]({folder}/{d.name})" for c, d in marker_run_dirs(marker, marker["folder"]).items())
                     + f"; table [`{outputs[name]['table'].relative_to(root)}`]({outputs[name]['table'].relative_to(root)})")
    return lines + [""]


def write_combined(profile: str, results_root: str | Path | None = None) -> dict[str, Path]:
    """The profile's combined tables (conditions of every task, findings) and the conditions figure."""
    from .plotting import plot_accuracy
    from .reporting import write_table

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


HEADER = """# Results

Generated by `notebooks/90_figures_tables.ipynb` (run by `make reproduce`) from the run dirs under `runs/`
only; do not edit by hand. Every number below is read from a run's `metrics.json` / `samples*.jsonl`, next to
its `config.json` and `env.json` (git sha, packages, device, model source). Profiles and what they stand for:
[method card](../docs/METHOD_CARD.md).

**Noise.** Each profile is one seed. At these sample sizes a 95% interval spans about ±0.15; rerunning with
another `seed` moves accuracies by amounts of that order, so only differences that a paired test resolves are
read as findings. Rerunning with the same seed on the same machine reuses finished runs, and a fresh run on
the same software reproduces greedy outputs up to floating-point nondeterminism of the CPU/GPU kernels.
"""


def build_all(results_root: str | Path | None = None) -> Path:
    """Every profile's tables and figures, then results/README.md."""
    from .artifacts import atomic_write_text

    root = _root(results_root)
    profiles_table(root)
    lines = [HEADER]
    for profile in profiles_with_results(root):
        write_combined(profile, root)
        lines += profile_section(profile, root)
    path = root / "README.md"
    atomic_write_text(path, "\n".join(lines))
    return path


PROFILE_FIELDS = ("model", "backend", "load_in_4bit", "partner", "limit", "warmup_fraction", "rounds", "batch_size",
                  "learning_rate", "lora_r", "lora_alpha", "max_seq_len", "learner_max_new_tokens",
                  "partner_max_new_tokens", "eval_limit", "eval_max_new_tokens", "seed")
INFERENCE_FIELDS = ("task", "settings", "agents", "rounds", "temperature", "limit", "max_new_tokens")


def profiles_table(results_root: str | Path | None = None) -> Path:
    """results/tables/profiles.md: the resolved defaults of every committed profile, side by side (the SAIE
    condition on CommonsenseQA; per-task overrides listed below the table)."""
    from .artifacts import atomic_write_text
    from .profiles import available_profiles, load_profile

    profiles = [load_profile(p) for p in available_profiles()]
    train = {p.name: p.training_config("commonsense_qa", "saie") for p in profiles}
    inference = {p.name: p.inference_config() for p in profiles}
    lines = ["| field | " + " | ".join(p.name for p in profiles) + " |", "|---|" + "---|" * len(profiles)]
    lines += [f"| {f} | " + " | ".join(_plain(getattr(train[p.name], f)) for p in profiles) + " |"
              for f in PROFILE_FIELDS]
    lines += [f"| inference.{f} | " + " | ".join(_plain(getattr(inference[p.name], f)) for p in profiles) + " |"
              for f in INFERENCE_FIELDS]
    lines += ["| expected wall time | " + " | ".join(p.expected_wall_time for p in profiles) + " |",
              "| expected memory | " + " | ".join(p.expected_memory for p in profiles) + " |", ""]
    lines += [f"- `{p.name}` overrides for {task}: {_plain(over)}" for p in profiles for task, over in p.tasks.items()]
    path = _root(results_root) / "tables" / "profiles.md"
    atomic_write_text(path, "Generated from configs/profiles/*.yaml by saie_lib.summary.profiles_table.\n\n"
                      + "\n".join(lines) + "\n")
    return path


def _plain(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return "all" if value is None else str(value).replace("|", "\\|")
