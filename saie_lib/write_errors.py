"""Write errors that say which path failed, why, what to change, and that nothing finished is lost.

A full disk, a read-only mount or a folder this user may not write surfaces deep inside a run as a bare
"[Errno 28]" or, from torch and safetensors, as "unexpected pos" or "os error 28" with no path. Every writer of
run records goes through `naming_write_errors(path)`, which turns such a failure into one `RunWriteError`
(an OSError with the same errno) naming the path and the setting that chooses it. Writes are atomic or
line-appended, so what was written before the failure stays valid and a rerun resumes.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from .paths import cache_dir, remark_cache_file

T = TypeVar("T")

RESULTS_SETTING = "the results root (config field 'results_root', env SAIE_RESULTS_DIR, or --results-root)"
CACHE_SETTING = "the cache dir (env SAIE_CACHE_DIR)"
REMARK_CACHE_SETTING = "the remark cache (config field 'remark_cache' or env SAIE_REMARK_CACHE)"

_FULL = "Free space on that disk, or point {setting} at a folder on another disk."
FIXES = {
    errno.ENOSPC: ("the disk is full", _FULL),
    errno.EDQUOT: ("the disk quota is used up", _FULL),
    errno.EROFS: ("the file system is mounted read-only",
                  "Remount it read-write, or point {setting} at a writable folder."),
    errno.EACCES: ("permission denied", "Let this user write there (owner or permissions), or point {setting} "
                                        "at a writable folder."),
    errno.EPERM: ("operation not permitted", "Let this user write there (owner or permissions), or point "
                                             "{setting} at a writable folder."),
    errno.ENOTDIR: ("a part of that path is a file, not a folder",
                    "Move that file away, or point {setting} at a folder."),
}
RESUMES = "Nothing finished is lost: run the same command again and the run resumes where it stopped."
# How libraries written in other languages spell the OS error (safetensors: "os error 28"; SQLite: its own words).
_TEXT_ERRNO = [(re.compile(r"os error (\d+)|\[Errno (\d+)\]|Os \{ code: (\d+)"), None),
               (re.compile(r"No space left on device|database or disk is full", re.I), errno.ENOSPC),
               (re.compile(r"Read-only file system|readonly database", re.I), errno.EROFS),
               (re.compile(r"Permission denied", re.I), errno.EACCES)]
NEARLY_FULL_BYTES = 16 * 1024 * 1024  # an opaque write failure with less than this free is a full disk


class RunWriteError(OSError):
    """A record could not be written; the message names the path, the reason and what to change."""


def _text_errno(error: BaseException) -> int | None:
    text = str(error)
    for pattern, number in _TEXT_ERRNO:
        match = pattern.search(text)
        if match:
            return number if number is not None else int(next(g for g in match.groups() if g))
    return None


def _opaque(error: BaseException) -> bool:
    """An error that may hide a failed write without saying so: torch's RuntimeError, another library's own."""
    return type(error) is RuntimeError or type(error).__module__ != "builtins"


def _existing_parent(path: Path) -> Path | None:
    for folder in (path, *path.parents):
        if folder.is_dir():
            return folder
    return None


def diagnosed_errno(path: str | Path) -> int | None:
    """Why writing under `path` would fail, read from its file system (read-only, full, not writable), else None."""
    folder = _existing_parent(Path(path))
    if folder is None:
        return None
    if hasattr(os, "statvfs") and os.statvfs(folder).f_flag & os.ST_RDONLY:
        return errno.EROFS
    if shutil.disk_usage(folder).free < NEARLY_FULL_BYTES:
        return errno.ENOSPC
    return None if os.access(folder, os.W_OK) else errno.EACCES


WRITE_ONLY_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})  # no read fails with these


def setting_for(path: str | Path) -> str:
    """The setting that chose `path`: the remark cache, the cache dir, else the results root."""
    resolved = os.path.realpath(path)
    for root, setting in ((remark_cache_file(), REMARK_CACHE_SETTING), (cache_dir(), CACHE_SETTING)):
        root = os.path.realpath(root)
        if resolved == root or resolved.startswith(root.rstrip(os.sep) + os.sep):
            return setting
    return RESULTS_SETTING


def write_error(error: BaseException, path: str | Path, setting: str | None = None, *,
                certain: bool = True) -> RunWriteError | None:
    """`error` as a RunWriteError naming `path`, when it is a write failure this module can name (else None).
    An OSError is judged by its errno, anything else (torch, safetensors, SQLite) by its text and, when the
    failed operation was `certain`ly a write, by the state of the file system under `path`. Around code that
    also reads, `certain=False` names only errors no read raises (full disk, read-only file system), and names
    the file the error itself names where it names one."""
    if isinstance(error, RunWriteError):
        return None
    number = (error.errno if isinstance(error, OSError) else None) or _text_errno(error)
    if number is None and certain and _opaque(error):
        number = diagnosed_errno(path)
    if number not in FIXES or not (certain or number in WRITE_ONLY_ERRNOS):
        return None
    if not certain:
        path = getattr(error, "filename", None) or f"a file under {path}"
    reason, fix = FIXES[number]
    setting = setting or setting_for(path)
    detail = f"{type(error).__name__}: {error}".splitlines()[0][:300]
    return RunWriteError(number, f"cannot write {path}: {reason} ({detail}). {fix.format(setting=setting)} "
                                 f"{RESUMES}")


@contextmanager
def naming_write_errors(path: str | Path, setting: str | None = None, *, certain: bool = True) -> Iterator[None]:
    """Around a write of `path` (or, not `certain`, of files under it): a failure that `write_error` can name
    is raised as that RunWriteError."""
    try:
        yield
    except Exception as error:
        named = write_error(error, path, setting, certain=certain)
        if named is None:
            raise
        raise named from error


def writes_path(writer: Callable[..., T] | None = None, *, setting: str | None = None):
    """Decorator (`@writes_path`, or `@writes_path(setting=...)`) of a function whose first argument is the path
    it writes: its write errors are named, with `setting` as what to change."""
    def decorate(function: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(function)
        def write(path: str | Path, *args: Any, **kwargs: Any) -> T:
            with naming_write_errors(path, setting):
                return function(path, *args, **kwargs)
        return write
    return decorate(writer) if writer is not None else decorate


def check_writable_folder(folder: str | Path, setting: str | None = None) -> Path:
    """Create `folder` if needed and write and remove a probe file in it, before any work depends on it."""
    folder = Path(folder)
    with naming_write_errors(folder, setting):
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    return folder
