"""Re-score a finished run's samples with today's parser, leaving the run's identity alone.

    python -m saie_lib.rescore results/runs/cpu-small/math/gsm8k-test-...   (one or more run dirs)

Evaluation runs (samples.jsonl) get both parses, the method and correctness recomputed, and the scoring
fields of metrics.json (accuracy, ci95, invalid rates, methods, with and without _strict) recomputed with
`evaluation.compute_metrics`. Inference runs (samples.<setting>.jsonl) get each round's `parsed`/`correct`
recomputed and each setting's by_round / final / flips / robustness recomputed with the functions that wrote
them. Robustness runs (samples.<task>.jsonl) get every answer (first, after each remark) parsed again and each
task's outcome metrics recomputed (`challenge.task_metrics`). Rows that lack the choice texts the flexible
parse reads get them from the task's data files by example id (needs a data folder, SAIE_DATA_DIR); an id not
found there is an error. metrics.json records
each re-scoring in `rescored` (parser rules version, git state, date, rows and changes). config.json, and so
the run's identity, is never touched. Training transcripts are not re-scored: they record what training saw
(including the checks that decided any `stance_retries` re-ask). Every remark of a training run's transcripts
is re-checked with today's stance checker (`saie_lib.stance`, its `CHECKER_VERSION`): the verdicts go to
`stance_checks.jsonl` beside the transcripts, and `stance_fidelity` in metrics.json is recomputed from them
(marked `"checked": "after the run"`, the previous figures kept in the `rescored` entry), with
`learner_turns`: how many learner turns of the discussion stated no answer (`parsing.stated_answer`).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from . import artifacts
from .artifacts import read_json, read_jsonl, run_file, setting_samples, write_json, write_jsonl
from .challenge import REMARK_KINDS, task_metrics
from .conditions import PLACEBO, STANCES
from .data import load_task
from .data.io import resolve_data_dir
from .discussion_analysis import accuracy_by_round, flips_by_round, robustness
from .evaluation import compute_metrics
from .parsing import RULES_VERSION, grade, stated_answer
from .stance import CHECKER_VERSION, check_stance, fidelity, learner_turns
from .tasks import get_task

EVAL_FIELDS = ("parsed_strict", "parsed", "method", "correct_strict", "correct")
INFERENCE_FIELDS = ("parsed", "correct")
CHALLENGE_FIELDS = ("parsed", "parsed_strict", "method")


def choices_by_id(task: str, split: str, ids: Sequence[str], data_dir: str | Path | None) -> dict[str, list]:
    """The choice texts of each example id (empty lists for tasks without choices), read from the data files."""
    if not get_task(task).labels:
        return {i: [] for i in ids}
    root = resolve_data_dir(data_dir)
    if root is None:
        raise ValueError(f"re-scoring {task} rows without stored choices needs the data files: set SAIE_DATA_DIR "
                         "or pass --data-dir")
    known = {e.id: list(e.choices) for e in load_task(task, split, data_dir=root)}
    missing = sorted(set(ids) - set(known))
    if missing:
        raise ValueError(f"{len(missing)} example id(s) not in {task} {split} at {root}: {missing[:5]}; the run "
                         "cannot be re-scored against these data files")
    return {i: known[i] for i in ids}


def _with_choices(rows: list[dict], task: str, split: str, data_dir: str | Path | None) -> list[dict]:
    lacking = sorted({r["id"] for r in rows if "choices" not in r})
    found = choices_by_id(task, split, lacking, data_dir) if lacking else {}
    return [r if "choices" in r else {**r, "choices": found[r["id"]]} for r in rows]


def rescore_eval_rows(rows: list[dict], task: str) -> list[dict]:
    out = []
    for row in rows:
        strict, correct_strict = grade(task, row["output"], row["gold"], mode="strict", choices=row["choices"])
        flexible, correct = grade(task, row["output"], row["gold"], choices=row["choices"])
        out.append({**row, "parsed_strict": strict.value, "parsed": flexible.value, "method": flexible.method,
                    "correct_strict": correct_strict, "correct": correct})
    return out


def rescore_inference_rows(rows: list[dict], task: str) -> list[dict]:
    out = []
    for row in rows:
        parsed, correct = grade(task, row["output"], row["gold"], choices=row["choices"])
        out.append({**row, "parsed": parsed.value, "correct": correct})
    return out


def _changed(before: list[dict], after: list[dict], fields: Sequence[str]) -> dict[str, int]:
    return {f: sum(a.get(f) != b.get(f) for a, b in zip(before, after)) for f in fields}


def _eval_run(run_dir: Path, metrics: dict, data_dir) -> tuple[dict, dict[str, int], int]:
    path = run_file(run_dir, "samples")
    before = read_jsonl(path)
    task = metrics["task"]
    after = rescore_eval_rows(_with_choices(before, task, metrics["split"], data_dir), task)
    write_jsonl(path, after)
    updated = {**metrics, **compute_metrics(after)}
    if run_file(run_dir, "transcripts").is_file() and read_jsonl(run_file(run_dir, "transcripts")):
        updated.update(recheck_stances(run_dir, task, data_dir, metrics.get("stance_fidelity")))
    return updated, _changed(before, after, EVAL_FIELDS), len(after)


def _checked(task: str, remark: str | None, row: dict, answer: str | None) -> dict[str, Any] | None:
    if remark is None:
        return None
    return check_stance(task, remark, answer, row["choices"], learner_text=row["learner"]).to_record()


def stance_check_rows(rows: list[dict], task: str) -> list[dict[str, Any]]:
    """Today's verdict on every remark of transcript rows (the remark trained on and, where the partner was
    re-asked, its first try), against the answer the learner's turn stated."""
    checked = []
    for row in rows:
        answer = stated_answer(task, row["learner"], choices=row["choices"])
        entry = {"step": row.get("step"), "round": row.get("round"), "id": row["id"], "stance": row["stance"],
                 "learner_answer": answer}
        if row.get("stance") is not None and row.get("remark") is not None and row["stance"] != PLACEBO:
            check = _checked(task, row["remark"], row, answer)
            tries = row.get("stance_tries") or []
            first = _checked(task, tries[0]["remark"], row, answer) if tries else None
            entry.update(stance_check=check, stance_holds=check["stance"] == row["stance"], tries=max(len(tries), 1),
                         **({"first_try_check": first} if tries else {}))
        checked.append(entry)
    return checked


