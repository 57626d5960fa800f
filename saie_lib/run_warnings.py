"""Loud degenerate runs: a run that finished but produced nothing usable says so.

A run in which every answer was invalid (nothing parsed: a plain-text prompt a model does not follow, answers
cut off by max_new_tokens) or in which no partner remark reached the learner still writes its metrics, so that
it is not redone, but with `warnings` in metrics.json: each is printed when the run finishes and whenever the
finished run is reused (so it shows in the notebook's output), and listed on the results page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from .artifacts import read_json, run_file
from .conditions import NO_PARTNER_POLICIES, REMARK_POLICIES

WARNINGS_KEY = "warnings"


def degenerate_warnings(metrics: dict[str, Any]) -> list[str]:
    """What makes a run's metrics degenerate: every answer invalid (an evaluation, an inference setting's final
    round, a challenge task), or no partner remark at all where the remark policy asks for them."""
    found = []
    if metrics.get("invalid_rate") == 1.0:
        found.append(f"every answer was invalid (invalid_rate 1.0 over {metrics.get('n')} examples): no output held "
                     "a parseable answer; read samples.jsonl, and check the prompt rendering (a model without a chat "
                     "template gets plain-text prompts) and max_new_tokens")
    for setting, values in (metrics.get("settings") or {}).items():
        if (values.get("final") or {}).get("invalid_rate") == 1.0:
            found.append(f"setting {setting}: every final-round answer was invalid (invalid_rate 1.0)")
    for task, values in (metrics.get("tasks") or {}).items():
        shares = [v["flexible"]["invalid"]["share"] for v in values.values() if isinstance(v, dict) and "flexible" in v]
        if shares and all(share == 1.0 for share in shares):
            found.append(f"task {task}: every final answer was invalid")
    policy, partner = metrics.get("remark_policy"), metrics.get("partner")
    asks_partner = policy in REMARK_POLICIES and policy not in NO_PARTNER_POLICIES
    if asks_partner and isinstance(partner, dict) and partner.get("remarks") == 0:
        found.append(f"every remark was empty: no partner remark reached the learner under remark_policy {policy!r}")
    return found


def with_warnings(metrics: dict[str, Any]) -> dict[str, Any]:
    """`metrics` with its degenerate warnings under WARNINGS_KEY (the key is left out when there are none)."""
    found = degenerate_warnings(metrics)
    return {**metrics, WARNINGS_KEY: found} if found else metrics


def recorded_warnings(metrics: dict[str, Any]) -> list[str]:
    return list(metrics.get(WARNINGS_KEY) or [])


def describe(out: Path, warnings: list[str]) -> list[str]:
    """One line per warning, naming the run."""
    return [f"run {out.parent.name}/{out.name}: {text}" for text in warnings]


def page_lines(run_dirs: Iterable[Path]) -> list[str]:
    """The results page's warning block: one bullet per warning of a finished run; nothing when there are none."""
    found = [line for run in dict.fromkeys(run_dirs) if run_file(run, "metrics").is_file()
             for line in describe(run, recorded_warnings(read_json(run_file(run, "metrics"))))]
    if not found:
        return []
    return ["**Warnings.** These runs finished without a usable result; their numbers below mean nothing:", "",
            *[f"- {line}" for line in found], ""]
