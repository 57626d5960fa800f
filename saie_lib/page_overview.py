"""The results page's first screen: what the committed runs show, one bullet per profile, computed from the same
paired tests, robustness rows and run records as the sections below it (saie_lib.results_page), and the memory
a profile's runs need, stated once and consistently (the committed runs' peak, and a recorded re-run's)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from . import robustness_report
from .artifacts import read_json, run_file
from .experiments import marker_run_dirs
from .model_sources import weights_description
from .reporting import mde_text
from .resources import allocator_note, largest_recorded_peak
from .summary import condition_rows, findings, finished_experiments, profiles_with_results

UNRESOLVED = "not resolved at this n"


def overview_lines(root: Path) -> list[str]:
    """## What this shows: per profile, its weights and sizes, the count of the paper's claims that hold, are
    reversed or are not resolved, the robustness result, then one sentence over all profiles."""
    profiles = profiles_with_results(root)
    if not profiles:
        return []
    lines = ["## What this shows", ""]
    checked_all = []
    for profile in profiles:
        experiments = finished_experiments(profile, root)
        checked = findings(profile, root)
        checked_all += checked
        lines.append(f"- **`{profile}`** — {_scale(experiments)}. {_claims(checked)}"
                     + "".join(f" {s}" for s in _robustness(experiments)))
    resolved = [f for f in checked_all if f["verdict"] != UNRESOLVED]
    lines += ["", _verdict(resolved, checked_all), ""]
    return lines


def weights_used(experiments: dict[str, Any]) -> list[str]:
    """The weights the profile's runs recorded (`model_source` of each run's metrics.json, with the digest or
    revision in `weights` where a run records one), in words."""
    found = {}
    for marker in experiments.values():
        for run in marker_run_dirs(marker, marker["folder"]).values():
            metrics = read_json(run_file(run, "metrics"))
            if metrics.get("model_source"):
                found[(metrics["model"], metrics["model_source"], metrics.get("weights"))] = None
    return [weights_description(model, source, weights) for model, source, weights in found]


def _scale(experiments: dict[str, Any]) -> str:
    sizes = sorted({r["n"] for m in experiments.values() if m["kind"] == "training" for r in condition_rows(m)})
    weights = " and ".join(weights_used(experiments)) or "weights not recorded"
    return weights + (f", {'/'.join(map(str, sizes))} evaluation examples per task and condition" if sizes else "")


def _claims(checked: list[dict[str, Any]]) -> str:
    if not checked:
        return "No paired test of the paper's claims yet."
    holds = sum(f["verdict"] == "holds" for f in checked)
    reversed_ = sum(f["verdict"] == "reversed" for f in checked)
    ns = sorted({f["n"] for f in checked if f["measure"] == "accuracy"}, reverse=True)
    return (f"Of {len(checked)} paired tests of the paper's claims, {holds} hold, {reversed_} are reversed and "
            f"{len(checked) - holds - reversed_} are not resolved at this sample size (smallest detectable "
            "accuracy difference " + ", ".join(f"{mde_text(n)} at n = {n}" for n in ns) + ").")


def _robustness(experiments: dict[str, Any]) -> list[str]:
    sentences = []
    for marker in (m for m in experiments.values() if m["kind"] == robustness_report.KIND):
        table, tests = robustness_report.rows(marker), robustness_report.tests(marker)
        resolved = sum(t["verdict"] != UNRESOLVED for t in tests)
        for task in dict.fromkeys(r["task"] for r in table):
            rows = [r for r in table
                    if r["task"] == task and r["remark"] == "disagree" and r["kept_correct"] is not None]
            if not rows:
                continue
            kept = sorted((r["kept_correct"], r["condition"]) for r in rows)
            saie = next((r["kept_correct"] for r in rows if r["condition"] == "saie"), None)
            size = f"n = {rows[0]['n']}" if "seeds" not in rows[0] else \
                f"{rows[0]['n'] // rows[0]['seeds']} items × {rows[0]['seeds']} seeds"  # pooled over seeds
            sentences.append(
                f"Robustness ({task}, {size}): after a scripted disagreeing remark the models kept a "
                f"correct first answer in {kept[0][0]:.0%} ({kept[0][1]}) to {kept[-1][0]:.0%} ({kept[-1][1]}) of "
                f"cases" + (f", SAIE {saie:.0%}" if saie is not None else "")
                + f"; {resolved} of {len(tests)} paired robustness tests resolved.")
    return sentences


def _verdict(resolved: list[dict[str, Any]], checked: list[dict[str, Any]]) -> str:
    if not checked:
        return "No profile has a finished training experiment yet."
    if not resolved:
        return ("**At these scales none of the paper's findings is confirmed or refuted**: the committed runs "
                "exercise the method end to end, and their differences lie within what these sample sizes can "
                "tell apart. The sections below give each profile's numbers, intervals and tests.")
    return (f"{len(resolved)} of {len(checked)} paired tests are resolved (after the Holm correction): "
            + "; ".join(f"{f['claim']} — {f['task']} {f['setting']}: {f['verdict']}" for f in resolved) + ".")


def memory_line(profile: str, run_dirs: list[Path], bench: Path, checkpointing: str) -> str | None:
    """The largest peak RSS the profile's runs recorded, and, where results/bench holds a re-run of that run
    with the same samples (e.g. with gradient checkpointing, as the profile now runs), that re-run's peak."""
    peak = largest_recorded_peak(run_dirs)
    if not peak:
        return None
    value, run = peak
    line = (f"Measured peak memory: {value:.1f} GB RSS{allocator_note(run)}, the largest any of its runs recorded "
            f"(`resources.peak_rss_gb`; [{run.name}](runs/{profile}/{run.parent.name}/{run.name}))")
    rerun = _lightest_rerun(run.name, bench)
    if rerun:
        record, path = rerun
        line += (f"; re-run with gradient checkpointing {record['gradient_checkpointing']} under "
                 f"{record['allocator']}, the same run gave the same samples at {record['peak_rss_gb_rerun']:.1f} GB "
                 f"([{path.name}](bench/{path.name}))"
                 + (", as the profile runs now" if record["gradient_checkpointing"] == checkpointing else ""))
        untrained = largest_recorded_peak(d for d in run_dirs if not run_file(d, "train_log").is_file())
        if untrained:  # checkpointing changes training only: these peaks stand as recorded
            line += (f"; the largest peak of its runs that train nothing: {untrained[0]:.1f} GB"
                     f"{allocator_note(untrained[1])} ({untrained[1].name})")
    return line + "."


