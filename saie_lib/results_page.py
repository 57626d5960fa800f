"""results/README.md and results/tables/profiles.md: the reproduction's summary page, rendered from the
tables and paired tests of `saie_lib.summary` (which read run dirs only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import robustness_report, stance_report
from .artifacts import REPRODUCE_LOG, atomic_write_text, read_jsonl
from .conditions import ALL_CONDITIONS
from .experiments import EXPERIMENTS, marker_run_dirs, marker_seed_run_dirs
from .inference_report import tie_break_lines
from .page_overview import memory_line, overview_lines
from .paths import figures_dir
from .paths import results_root as _root
from .profiles import available_profiles, load_profile
from .reporting import discordance_note, mde_text, noise_line, power_line, to_markdown
from .run_warnings import page_lines
from .stats import ALPHA, ASSUMED_DISCORDANCE, POWER
from .summary import (
    FINDING_COLUMNS,
    by_condition,
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
            split = "higher:lower examples" if f.get("measure") == "ROUGE-L" else "discordant"
            parts.append(f"{where}: {f['verdict']} ({f['accuracy_a']:.3f} vs {f['accuracy_b']:.3f}, "
                         f"{f['a_only']}:{f['b_only']} {split}, p = {f['p_value']:.2f}, "
                         f"Holm p = {f.get('p_holm', f['p_value']):.2f})")
        lines.append(f"- **{claim}** — " + "; ".join(parts) + ".")
    return lines


def _interval(row: dict[str, Any]) -> str:
    strict = f" · strict {row['accuracy_strict']:.3f}" if row.get("accuracy_strict") is not None else ""
    return f"{row['accuracy']:.3f} [{row['ci95_low']:.2f}, {row['ci95_high']:.2f}]{strict}"


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
    lines = _header_lines(profile, experiments, root) + page_lines(  # the warnings of degenerate runs
        d for m in experiments.values() for r in marker_seed_run_dirs(m, m["folder"]).values() for d in r.values())
    # the robustness experiment states its own power, at its own sample sizes (robustness_report.power_lines)
    sizes = [r["n"] for name, m in experiments.items() if m["kind"] != robustness_report.KIND
             for r in (condition_rows(m) if m["kind"] == "training" else inference_condition_rows(m))]
    lines += [noise_line(sizes), "", power_line(sizes, findings(profile, root)), ""] if sizes else []
    lines += _training_lines(profile, experiments, root)
    lines += _inference_lines(profile, experiments)
    lines += robustness_report.page_lines(profile, experiments)
    lines += _findings_lines(profile, root)
    return lines + _record_lines(experiments, outputs, root) + [""]


def _header_lines(profile: str, experiments: dict[str, Any], root: Path) -> list[str]:
    spec = load_profile(profile)
    seconds = measured_seconds(profile, root)
    lines = [f"## Profile `{profile}`", "", f"{spec.description}. Profile file: "
             f"[`configs/profiles/{profile}.yaml`](../configs/profiles/{profile}.yaml). Stated budget: "
             f"{spec.expected_wall_time}; memory {spec.expected_memory}.", "", seeds_line(experiments), ""]
    if seconds:
        total = sum(seconds.get(e, 0.0) for e in experiments)
        lines += [f"Measured notebook wall time of each experiment's last execution that ran anything (runs it "
                  f"found finished were reused, so an experiment extended by new conditions shows their time "
                  f"only), from [`runs/{profile}/{REPRODUCE_LOG}`](runs/{profile}/{REPRODUCE_LOG}): "
                  + ", ".join(f"{e} {seconds[e] / 60:.1f} min" for e in experiments if e in seconds)
                  + f"; {total / 60:.1f} min in all.", ""]
    runs = [d for m in experiments.values() for seed in marker_seed_run_dirs(m, m["folder"]).values()
            for d in seed.values()]
    memory = memory_line(profile, runs, root / "bench", spec.training_config("gsm8k", "saie").gradient_checkpointing)
    return lines + ([memory, ""] if memory else [])


def seeds_line(experiments: dict[str, Any]) -> str:
    """How many seeds the recorded training experiments ran, read from their markers."""
    seeds = sorted({seed for m in experiments.values() if m["kind"] == "training" for seed in
                    next(iter(by_condition(m).values()))})
    if not seeds:
        return "No training experiment has finished."
    if len(seeds) == 1:
        return (f"Seeds: one ({seeds[0]}), as the profile's `seeds` sets. Another seed draws other training and "
                "evaluation examples and other training noise; how far that moves the results is not measured here.")
    return (f"Seeds: {len(seeds)} ({', '.join(map(str, seeds))}); each draws its own training and evaluation "
            "examples and trains every condition again. Accuracies and paired tests pool every seed's examples "
            "(each paired within its seed).")


def _training_lines(profile: str, experiments: dict[str, Any], root: Path) -> list[str]:
    training = [r for name, m in experiments.items() if m["kind"] == "training" for r in condition_rows(m)]
    if not training:
        return []
    lines = ["### Accuracy per condition", "",
             "Flexible parse, unparseable = wrong; 95% Wilson interval in brackets; then the strict parse's "
             "accuracy (only \"The answer is X.\" / \"#### N\"). Within a seed, every column has the same "
             "training examples, steps and evaluation examples.", ""]
    present = [c for c in ALL_CONDITIONS if any(r["condition"] == c for r in training)]  # older runs lack some
    lines += _pivot(training, "task", present, _interval)
    lines += ["", f"![conditions](figures/{profile}_conditions.png)", ""]
    if (figures_dir(root) / f"{profile}_letters.png").is_file():
        lines += ["Which letters each condition answers on the multiple-choice tasks (flexible parse; the gold "
                  "letters last), where a condition that collapses onto one letter shows as one tall segment:", "",
                  f"![letters](figures/{profile}_letters.png)", ""]
    lines += [
              "Invalid-answer rate (flexible, strict in brackets) and ROUGE-L of the reasoning (answer line removed) "
              "against the reference "
              "rationales (GSM8K solutions, CoS-E for CommonsenseQA; MMLU has none):", ""]
    lines += _pivot(training, "task", present, lambda r: f"inv {r['invalid_rate']:.2f} "
                    f"({r['invalid_rate_strict']:.2f})"
                    + (f" · R-L {r['rougeL']:.3f}" if r["rougeL"] is not None else ""))
    return lines + [""] + stance_report.fidelity_lines(training)


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
        lines += ["", f"![inference](figures/{profile}_{name}.png)", ""] + tie_break_lines(marker)
    return lines


def _findings_lines(profile: str, root: Path) -> list[str]:
    checked = findings(profile, root)
    if not checked:
        return []
    counts = {v: sum(f["verdict"] == v for f in checked) for v in ("holds", "reversed", "not resolved at this n")}
    lines = ["### Do the paper's findings hold at this scale?", "",
             f"Paired on the same examples (exact McNemar test on accuracy, Wilcoxon signed-rank on per-example "
             f"ROUGE-L; two-sided), pooled over seeds; the verdict reads the Holm–Bonferroni adjusted p-value over "
             f"the claims of each experiment at alpha {ALPHA}. Of {len(checked)} comparisons: {counts['holds']} "
             f"hold, {counts['reversed']} are reversed, {counts['not resolved at this n']} are not resolved at this "
             f"sample size. {discordance_note(checked)}", ""]
    lines += plain_statements(checked) + robustness_findings(profile, root) + [""]
    lines.append(to_markdown(checked, FINDING_COLUMNS))
    return lines + rouge_lines(rouge_findings(profile, root))


def robustness_findings(profile: str, root: Path) -> list[str]:
    """The robustness experiment's resolved paired tests, each a sentence (our experiment, not a paper claim;
    Holm over its own tests)."""
    lines = []
    for marker in finished_experiments(profile, root).values():
        if marker["kind"] == robustness_report.KIND:
            checked = robustness_report.tests(marker)
            resolved = [t for t in checked if t["verdict"] != "not resolved at this n"]
            lines.append(f"- **robustness to remarks (our experiment; Holm over its own {len(checked)} tests)** — "
                         f"{len(resolved)} resolved" + (": " + " ".join(robustness_report.resolved_sentence(t)
                                                                       for t in resolved) if resolved else "."))
    return lines


def resolved_overview(profiles: list[str], root: Path) -> list[str]:
    """Near the top: per profile, how many paired comparisons resolved, and each resolved one in a sentence."""
    lines = ["**What these records resolve.** Every paired comparison that a test resolves after the Holm–Bonferroni "
             "correction, per profile (the sections below give every test, resolved or not). A test pairs the "
             "evaluation items of one trained model per condition and seed: with one training seed it cannot say "
             "whether a difference would survive another draw of training examples and training noise.", ""]
    for profile in profiles:
        checked = findings(profile, root)
        resolved = [f for f in checked if f["verdict"] != "not resolved at this n"]
        parts = [f"{len(resolved)} of {len(checked)} comparisons of the paper's claims"] + [
            f"{f['claim']} — {f['task']} {f['setting']}: {f['verdict']}" for f in resolved]
        lines.append(f"- `{profile}`: " + "; ".join(parts) + ".")
        lines += [f"  {line}" for line in robustness_findings(profile, root)]
    return lines + [""]


def rouge_lines(rouge: list[dict[str, Any]]) -> list[str]:
    if not rouge:
        return []
    lines = ["Chain-of-thought verbalisation (the paper: better ROUGE against reference rationales). Mean ROUGE-L "
             "of the reasoning, SAIE vs conventional fine-tuning, and the untrained model for reference:", ""]
    for r in rouge:
        how = "paired test in the table above" if r["tested"] else \
            "descriptive only: these runs store no per-example ROUGE, so no paired test"
        lines.append(f"- {r['task']}: SAIE {r['rougeL_saie']:.3f} vs none {r['rougeL_none']:.3f} ({r['direction']}; "
                     f"{how}); untrained {r['rougeL_base']:.3f}"
                     + (", above both" if r["rougeL_base"] > max(r["rougeL_saie"], r["rougeL_none"]) else ""))
    return lines + [""]


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
"""
NOISE = """**Noise.** Each profile's section states its seeds, how wide a 95% interval is at its sample sizes and the
smallest difference its paired tests can detect; only differences that a paired test resolves, after the
Holm–Bonferroni correction over the claims of an experiment, are read as findings. Rerunning with the same
seeds on the same machine reuses finished runs, and a fresh run on the same software reproduces greedy outputs
up to floating-point nondeterminism of the CPU/GPU kernels.
"""


