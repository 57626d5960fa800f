"""One writer per run dir (saie_lib/run_lock.py), with real processes: a second process is refused or waits, a
holder killed with SIGKILL does not block the next start, a stale lock from a dead process, a restarted machine
or a silent host is taken over and a live one never is, and writers that contend for one folder append their
rows once, in order."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import REPO
from run_records import run_records

from saie_lib import run_lock
from saie_lib.processes import process_alive, process_start

HOLD_AND_SLEEP = """
import sys, time
from saie_lib import run_lock
run_lock.acquire(sys.argv[1])
print("held", flush=True)
time.sleep(120)
"""

TRY_ONCE = """
import sys
from saie_lib import run_lock
with run_lock.hold(sys.argv[1], wait=sys.argv[2] == "wait"):
    print("got it", flush=True)
"""

# Each writer appends rows 0..9 to rows.jsonl, one at a time, unless an earlier writer finished them.
CONTENDING_WRITER = """
import json, sys, time
from pathlib import Path
from saie_lib import run_lock
folder = Path(sys.argv[1])
with run_lock.hold(folder):
    if not (folder / "done").exists():
        for index in range(10):
            with open(folder / "rows.jsonl", "a") as handle:
                handle.write(json.dumps({"row": index, "writer": sys.argv[2]}) + "\\n")
            time.sleep(0.05)
        (folder / "done").write_text(sys.argv[2])