def _lightest_rerun(run_name: str, bench: Path) -> tuple[dict[str, Any], Path] | None:
    found = []
    for path in sorted(bench.glob(f"checkpointing-{run_name}*.json")):
        record = json.loads(path.read_text())
        if record.get("same_samples") and record.get("peak_rss_gb_rerun") is not None:
            found.append((record["peak_rss_gb_rerun"], path.name, record, path))
    return (min(found)[2], min(found)[3]) if found else None


IMAGE_LINE = re.compile(r"^!\[[^\]]*\]\(([^)]+)\)$")


def page_parts(readme: Path) -> list[tuple[str, Any]]:
    """The page as ("markdown", text) and ("image", file) parts, each image resolved beside the page: a notebook
    displays the files themselves, since the page's relative links do not resolve from where it lies."""
    parts: list[tuple[str, Any]] = []
    chunk: list[str] = []
    for line in readme.read_text().splitlines():
        image = IMAGE_LINE.match(line.strip())
        if image and (readme.parent / image.group(1)).is_file():
            parts += [("markdown", "\n".join(chunk))] if chunk else []
            parts.append(("image", readme.parent / image.group(1)))
            chunk = []
        else:
            chunk.append(line)
    return parts + ([("markdown", "\n".join(chunk))] if chunk else [])
