"""This machine's boot and the processes on it, as far as the OS tells (Linux /proc; elsewhere only whether a
pid exists): what a lock needs to tell a live holder from a dead one, and a reused pid from its first owner."""

from __future__ import annotations

import os
from pathlib import Path


def boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _proc_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from its third field (state) on, else None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), which tells a reused pid from its first owner."""
    fields = _proc_fields(pid)
    return fields[19] if fields else None


def process_alive(pid: int, start: str | None = None) -> bool:
    """Whether `pid` runs (a zombie does not) and, given the start time recorded with it, is still that process."""
    fields = _proc_fields(pid)
    if fields is not None:
        return fields[0] not in ("Z", "X") and (start is None or fields[19] == start)
    if Path("/proc/self/stat").exists():  # Linux, and no entry for that pid
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
