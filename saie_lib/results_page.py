"""results/README.md and results/tables/profiles.md: the reproduction's summary page, rendered from the
tables and paired tests of `saie_lib.summary` (which read run dirs only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .artifacts import REPRODUCE_LOG, atomic_write_text, read_jsonl
from .conditions import CONDITIONS
from .experiments import EXPERIMENTS, marker_run_dirs
from .paths import results_root as _root
from .profiles import available_profiles, load_profile
from .reporting import to_markdown
from .stats import ALPHA, mcnemar_exact, min_discordant, wilson_interval
from .summary import (
    FINDING_COLUMNS,
    condition_rows,
    findings,
    finished_experiments,
    inference_condition_rows,
    profiles_with_results,
    rouge_findings,
    write_combined,
    write_experiment_outputs,
)


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


def _interval(row: dict[str, Any]) -> str:
    strict = f" · strict {row['accuracy_strict']:.3f}" if row.get("accuracy_strict") is not None else ""
    return f"{row['accuracy']:.3f} [{row['ci95_low']:.2f}, {row['ci95_high']:.2f}]{strict}"


def half_width(n: int, share: float = 0.5) -> float:
    """Half the width of the 95% Wilson interval of an accuracy of `share` at n examples (widest at 0.5)."""
    low, high = wilson_interval(round(share * n), n)
    return (high - low) / 2


def noise_line(sizes: list[int]) -> str:
    widths = ", ".join(f"±{half_width(n):.2f} at n = {n}" for n in sorted(set(sizes), reverse=True))
    return (f"Noise at this profile's sample sizes: a 95% Wilson interval around an accuracy of 0.5 spans {widths} "
            "(narrower near 0 or 1).")


def _pivot(rows: list[dict[str, Any]], key: str, columns: tuple[str, ...] | list[str], value) -> list[str]:
    lines = ["| " + " | ".join((key, *columns)) + " |", "|" + "---|" * (len(columns) + 1)]
    for group in dict.fromkeys(r[key] for r in rows):
        cells = {r["condition"] if key != "condition" else r["setting"]: r for r in rows if r[key] == group}
        lines.append("| " + " | ".join([str(group)] + [value(cells[c]) if c in cells else "" for c in columns]) + " |")
    return lines


def measured_seconds(profile: str, results_root: str | Path | None = None) -> dict[str, float]:
    """experiment -> seconds of its last completed notebook execution, from reproduce_log.jsonl."""
    path = _root(results_root) / "runs" / profile / REPRODUCE_LOG
    rows = read_jsonl(path) if path.is_file() else []
    return {r["experiment"]: r["seconds"] for r in rows if r["status"] == "ran"}


def profile_section(profile: str, results_root: str | Path | None = None) -> list[str]:
    root = _root(results_root)
    experiments = finished_experiments(profile, root)
    outputs = {name: write_experiment_outputs(profile, name, root) for name in experiments}
    lines = _header_lines(profile, experiments, root)
    sizes = [r["n"] for name, m in experiments.items() for r in
             (condition_rows(m) if m["kind"] == "training" else inference_condition_rows(m))]
    lines += [noise_line(sizes), ""] if sizes else []
    lines += _training_lines(profile, experiments)
    lines += _inference_lines(profile, experiments)
    lines += _findings_lines(profile, root)
    return lines + _record_lines(experiments, outputs, root) + [""]


def _header_lines(profile: str, experiments: dict[str, Any], root: Path) -> list[str]:
    spec = load_profile(profile)
    seconds = measured_seconds(profile, root)
    lines = [f"## Profile `{profile}`", "", f"{spec.description}. Profile file: "
             f"[`configs/profiles/{profile}.yaml`](../configs/profiles/{profile}.yaml). Stated budget: "
             f"{spec.expected_wall_time}; memory {spec.expected_memory}.", ""]
    if seconds:
        total = sum(seconds.get(e, 0.0) for e in experiments)
        lines += [f"Measured notebook wall time (last full execution of each, from "
                  f"[`runs/{profile}/{REPRODUCE_LOG}`](runs/{profile}/{REPRODUCE_LOG})): "
                  + ", ".join(f"{e} {seconds[e] / 60:.1f} min" for e in experiments if e in seconds)
                  + f"; {total / 60:.1f} min in all.", ""]
    return lines


def _training_lines(profile: str, experiments: dict[str, Any]) -> list[str]:
    training = [r for name, m in experiments.items() if m["kind"] == "training" for r in condition_rows(m)]
    if not training:
        return []
    lines = ["### Accuracy of the five conditions", "",
             "Flexible parse, unparseable = wrong; 95% Wilson interval in brackets; then the strict parse's "
             "accuracy (only \"The answer is X.\" / \"#### N\"). Same training examples, steps, seed and "
             "evaluation examples in every column.", ""]
    lines += _pivot(training, "task", CONDITIONS, _interval)
    lines += ["", f"![conditions](figures/{profile}_conditions.png)", "",
              "Invalid-answer rate (flexible, strict in brackets) and ROUGE-L of the reasoning (answer line removed) "
              "against the reference "
              "rationales (GSM8K solutions, CoS-E for CommonsenseQA; MMLU has none):", ""]
    lines += _pivot(training, "task", CONDITIONS, lambda r: f"inv {r['invalid_rate']:.2f} "
                    f"({r['invalid_rate_strict']:.2f})"
                    + (f" · R-L {r['rougeL']:.3f}" if r["rougeL"] is not None else ""))
    return lines + [""]


def _inference_lines(profile: str, experiments: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for name, marker in experiments.items():
        if marker["kind"] != "inference":
            continue
        rows = inference_condition_rows(marker)
        settings = list(dict.fromkeys(r["setting"] for r in rows))
        lines += [f"### Discussion at inference time ({marker['task']})", "",
                  "Final-round accuracy (majority vote of valid answers) of each condition's model, per "
                  "setting:", ""]
        lines += _pivot(rows, "condition", settings, _interval)
        lines += ["", f"![inference](figures/{profile}_{name}.png)", ""]
    return lines


def _findings_lines(profile: str, root: Path) -> list[str]:
    checked = findings(profile, root)
    if not checked:
        return []
    counts = {v: sum(f["verdict"] == v for f in checked) for v in ("holds", "reversed", "not resolved at this n")}
    lines = ["### Do the paper's findings hold at this scale?", "",
             f"Paired on the same examples (exact McNemar test, two-sided, alpha {ALPHA}). "
             f"Of {len(checked)} comparisons: {counts['holds']} hold, {counts['reversed']} are reversed, "
             f"{counts['not resolved at this n']} are not resolved at this sample size. (The fewest discordant "
             f"examples that can reach p < {ALPHA} is {min_discordant()}, all favouring one side; more, split "
             f"unevenly, can too: 8:1 gives p = {mcnemar_exact(8, 1):.3f}.)", ""]
    lines += plain_statements(checked) + [""]
    lines.append(to_markdown(checked, FINDING_COLUMNS))
    rouge = rouge_findings(profile, root)
    if rouge:
        lines += ["Chain-of-thought verbalisation (the paper: better ROUGE against reference rationales). "
                  "ROUGE-L of SAIE vs conventional fine-tuning, descriptive only (no test):", ""]
        lines += [f"- {r['task']}: SAIE {r['rougeL_saie']:.3f} vs none {r['rougeL_none']:.3f} "
                  f"({r['direction']})" for r in rouge]
        lines.append("")
    return lines


def _record_lines(experiments: dict[str, Any], outputs: dict[str, Any], root: Path) -> list[str]:
    lines = ["### Run records", ""]
    for name, marker in experiments.items():
        folder = marker["folder"].relative_to(root)
        notebook = EXPERIMENTS[name].notebook
        runs = ", ".join(f"[{c}]({folder}/{d.name})" for c, d in marker_run_dirs(marker, marker["folder"]).items())
        table = outputs[name]["table"].relative_to(root)
        lines.append(f"- **{marker['title']}** — executed notebook [`{folder}/{notebook}`]({folder}/{notebook}); "
                     f"{runs}; table [`{table}`]({table})")
    return lines


HEADER = """# Results

Generated by `notebooks/90_figures_tables.ipynb` (run by `make reproduce`) from the run dirs under `runs/`
only; do not edit by hand. Every number below is read from a run's `metrics.json` / `samples*.jsonl`, next to
its `config.json` and `env.json` (git sha, packages, device, model source). Profiles and what they stand for:
[method card](../docs/METHOD_CARD.md).

**Noise.** Each profile is one seed. Each profile's section states how wide a 95% interval is at its sample
sizes; rerunning with another `seed` moves accuracies by amounts of that order, so only differences that a
paired test resolves are read as findings. Rerunning with the same seed on the same machine reuses finished
runs, and a fresh run on the same software reproduces greedy outputs up to floating-point nondeterminism of
the CPU/GPU kernels.
"""


def build_all(results_root: str | Path | None = None) -> Path:
    """Every profile's tables and figures, then results/README.md."""

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
    atomic_write_text(path, "Generated from configs/profiles/*.yaml by saie_lib.results_page.profiles_table.\n\n"
                      + "\n".join(lines) + "\n")
    return path


def _plain(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return "all" if value is None else str(value).replace("|", "\\|")
