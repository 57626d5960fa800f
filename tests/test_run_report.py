"""What `make demo` / `make reproduce` print after a run: computed or reused, and same as or different from the
committed runs (saie_lib.run_report), from run dirs on disk."""

import json
import os

from saie_lib.run_report import (
    activity_line,
    build_report,
    comparison_line,
    finished_runs,
    remove_runs,
)


def _run(folder, name, outputs, parsed=None):
    run = folder / name
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    rows = [{"id": str(i), "output": text, "parsed": (parsed or outputs)[i]} for i, text in enumerate(outputs)]
    (run / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "metrics.json").write_text("{}")
    return run


def test_reused_runs_say_so_and_how_to_recompute(tmp_path):
    folder = tmp_path / "local" / "runs" / "baseline"
    _run(folder, "gsm8k-a", ["The answer is 3."])
    before = finished_runs(folder)
    report = build_report(tmp_path / "local", before, [folder], reference=None)
    line = activity_line(report, "make demo FORCE=1")
    assert line.startswith("reused 1 finished run(s)") and "nothing was recomputed" in line
    assert line.endswith("to recompute: make demo FORCE=1")
    assert comparison_line(report) is None


def test_a_computed_run_identical_to_the_reference_is_reported_same(tmp_path):
    local, committed = tmp_path / "local", tmp_path / "results"
    _run(committed / "runs" / "baseline", "gsm8k-a", ["The answer is 3.", "The answer is 4."])
    folder = local / "runs" / "baseline"
    before = finished_runs(folder)
    _run(folder, "gsm8k-a", ["The answer is 3.", "The answer is 4."])
    report = build_report(local, before, [folder], reference=committed)
    assert activity_line(report, "x") == f"computed 1 run(s) into {local}/runs"
    assert comparison_line(report) == f"same as {committed}: 1 of 1 run(s), every one of 2 samples identical"


def test_different_outputs_and_different_parses_are_told_apart(tmp_path):
    local, committed = tmp_path / "local", tmp_path / "results"
    _run(committed / "runs" / "s", "a", ["x 3", "y 4"])
    _run(committed / "runs" / "s", "b", ["x 3", "y 4"], parsed=["3", "4"])
    folder = local / "runs" / "s"
    _run(folder, "a", ["x 3", "y 5"])
    _run(folder, "b", ["x 3", "y 4"], parsed=["3", None])
    _run(folder, "c", ["z"])
    line = comparison_line(build_report(local, {}, [folder], reference=committed))
    assert line.startswith(f"differs from {committed}: ")
    assert "a: 1 of 2 model outputs differ" in line and "b: same outputs, 1 of 2 parsed answers differ" in line
    assert "1 run(s) not in" in line


def test_an_updated_run_counts_as_computed_and_a_reference_of_none_of_them_says_so(tmp_path):
    folder = tmp_path / "runs" / "p"
    run = _run(folder, "a", ["1"])
    before = finished_runs(folder)
    stamp = (run / "metrics.json").stat().st_mtime_ns + 10**9
    os.utime(run / "metrics.json", ns=(stamp, stamp))
    report = build_report(tmp_path, before, [folder], reference=tmp_path / "elsewhere")
    assert report.computed == [run] and not report.reused
    assert comparison_line(report).startswith("nothing to compare")


def test_comparing_a_root_with_itself_is_no_comparison(tmp_path):
    folder = tmp_path / "runs" / "p"
    _run(folder, "a", ["1"])
    assert comparison_line(build_report(tmp_path, {}, [folder], reference=tmp_path)) is None


def test_remove_runs_removes_run_dirs_and_the_marker_only(tmp_path):
    folder = tmp_path / "runs" / "p" / "math"
    run = _run(folder, "a", ["1"])
    (folder / "experiment.json").write_text("{}")
    (folder / "10_math_gsm8k.ipynb").write_text("{}")
    assert remove_runs(folder) == [run]
    assert sorted(p.name for p in folder.iterdir()) == ["10_math_gsm8k.ipynb"]
