"""One writer per run dir: an exclusive lock taken when a run starts or resumes.

The lock is a file, `writer.lock`, in the folder it guards, created with O_CREAT|O_EXCL (atomic on local
disks and on NFS v3 and later), holding its holder: host, boot id, pid and that pid's start time, the start
time of the lock and a random token. The holder also keeps an flock on the file where the file system has
them (the kernel drops it when the process dies, however it died) and touches the file every `HEARTBEAT_S`
seconds. Another process that finds the file takes it over when it is stale, else waits or refuses
(`RunLockedError`, naming the folder, the holder and how to clear it). Stale means: the holder ran on this
machine and its process is gone (flock released, pid gone or now another process's, or the machine
restarted), or it ran on another host and its heartbeat stopped `STALE_AFTER_S` seconds ago. A takeover
goes through a second O_EXCL file, `writer.lock.break`, and judges the lock again under it, so two processes
that find one stale lock never both take it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .processes import boot_id, process_alive, process_start
from .write_errors import naming_write_errors

try:
    import fcntl
except ImportError:  # Windows: no flock; the lock file and the pid check still hold
    fcntl = None

LOCK_NAME = "writer.lock"
BREAK_NAME = LOCK_NAME + ".break"
HEARTBEAT_S = 30.0  # the holder touches its lock file this often
STALE_AFTER_S = 600.0  # a lock from another host without a heartbeat for this long is stale (clock skew, NFS caching)
BREAK_STALE_S = 60.0  # a takeover file older than this was left by a killed process
POLL_S = 0.5
ANNOUNCE_EVERY_S = 600.0
_HELD: dict[str, "RunLock"] = {}


class RunLockedError(RuntimeError):
    """Another live process holds the folder's lock (or took it over from this one)."""


def lock_path(folder: str | Path) -> Path:
    return Path(folder) / LOCK_NAME


def _key(folder: str | Path) -> str:
    return os.path.realpath(folder)


# --- who holds it, and is that process still there ----------------------------------------------------------

def holder_record(flock: bool) -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "boot_id": boot_id(), "pid": pid, "pid_start": process_start(pid),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "flock": flock,
            "token": secrets.token_hex(8), "command": " ".join(sys.argv)[:200]}


@dataclass
class Holder:
    """What a lock file says: its record (None while it is being written, or when damaged), the seconds since
    its last heartbeat, and whether its flock is free (None: this file system has no flock)."""

    record: dict[str, Any] | None
    age_s: float
    flock_free: bool | None


def _probe_flock(fd: int) -> bool | None:
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    fcntl.flock(fd, fcntl.LOCK_UN)
    return True


def read_holder(path: Path) -> Holder | None:
    """The lock file's holder, or None when there is no lock file."""
    try:
        try:
            fd = os.open(path, os.O_RDWR)  # an exclusive flock over NFS needs a writable descriptor
        except PermissionError:
            fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        flock_free = _probe_flock(fd)
        data, age = os.read(fd, 1 << 16), time.time() - os.fstat(fd).st_mtime
    finally:
        os.close(fd)
    try:
        record = json.loads(data)
    except ValueError:
        record = None
    return Holder(record if isinstance(record, dict) and "pid" in record else None, age, flock_free)


def stale_reason(holder: Holder) -> str | None:
    """Why the holder is gone, or None while it may still be writing."""
    record = holder.record
    if holder.flock_free is False:
        return None
    if record is None:
        return f"its lock file is unreadable and untouched for {holder.age_s:.0f} s" \
            if holder.age_s > STALE_AFTER_S else None
    pid = record["pid"]
    if record.get("host") == socket.gethostname():
        if record.get("boot_id") and boot_id() and record["boot_id"] != boot_id():
            return f"this machine restarted since process {pid} took it"
        if holder.flock_free and record.get("flock"):
            return f"process {pid} has ended (its file lock was released)"
        if not process_alive(pid, record.get("pid_start")):
            return f"process {pid} no longer runs"
        return None
    if holder.age_s > STALE_AFTER_S:
        return f"no heartbeat from process {pid} on host {record.get('host')} for {holder.age_s:.0f} s"
    return None


def locked_message(folder: Path, what: str, holder: Holder) -> str:
    record = holder.record
    who = (f"process {record['pid']} on host {record.get('host')} (since {record.get('started_at')}, last "
           f"heartbeat {holder.age_s:.0f} s ago)" if record else "a process whose lock file is still being written")
    return (f"{what} {folder} is being written by {who}. A holder that dies on this machine is detected at once; "
            f"one on another host is taken over after {STALE_AFTER_S / 60:.0f} min without a heartbeat. If you "
            f"are sure it has stopped, delete {lock_path(folder)}.")


