"""The robustness experiment over several training seeds (a profile's `seeds`), for `robustness_report`: the
table pooled over seeds, the scopes of the paired tests (each seed, and pooled), and the power of each test.

Every seed meets the same challenge items (`experiments.challenge_configs`): an item is challenged once per seed,
by that seed's trained models, and the base model's run is the same for every seed. A test *per seed* pairs two
conditions' models of one seed on the items; the *pooled* test pairs them on every (item, seed): a pair is the same
item in the same seed under the two conditions, so its discordant counts are the sums of the per-seed tests'.
The pooled pairs are not independent draws of items (each item recurs once per seed): the pooled test asks whether
a difference holds on these items across training seeds, not on more items. A marker of one seed has no scope:
its table and tests are the single-seed ones, unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .artifacts import read_json, run_file
from .challenge import REMARK_KINDS
from .experiments import marker_seed_run_dirs
from .reporting import _display_path, mde_text
from .stats import POWER

POOLED = "pooled"  # the "seed" of a test pooled over every seed's (item, seed) pairs
# the pooled table: the single-seed table's columns, with the seed count and the per-seed shares of two measures
COLUMNS = ("task", "remark", "condition", "seeds", "n", "accuracy_before", "accuracy_after", "kept_correct",
           "kept_of", "kept_correct_per_seed", "switched_to_challenger", "switched_per_seed", "fixed", "invalid",
           "kept_correct_strict", "run")
SHARES = ("accuracy_before", "accuracy_after", "kept_correct", "switched_to_challenger", "fixed", "invalid")


def is_multi_seed(marker: dict[str, Any]) -> bool:
    """Whether the marker names several seeds' runs (read from the marker alone, as the summary does)."""
    return len(marker.get("seeds") or {}) > 1


def seed_runs(marker: dict[str, Any]) -> dict[int, dict[str, Path]]:
    """seed -> {condition -> run dir}."""
    return marker_seed_run_dirs(marker, marker["folder"])


def pooled_flags(by_seed: dict[int, dict[str, Any]]) -> dict[tuple[int, str], Any]:
    """seed -> {item id -> item flags} as one mapping (seed, item id) -> item flags: the pooled test's pairs."""
    return {(seed, item): flags for seed, items in by_seed.items() for item, flags in items.items()}


def scope_text(test: dict[str, Any]) -> str:
    """Which seeds a test is on, for a sentence: '' for a single-seed marker's test."""
    if "seed" not in test:
        return ""
    return ", pooled over seeds" if test["seed"] == POOLED else f", seed {test['seed']}"


def units(test: dict[str, Any]) -> str:
    """What a test's n counts."""
    return "item × seed pairs" if test.get("seed") == POOLED else "items"


def rows(marker: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (task, remark kind, condition), pooled over seeds: each share's count and denominator summed
    over the seeds' runs (the flexible parse; strict kept correct), and the per-seed shares of kept correct and
    switched. `n` counts item × seed pairs; `run` is the first seed's."""
    by_seed = seed_runs(marker)
    metrics = {seed: {c: read_json(run_file(d, "metrics")) for c, d in runs.items()} for seed, runs in by_seed.items()}
    first_seed = next(iter(by_seed))
    table = []
    for condition, first in metrics[first_seed].items():
        for task in first["tasks"]:
            for kind in REMARK_KINDS:
                results = [m[condition]["tasks"][task][kind] for m in metrics.values()]
                flexible = [r["flexible"] for r in results]
                table.append({
                    "task": task, "remark": kind, "condition": condition, "seeds": len(results),
                    "n": sum(f["n"] for f in flexible), **{name: _pooled(flexible, name) for name in SHARES},
                    "kept_of": sum(f["kept_correct"]["n"] for f in flexible),
                    "kept_correct_per_seed": _per_seed(flexible, "kept_correct"),
                    "switched_per_seed": _per_seed(flexible, "switched_to_challenger"),
                    "kept_correct_strict": _pooled([r["strict"] for r in results], "kept_correct"),
                    "run": f"{_display_path(by_seed[first_seed][condition])} (+{len(results) - 1} more seeds)"})
    return table


def _pooled(results: list[dict[str, Any]], name: str) -> float | None:
    n = sum(r[name]["n"] for r in results)
    return sum(r[name]["count"] for r in results) / n if n else None


def _per_seed(results: list[dict[str, Any]], name: str) -> str:
    return " / ".join("n/a" if r[name]["share"] is None else f"{r[name]['share']:.2f}" for r in results)


def sizes_text(table: list[dict[str, Any]]) -> str:
    """The section heading's sizes: items per seed and the seed count, per task."""
    return ", ".join(f"{task} n = {n // seeds} items × {seeds} seeds"
                     for task, n, seeds in dict.fromkeys((r["task"], r["n"], r["seeds"]) for r in table))


def seeds_note(marker: dict[str, Any]) -> list[str]:
    """What the pooled table and the scoped tests are, for the page."""
    seeds = list(seed_runs(marker))
    return [f"Seeds: {len(seeds)} ({', '.join(map(str, seeds))}). Each seed's models (each trained on that seed's "
            "training examples) meet the same challenge items; the base model's run is the same for every seed. The "
            "table pools every seed (its n counts item × seed pairs; per-seed shares beside). Each paired test is "
            "run per seed and pooled over item × seed pairs (a pair: one item in one seed under the two "
            "conditions; the items recur once per seed, so the pooled test speaks for these items across training "
            "seeds), all under one Holm–Bonferroni correction.", ""]


def power_lines(checked: list[dict[str, Any]]) -> list[str]:
    """Per scope (pooled, then each seed), task, remark and measure: each test's smallest detectable difference
    with POWER, at that test's own n and at the discordance that test shows."""
    lines = []
    for key in dict.fromkeys((t["seed"], t["task"], t["remark"], t["measure"]) for t in checked):
        group = [t for t in checked if (t["seed"], t["task"], t["remark"], t["measure"]) == key]
        lines.append(f"- {group[0]['task']}, {group[0]['remark']}ing remark{scope_text(group[0])}, "
                     f"{group[0]['measure'].replace('_', ' ')}, smallest difference detectable with {POWER:.0%} "
                     "power: " + "; ".join(f"{t['a']} vs {t['b']} {_power(t)}" for t in group) + ".")
    return lines


def _power(test: dict[str, Any]) -> str:
    n = test["n"]
    discordance = (test["a_only"] + test["b_only"]) / n if n else 0.0
    if not discordance:
        return f"n = {n} (no discordant pair)"
    return f"n = {n} ({discordance:.0%} discordant) {mde_text(n, discordance)}"