"""


def python(code, *args, **options):
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)


def held_by_child(folder):
    child = python(HOLD_AND_SLEEP, folder)
    assert child.stdout.readline().strip() == "held", child.stderr.read()
    return child


def plant(folder, age_s=0.0, **record):
    """A lock file as another process would have left it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = run_lock.lock_path(folder)
    base = {"host": socket.gethostname(), "boot_id": None, "pid": os.getpid(), "pid_start": None,
            "started_at": "2026-01-01T00:00:00Z", "flock": False, "token": "planted"}
    path.write_text(json.dumps({**base, **record}))
    if age_s:
        os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_second_process_is_refused_naming_the_run_the_holder_and_the_way_out(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with run_lock.hold(folder):
        refused = python(TRY_ONCE, folder, "skip")
        _, error = refused.communicate(timeout=60)
    assert refused.returncode != 0
    message = error.strip().splitlines()[-1]
    assert message.startswith("saie_lib.run_lock.RunLockedError: run ")
    assert str(folder) in message and f"process {os.getpid()} on host {socket.gethostname()}" in message
    assert f"delete {folder / 'writer.lock'}" in message
    assert [p.name for p in folder.iterdir()] == ["config.json"]  # released: the lock file gone, the rest kept


def test_a_waiting_process_starts_once_the_holder_releases(tmp_path):
    folder = tmp_path / "run"
    with run_lock.hold(folder):
        waiter = python(TRY_ONCE, folder, "wait")
        time.sleep(1.5)
        assert waiter.poll() is None  # still waiting
    out, error = waiter.communicate(timeout=60)
    assert waiter.returncode == 0 and out.strip() == "got it"
    assert "Waiting for it to finish" in error and str(folder) in error


@pytest.mark.parametrize("reaped", [True, False])
def test_a_holder_killed_with_sigkill_does_not_block_the_next_start(tmp_path, reaped, capfd):
    folder = tmp_path / "run"
    child = held_by_child(folder)
    os.kill(child.pid, signal.SIGKILL)
    if reaped:
        child.wait()
    else:  # a zombie until its parent reaps it: its pid still exists
        time.sleep(0.5)
    started = time.monotonic()
    with run_lock.hold(folder, wait=False) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert time.monotonic() - started < 5
    assert f"took over the lock of run {folder}: process {child.pid}" in capfd.readouterr().err
    child.wait()


def test_a_live_holder_in_another_process_is_never_taken_over(tmp_path):
    folder = tmp_path / "run"
    child = held_by_child(folder)
    try:
        with pytest.raises(run_lock.RunLockedError, match=f"process {child.pid}"):
            run_lock.acquire(folder, wait=False)
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("record, age_s, why", [
    ({"pid": "dead"}, 0, "no longer runs"),  # this host, no flock (a file system without one): by pid
    ({"pid_start": "1"}, 0, "no longer runs"),  # this process's pid, but another start time: a reused pid
    ({"boot_id": "another-boot"}, 0, "restarted"),
    ({"host": "elsewhere"}, run_lock.STALE_AFTER_S + 60, "no heartbeat"),
    (None, run_lock.STALE_AFTER_S + 60, "unreadable"),
])
def test_a_stale_lock_is_taken_over(tmp_path, record, age_s, why, capfd):
    if record and record.get("pid") == "dead":
        record = {"pid": dead_pid()}
    if record and "boot_id" in record and run_lock.boot_id() is None:
        pytest.skip("no boot id on this system")
    plant(tmp_path, age_s, **(record or {})) if record is not None else plant_unreadable(tmp_path, age_s)
    with run_lock.hold(tmp_path, wait=False):
        pass
    assert why in capfd.readouterr().err
    assert not run_lock.lock_path(tmp_path).exists()


def plant_unreadable(folder, age_s):
    path = run_lock.lock_path(folder)
    path.write_text("")
    os.utime(path, (time.time() - age_s, time.time() - age_s))


@pytest.mark.parametrize("record", [
    {"host": "elsewhere"},  # another host, heartbeat fresh
    {},  # this host, a live process (this one, with its own start time)
])
def test_a_lock_that_may_be_live_is_respected(tmp_path, record):
    plant(tmp_path, pid_start=process_start(os.getpid()), **record)
    with pytest.raises(run_lock.RunLockedError, match="is being written by process"):
        run_lock.acquire(tmp_path, wait=False)
    plant_unreadable(tmp_path, 0)  # a lock file still being written
    with pytest.raises(run_lock.RunLockedError, match="still being written"):
        run_lock.acquire(tmp_path, wait=False)


def test_a_takeover_in_progress_elsewhere_is_left_to_finish(tmp_path, monkeypatch):
    monkeypatch.setattr(run_lock, "POLL_S", 0.01)
    plant(tmp_path, pid=dead_pid())
    breaker = tmp_path / run_lock.BREAK_NAME
    breaker.write_text("")
    run_lock._break_stale(tmp_path, "run")
    assert run_lock.lock_path(tmp_path).exists()  # the other process's takeover decides
    os.utime(breaker, (time.time() - run_lock.BREAK_STALE_S - 5,) * 2)
    run_lock._break_stale(tmp_path, "run")  # a takeover file left by a killed process is cleared
    run_lock._break_stale(tmp_path, "run")
    assert not run_lock.lock_path(tmp_path).exists() and not breaker.exists()


def test_the_holder_notices_a_lock_taken_from_it_and_nothing_unheld_is_finished(tmp_path):
    with pytest.raises(RuntimeError, match="without holding its lock"):
        run_lock.ensure_held(tmp_path)
    with run_lock.hold(tmp_path) as lock:
        run_lock.ensure_held(tmp_path)
        lock.path.unlink()
        plant(tmp_path, host="elsewhere")
        with pytest.raises(run_lock.RunLockedError, match="took this run's lock over"):
            run_lock.ensure_held(tmp_path)
    assert json.loads(run_lock.lock_path(tmp_path).read_text())["token"] == "planted"  # not removed by release


def test_the_holder_keeps_a_heartbeat_and_a_failed_start_leaves_no_empty_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(run_lock, "HEARTBEAT_S", 0.05)
    folder = tmp_path / "new" / "run"
    with run_lock.hold(folder) as lock:
        os.utime(lock.path, (0, 0))
        time.sleep(0.5)
        assert time.time() - lock.path.stat().st_mtime < 5
    assert not folder.exists() and (tmp_path / "new").is_dir()


def test_process_liveness_knows_zombies_and_reused_pids():
    assert process_alive(os.getpid(), process_start(os.getpid()))
    assert not process_alive(dead_pid())
    if process_start(os.getpid()) is not None:
        assert not process_alive(os.getpid(), "1")


def test_contending_writers_append_every_row_once_in_order(tmp_path):
    writers = [python(CONTENDING_WRITER, tmp_path, name) for name in ("a", "b", "c")]
    for writer in writers:
        _, error = writer.communicate(timeout=120)
        assert writer.returncode == 0, error
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [r["row"] for r in rows] == list(range(10))
    assert {r["writer"] for r in rows} == {(tmp_path / "done").read_text()}
    assert not run_lock.lock_path(tmp_path).exists()


TRAIN_TINY = """
import sys
from saie_lib.config import TrainConfig, load_config
from saie_lib.stages.train import train
cfg = load_config("train-tiny", cls=TrainConfig, task="commonsense_qa", limit=4, eval_limit=2, data_dir=sys.argv[1],
                  results_root=sys.argv[2])
print(train(cfg, progress=False).name)
"""


@pytest.mark.slow
def test_two_processes_training_one_run_leave_the_records_of_one(tmp_path, data_dir, monkeypatch):
    """Two processes start the same tiny training run on one results folder (and one remark cache, as two
    terminals would): one trains, the other waits and reuses the finished run; the records equal a run alone."""
    monkeypatch.setenv("SAIE_REMARK_CACHE", str(tmp_path / "together" / "remarks.sqlite"))
    together = [python(TRAIN_TINY, data_dir, tmp_path / "together" / "results") for _ in range(2)]
    outputs = [process.communicate(timeout=600) for process in together]
    assert [process.returncode for process in together] == [0, 0], [error[-2000:] for _, error in outputs]
    assert sum("Waiting for it to finish" in error for _, error in outputs) == 1
    monkeypatch.setenv("SAIE_REMARK_CACHE", str(tmp_path / "alone" / "remarks.sqlite"))
    alone = python(TRAIN_TINY, data_dir, tmp_path / "alone" / "results")
    out, error = alone.communicate(timeout=600)
    assert alone.returncode == 0, error[-2000:]
    name = out.strip()
    assert [o.strip() for o, _ in outputs] == [name, name]
    folder = next((tmp_path / "alone" / "results" / "runs").glob(f"*/{name}"))
    records = run_records(folder)
    assert "env.json" in records and "env-2.json" not in records and "metrics.json" in records
    assert run_records(tmp_path / "together" / folder.relative_to(tmp_path / "alone")) == records