# --- taking, keeping and giving back ---------------------------------------------------------------------

class RunLock:
    """A held lock: its open file (which keeps the flock) and a heartbeat thread that touches it."""

    def __init__(self, folder: Path, fd: int, record: dict[str, Any], created_folder: bool = False):
        self.folder, self.path, self.fd, self.record = folder, lock_path(folder), fd, record
        self.created_folder = created_folder
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name=f"lock {folder.name}", daemon=True)
        self._beat.start()
        _HELD[_key(folder)] = self

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.fd)
            except OSError:
                pass

    def still_held(self) -> bool:
        """The file at the lock's path is still the one this process created (no one took it over)."""
        try:
            at_path, ours = os.stat(self.path), os.fstat(self.fd)
        except OSError:
            return False
        return (at_path.st_ino, at_path.st_dev) == (ours.st_ino, ours.st_dev)

    def release(self) -> None:
        self._stop.set()
        self._beat.join(timeout=5)
        if self.still_held():
            self.path.unlink(missing_ok=True)
        os.close(self.fd)  # drops the flock
        if self.created_folder:  # a start that failed before writing anything leaves no empty run dir behind
            with contextlib.suppress(OSError):
                self.folder.rmdir()
        _HELD.pop(_key(self.folder), None)


def _take_flock(fd: int) -> bool:
    """flock the new lock file; a reader probing it holds the flock for microseconds, so retry briefly."""
    for _ in range(20 if fcntl else 0):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            time.sleep(0.05)
        except OSError:  # no flock on this file system
            return False
    return False


def _create(folder: Path, setting: str | None) -> RunLock | None:
    path = lock_path(folder)
    with naming_write_errors(path, setting):
        created = not folder.is_dir()
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except (FileExistsError, FileNotFoundError):  # held; or the folder was just removed by a releasing holder
            return None
        try:
            record = holder_record(_take_flock(fd))
            os.write(fd, (json.dumps(record) + "\n").encode())
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
    return RunLock(folder, fd, record, created)


def _break_stale(folder: Path, what: str) -> None:
    """Remove the lock file when, judged again under `writer.lock.break`, it is still stale."""
    breaker = Path(folder) / BREAK_NAME
    try:
        fd = os.open(breaker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        try:
            if time.time() - breaker.stat().st_mtime > BREAK_STALE_S:
                breaker.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        time.sleep(POLL_S)
        return
    try:
        holder = read_holder(lock_path(folder))
        reason = stale_reason(holder) if holder else None
        if reason:
            lock_path(folder).unlink(missing_ok=True)
            print(f"[saie] took over the lock of {what} {folder}: {reason}", file=sys.stderr, flush=True)
    finally:
        os.close(fd)
        breaker.unlink(missing_ok=True)


def acquire(folder: str | Path, *, wait: bool = True, what: str = "run", setting: str | None = None) -> RunLock:
    """Take `folder`'s lock: a stale one is taken over; a live holder is waited for (polling, with a line on
    stderr every ten minutes) or, with wait=False, refused with RunLockedError."""
    folder = Path(folder)
    if _key(folder) in _HELD:
        raise RuntimeError(f"this process already holds the lock of {what} {folder}")
    announced = None
    while True:
        lock = _create(folder, setting)
        if lock is not None:
            return lock
        holder = read_holder(lock_path(folder))
        if holder is None:
            continue
        if stale_reason(holder) is not None:
            _break_stale(folder, what)
            continue
        message = locked_message(folder, what, holder)
        if not wait:
            raise RunLockedError(message)
        if announced is None or time.monotonic() - announced > ANNOUNCE_EVERY_S:
            print(f"[saie] {message} Waiting for it to finish.", file=sys.stderr, flush=True)
            announced = time.monotonic()
        time.sleep(POLL_S)


@contextmanager
def hold(folder: str | Path, *, wait: bool = True, what: str = "run",
         setting: str | None = None) -> Iterator[RunLock]:
    """`folder`'s lock for the duration of the block (see `acquire`)."""
    lock = acquire(folder, wait=wait, what=what, setting=setting)
    try:
        yield lock
    finally:
        lock.release()


def ensure_held(folder: str | Path) -> None:
    """Before a run is marked finished: this process holds its lock, and no one took it over meanwhile."""
    lock = _HELD.get(_key(folder))
    if lock is None:
        raise RuntimeError(f"{folder}: written without holding its lock; take it with saie_lib.run_lock.hold")
    if not lock.still_held():
        raise RunLockedError(f"{folder}: another process took this run's lock over while this one was writing "
                             "it (it judged this process gone); the run is left unfinished: check that only one "
                             "process writes it, then run again")