def build_all(results_root: str | Path | None = None) -> Path:
    """Every profile's tables and figures, then results/README.md."""

    root = _root(results_root)
    profiles_table(root)
    profiles = profiles_with_results(root)
    lines = [HEADER, *overview_lines(root), *resolved_overview(profiles, root), "## Details", "", NOISE]
    for profile in profiles:
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
    lines += ["| seeds | " + " | ".join(f"{len(p.seeds)} ({_plain(list(p.seeds))})" for p in profiles) + " |",
              f"| MDE at {POWER:.0%} power, training experiments | "
              + " | ".join(_mde(train[p.name].eval_limit, len(p.seeds)) for p in profiles) + " |",
              f"| MDE at {POWER:.0%} power, inference | "
              + " | ".join(_mde(inference[p.name].limit, 1) for p in profiles) + " |"]
    lines += ["| expected wall time | " + " | ".join(p.expected_wall_time for p in profiles) + " |",
              "| expected memory | " + " | ".join(p.expected_memory for p in profiles) + " |", ""]
    lines += [f"- `{p.name}` overrides for {task}: {_plain(over)}" for p in profiles for task, over in p.tasks.items()]
    lines += ["", f"MDE: the smallest accuracy difference between two conditions that a paired test (two-sided, "
              f"alpha {ALPHA}) detects with {POWER:.0%} power on the evaluation examples of every seed, if the two "
              f"disagree in correctness on {ASSUMED_DISCORDANCE:.0%} of them (normal approximation of McNemar's "
              "test, `saie_lib.stats.min_detectable_difference`)."]
    path = _root(results_root) / "tables" / "profiles.md"
    atomic_write_text(path, "Generated from configs/profiles/*.yaml by saie_lib.results_page.profiles_table.\n\n"
                      + "\n".join(lines) + "\n")
    return path


def _mde(limit: int | None, seeds: int) -> str:
    """The minimum detectable accuracy difference of a paired comparison on limit x seeds examples."""
    if limit is None:
        return "whole split: see the results page"
    return f"{mde_text(limit * seeds)} (n = {limit * seeds})"


def _plain(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return "all" if value is None else str(value).replace("|", "\\|")
