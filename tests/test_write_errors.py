"""Every OS-level write failure is named (saie_lib/write_errors.py): a full disk, a read-only results root, a
results root or remark cache under a file. One error names the path, the reason and the setting to change, says
the run resumes, and comes before any model is loaded where the folder can be checked up front."""

import errno
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from saie_lib.artifacts import read_jsonl
from saie_lib.config import TrainConfig, load_config
from saie_lib.write_errors import RunWriteError, write_error


def under_a_file(tmp_path, *parts):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return blocker.joinpath(*parts)


def test_a_results_root_under_a_file_is_named_before_any_model_loads(tmp_path, data_dir, monkeypatch):
    from saie_lib.stages import evaluate

    monkeypatch.setattr(evaluate.LazyModel, "get", lambda self: pytest.fail("a model was loaded"))
    root = under_a_file(tmp_path, "results")
    cfg = load_config("eval-tiny", task="gsm8k", limit=2, data_dir=str(data_dir), results_root=str(root))
    with pytest.raises(RunWriteError, match="a part of that path is a file, not a folder") as raised:
        evaluate.run_evaluation(cfg, progress=False)
    assert str(evaluate.eval_run_dir(cfg)) in str(raised.value) and "'results_root'" in str(raised.value)


@pytest.mark.slow  # imports the training stack
def test_an_unwritable_remark_cache_is_named_before_training_starts(tmp_path, data_dir, monkeypatch):
    from saie_lib.stages import train

    monkeypatch.setattr(train, "open_session", lambda *a: pytest.fail("training started"))
    cache = under_a_file(tmp_path, "cache", "remarks.sqlite")
    cfg = load_config("train-tiny", cls=TrainConfig, task="gsm8k", data_dir=str(data_dir),
                      results_root=str(tmp_path / "results"), remark_cache=str(cache))
    with pytest.raises(RunWriteError) as raised:
        train.train(cfg, progress=False)
    message = str(raised.value)
    assert f"cannot write {cache.parent}" in message and "config field 'remark_cache'" in message
    assert not train.training_run_dir(cfg).exists()  # nothing half-made left behind


@pytest.mark.parametrize("error, expected", [
    (RuntimeError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space" })'),
     errno.ENOSPC),  # safetensors
    (sqlite3.OperationalError("database or disk is full"), errno.ENOSPC),
    (sqlite3.OperationalError("attempt to write a readonly database"), errno.EROFS),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), errno.EDQUOT),
    (RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"), None),  # disk is fine
    (ValueError("row 3 is not valid"), None),
    (OSError(errno.ENOENT, "No such file or directory"), None),
])
def test_write_failures_of_other_libraries_are_named_and_nothing_else_is(tmp_path, error, expected):
    named = write_error(error, tmp_path / "adapter")
    assert (named.errno if named else None) == expected
    if named:
        assert str(tmp_path / "adapter") in str(named) and type(error).__name__ in str(named)


def test_around_code_that_also_reads_only_write_only_failures_are_named(tmp_path):
    denied = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "data.jsonl"))
    assert write_error(denied, tmp_path, certain=False) is None  # may have been a read: left as it is
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "adapter" / "model.safetensors"))
    named = write_error(full, tmp_path, certain=False)
    assert f"cannot write {tmp_path / 'adapter' / 'model.safetensors'}: the disk is full" in str(named)


def test_the_setting_to_change_follows_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("SAIE_CACHE_DIR", str(tmp_path / "cache"))
    full = OSError(errno.ENOSPC, "No space left on device")
    assert "env SAIE_CACHE_DIR" in str(write_error(full, tmp_path / "cache" / "models" / "tiny"))
    assert "'remark_cache'" in str(write_error(full, tmp_path / "cache" / "remarks.sqlite"))
    assert "SAIE_RESULTS_DIR" in str(write_error(full, tmp_path / "results" / "runs"))


def private_mount(folder: Path, mount: str) -> list[str]:
    """A command prefix that runs the command with `folder` mounted by `mount` (a shell command reading the folder
    as "$0") in a private mount namespace, which ends with the command: nothing changes outside it. As root
    (whom permissions do not stop), else in a user namespace; skips where neither is allowed."""
    if not shutil.which("unshare"):
        pytest.skip("unshare is not installed")
    namespace = ["--mount"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--mount"]
    prefix = ["unshare", *namespace, "--propagation", "private", "sh", "-c", f'{mount} && exec "$@"', str(folder)]
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount in a private namespace here: {probe.stderr.strip()[:200]}")
    return prefix


FILL_THE_DISK = """
import sys, torch
from pathlib import Path
from saie_lib.artifacts import append_jsonl
from saie_lib.checkpoints import save_checkpoint

class Learner:
    def save_adapter(self, path):
        path.mkdir(parents=True)
        torch.save({"lora": torch.zeros(200_000)}, path / "adapter.pt")  # 800 kB: more than the disk holds

run = Path(sys.argv[1]) / "run"
for write in (lambda: append_jsonl(run / "train_log.jsonl", [{"batch": 0, "text": "x" * 200_000}]),
              lambda: save_checkpoint(run, Learner(), torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))]),
                                      {"next_batch": 1, "step": 1})):
    try:
        write()
    except OSError as error:
        print(type(error).__name__, error.errno, error)
"""


@pytest.mark.slow
def test_a_full_disk_names_the_file_and_says_the_run_resumes(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    prefix = private_mount(disk, 'mount -t tmpfs -o size=64k tmpfs "$0"')  # a 64 kB disk
    done = subprocess.run([*prefix, sys.executable, "-c", FILL_THE_DISK, str(disk)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    appended, checkpoint = done.stdout.strip().splitlines()
    run = disk / "run"
    assert appended.startswith(f"RunWriteError {errno.ENOSPC} [Errno 28] cannot write {run / 'train_log.jsonl'}: "
                               "the disk is full (OSError: ")
    # torch.save says only "unexpected pos": the file system under the path tells why
    assert checkpoint.startswith(f"RunWriteError {errno.ENOSPC} [Errno 28] cannot write {run}: the disk is full")
    for message in (appended, checkpoint):
        assert "Free space on that disk" in message and "SAIE_RESULTS_DIR" in message
        assert "the run resumes where it stopped" in message


def test_a_read_only_results_root_is_one_clear_error_before_any_work(tmp_path, data_dir):
    root = tmp_path / "results"
    root.mkdir()
    if os.geteuid() != 0:  # permissions stop anyone but root
        root.chmod(0o555)
        prefix = []
    else:
        prefix = private_mount(root, 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0"')
    try:
        done = subprocess.run([*prefix, sys.executable, "-m", "saie_lib.reproduce", "--profile", "tiny",
                               "--experiments", "math", "--no-summary", "--data-dir", str(data_dir),
                               "--results-root", str(root)], cwd=REPO, capture_output=True, text=True, timeout=300)
    finally:
        root.chmod(0o755)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    error = next(line for line in done.stderr.splitlines() if line.startswith("error: "))
    assert f"cannot write {root / 'runs' / 'tiny' / 'math' / 'writer.lock'}: " in error
    assert ("mounted read-only" in error) if prefix else ("permission denied" in error)
    assert "--results-root" in error and "resumes" in error
    assert list(root.iterdir()) == [] and read_jsonl(root / "runs" / "tiny" / "reproduce_log.jsonl") == []
