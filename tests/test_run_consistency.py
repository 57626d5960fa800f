"""Finished means consistent (saie_lib/run_consistency.py): rows written twice or out of order, as two processes
writing one run leave them, are found with file and row by `record_audit --check`, and a run holding them is
never marked finished. Fast: no model."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO

from saie_lib import record_audit, run_lock
from saie_lib.config import TrainConfig
from saie_lib.run_consistency import InconsistentRunError, file_findings, tree_findings
from saie_lib.stages import write_metrics

COMMITTED = REPO / "results"


def committed_training_run(tmp_path) -> Path:
    """A copy of a committed training run (train_log, transcripts, samples), under <tmp>/runs/."""
    source = next(p.parent for p in sorted(COMMITTED.rglob("train_log.jsonl")))
    return Path(shutil.copytree(source, tmp_path / "runs" / source.name))


def lines(path):
    return path.read_text().splitlines(keepends=True)


def test_committed_runs_hold_every_row_once_in_order():
    assert tree_findings(COMMITTED) == []


def test_the_audit_finds_planted_duplicate_rows_with_file_and_row(tmp_path, capsys):
    run = committed_training_run(tmp_path)
    assert record_audit.main(["--check", str(tmp_path)]) == 0
    log, transcripts = run / "train_log.jsonl", run / "transcripts.jsonl"
    rows = lines(log)
    log.write_text("".join(rows[:3] + rows[1:3] + rows[3:]))  # rows 2-3 again, as an overlapping writer adds them
    transcripts.write_text("".join(lines(transcripts) + lines(transcripts)[:1]))
    assert record_audit.main(["--check", str(tmp_path)]) == 1
    printed = capsys.readouterr().out.splitlines()
    name = f"runs/{run.name}"
    second = json.loads(rows[1])
    assert f"{name}/train_log.jsonl:4: repeats row 2 (phase {second['phase']}, batch {second['batch']}" in printed[0]
    assert f"{name}/train_log.jsonl:4: out of order: step {second['step']} after step" in printed[1]
    first = json.loads(lines(transcripts)[0])
    assert f"{name}/transcripts.jsonl:{len(lines(transcripts))}: repeats row 1 (batch {first['batch']}, round " \
           f"{first['round']}, id {first['id']})" in printed


def test_a_step_going_backwards_and_a_repeated_sample_are_found(tmp_path):
    log = tmp_path / "train_log.jsonl"
    log.write_text("".join(json.dumps({"phase": "discussion", "batch": 1, "round": r, "step": s}) + "\n"
                           for r, s in ((1, 2), (2, 1))))
    assert [str(f) for f in file_findings(log)] == [f"{log}:2: out of order: step 1 after step 2"]
    samples = tmp_path / "samples.individual.jsonl"
    samples.write_text("".join(json.dumps({"setting": "individual", "id": i, "agent": 0, "round": 0}) + "\n"
                               for i in ("a", "b", "a")))
    assert [str(f) for f in file_findings(samples)] == [f"{samples}:3: repeats row 1 (setting individual, id a, "
                                                        "agent 0, round 0)"]
    (tmp_path / "notes.txt").write_text("not a log")
    assert file_findings(tmp_path / "notes.txt") == []


def test_a_torn_last_line_is_a_finding_only_in_a_finished_run(tmp_path):
    log = tmp_path / "train_log.jsonl"
    log.write_text('{"phase": "warmup", "batch": 0, "step": 1}\n{"phase": "warm')
    assert file_findings(log, torn_tail_allowed=True) == []
    assert "not a JSON object" in str(file_findings(log)[0])


def test_an_inconsistent_run_is_never_marked_finished(tmp_path):
    run = committed_training_run(tmp_path)
    (run / "metrics.json").unlink()
    rows = lines(run / "train_log.jsonl")
    (run / "train_log.jsonl").write_text("".join(rows + rows[-1:]))
    cfg = TrainConfig(results_root=str(tmp_path))
    with run_lock.hold(run), pytest.raises(InconsistentRunError, match=f"train_log.jsonl:{len(rows) + 1}: repeats"):
        write_metrics(run, cfg, {"n": 4, "accuracy": 0.5})
    assert not (run / "metrics.json").exists()
    with pytest.raises(RuntimeError, match="without holding its lock"):  # nor by a process not holding its lock
        write_metrics(run, cfg, {"n": 4, "accuracy": 0.5})