def _as_fidelity_rows(checked: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check rows in the shape `stance.fidelity` reads (a first try that did not hold, where there was one)."""
    rows = []
    for c in checked:
        if c.get("tries", 1) > 1:
            first = c.get("first_try_check") or {}
            c = {**c, "stance_tries": [{"holds": first.get("stance") == c["stance"]}] + [{}] * (c["tries"] - 1)}
        rows.append(c)
    return rows


def recheck_stances(run_dir: Path, task: str, data_dir: str | Path | None,
                    before: dict[str, Any] | None) -> dict[str, Any]:
    """Every remark of a training run re-checked with today's checker (written to stance_checks.jsonl); returns
    the metrics fields it recomputes: stance_fidelity and learner_turns."""
    rows = _with_choices(read_jsonl(run_file(run_dir, "transcripts")), task, get_task(task).train_split, data_dir)
    checked = stance_check_rows(rows, task)
    write_jsonl(run_file(run_dir, "stance_checks"), checked)
    retries = (before or {}).get("stance_retries", 0)
    return {"stance_fidelity": {**fidelity(_as_fidelity_rows(checked)), "stance_retries": retries,
                                "checked": "after the run", "checker": CHECKER_VERSION},
            "learner_turns": learner_turns([c["learner_answer"] for c in checked])}


def _inference_run(run_dir: Path, metrics: dict, data_dir) -> tuple[dict, dict[str, int], int]:
    task, settings = metrics["task"], dict(metrics["settings"])
    changed, total = dict.fromkeys(INFERENCE_FIELDS, 0), 0
    for setting, result in settings.items():
        path = setting_samples(run_dir, setting)
        before = read_jsonl(path)
        after = rescore_inference_rows(_with_choices(before, task, get_task(task).eval_split, data_dir), task)
        write_jsonl(path, after)
        by_round = accuracy_by_round(after, seed=metrics["seed"])
        settings[setting] = {**result, "by_round": by_round, "final": by_round[-1], "flips": flips_by_round(after),
                             **({"robustness": robustness(after)} if "robustness" in result else {})}
        changed = {f: changed[f] + n for f, n in _changed(before, after, INFERENCE_FIELDS).items()}
        total += len(after)
    return {**metrics, "settings": settings}, changed, total


def rescore_challenge_rows(rows: list[dict], task: str) -> list[dict]:
    """Each answer of a robustness row (first, and after each remark kind) parsed again, both modes."""
    out = []
    for row in rows:
        row = dict(row)
        for part in ("first", *REMARK_KINDS):
            flexible, _ = grade(task, row[part]["output"], row["gold"], choices=row["choices"])
            strict, _ = grade(task, row[part]["output"], row["gold"], mode="strict", choices=row["choices"])
            row[part] = {**row[part], "parsed": flexible.value, "parsed_strict": strict.value,
                         "method": flexible.method}
        out.append(row)
    return out


def _challenge_parses(rows: list[dict]) -> list[dict]:
    return [{f"{part}.{k}": r[part][k] for part in ("first", *REMARK_KINDS) for k in CHALLENGE_FIELDS} for r in rows]


def _challenge_run(run_dir: Path, metrics: dict, data_dir) -> tuple[dict, dict[str, int], int]:
    tasks, changed, total = dict(metrics["tasks"]), dict.fromkeys(CHALLENGE_FIELDS, 0), 0
    for task, result in tasks.items():
        path = setting_samples(run_dir, task)
        before = read_jsonl(path)
        after = rescore_challenge_rows(before, task)
        write_jsonl(path, after)
        tasks[task] = {**result, **task_metrics(after)}
        keys = [f"{part}.{k}" for part in ("first", *REMARK_KINDS) for k in CHALLENGE_FIELDS]
        moved = _changed(_challenge_parses(before), _challenge_parses(after), keys)
        changed = {f: changed[f] + sum(n for k, n in moved.items() if k.endswith(f".{f}")) for f in changed}
        total += len(after)
    return {**metrics, "tasks": tasks}, changed, total


def rescore_run(run_dir: str | Path, *, data_dir: str | Path | None = None) -> dict[str, Any]:
    """Re-score one finished run dir in place; returns the `rescored` entry it recorded."""
    run_dir = Path(run_dir)
    metrics_path = run_file(run_dir, "metrics")
    if not metrics_path.is_file():
        raise ValueError(f"{run_dir}: no {metrics_path.name}; only a finished run can be re-scored")
    metrics = read_json(metrics_path)
    handler = _inference_run if "settings" in metrics else _challenge_run if "tasks" in metrics else _eval_run
    updated, changed, rows = handler(run_dir, metrics, data_dir)
    entry = {"parser_rules": RULES_VERSION, **artifacts.git_state(),
             "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "rows": rows, "changed": changed}
    if "learner_turns" in updated:
        entry.update(stance_checker=CHECKER_VERSION, stance_fidelity_before=_fidelity_summary(metrics),
                     stance_fidelity_after=_fidelity_summary(updated))
    history = list(metrics.get("rescored", []))
    if not history or _versions(history[-1]) != _versions(entry) or any(changed.values()):
        history.append(entry)
    write_json(metrics_path, {**updated, "parser_rules": RULES_VERSION, "rescored": history})
    return entry


def _versions(entry: dict[str, Any]) -> tuple:
    return entry["parser_rules"], entry.get("stance_checker")


def _fidelity_summary(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The headline stance fidelity figures of a metrics.json (what a re-check changed)."""
    found = metrics.get("stance_fidelity")
    if not found:
        return None
    return {"overall": found.get("overall"), "first_try": found.get("first_try"),
            **{s: (found.get(s) or {}).get("holds") for s in STANCES}, "no_answer": found.get("no_answer")}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m saie_lib.rescore", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", help="finished run dirs (holding metrics.json)")
    parser.add_argument("--data-dir", default=None, help="task data folder; default: env SAIE_DATA_DIR")
    args = parser.parse_args(argv)
    for run_dir in args.run_dirs:
        entry = rescore_run(run_dir, data_dir=args.data_dir)
        print(f"{run_dir}: {entry['rows']} rows, changed {entry['changed']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
