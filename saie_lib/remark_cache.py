"""Content-addressed cache of partner remarks (SQLite), and `CachedPartner`, which uses it.

A remark's key is the sha256 of the canonical JSON of (partner model_id, the full messages, the
sampling settings incl. seed): the same request to the same partner is paid for once, across runs.
Each `put_many` is one transaction, so a process killed mid-run leaves only complete entries.
Unusable replies (`partners.unusable_reason`: empty, whitespace only, a refusal) are never stored, and
any such entry left by older code is never served (it counts as a miss and is asked again).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from .artifacts import stable_hash
from .partners import IncompleteBatchError, Messages, Partner, PartnerError, Reply, Sampling, unusable_reason

SCHEMA = """
CREATE TABLE IF NOT EXISTS remarks (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd REAL,
    created_at REAL NOT NULL
)
"""
LOOKUP_CHUNK = 500  # keys per SELECT, well under SQLite's limit on bound parameters


def remark_key(model_id: str, messages: Messages, sampling: Sampling) -> str:
    """sha256 hex of the request; numbers are normalised so that temperature 0 and 0.0 agree."""
    settings = asdict(sampling)
    settings.update(temperature=float(sampling.temperature), top_p=float(sampling.top_p))
    return stable_hash({"model_id": model_id, "messages": list(messages), "sampling": settings}, length=64)


def _row(key: str, reply: Reply, now: float) -> tuple:
    reason = unusable_reason(reply.text)
    if reason is not None:
        raise ValueError(f"refusing to cache an unusable remark under key {key[:16]}: {reason}")
    return key, reply.text, reply.prompt_tokens, reply.completion_tokens, reply.cost_usd, now


NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb", "smbfs", "smb3", "9p", "fuse", "afs", "ceph", "glusterfs")


def mount_type(path: Path, mounts: str = "/proc/mounts") -> str | None:
    """The filesystem type of the mount holding `path` (Linux /proc/mounts; None where it cannot be read)."""
    try:
        table = [line.split()[1:3] for line in Path(mounts).read_text().splitlines() if len(line.split()) > 2]
    except OSError:
        return None
    target = str(path.resolve())
    holding = [(point, kind) for point, kind in table
               if target == point or target.startswith(point.rstrip("/") + "/")]
    return max(holding, key=lambda entry: len(entry[0]))[1] if holding else None


def journal_mode(path: Path, mounts: str = "/proc/mounts") -> str:
    """WAL on a local disk; DELETE (SQLite's default) on a network mount such as Google Drive on Colab, where
    SQLite documents WAL as unsupported (its shared-memory index needs one host's memory)."""
    kind = mount_type(path.parent, mounts) or ""
    return "DELETE" if kind.split(".")[0] in NETWORK_FILESYSTEMS else "WAL"


class RemarkCache:
    """One SQLite file (WAL mode on a local disk, see `journal_mode`) mapping remark keys to replies. Use from one
    thread."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.execute(f"PRAGMA journal_mode={journal_mode(self.path)}")
        with self._db:
            self._db.execute(SCHEMA)
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: Iterable[str]) -> dict[str, Reply]:
        """The cached replies (cached=True) among `keys`; hits and misses count each key asked for."""
        keys = list(keys)
        unique = list(dict.fromkeys(keys))
        found: dict[str, Reply] = {}
        for start in range(0, len(unique), LOOKUP_CHUNK):
            chunk = unique[start:start + LOOKUP_CHUNK]
            rows = self._db.execute(
                "SELECT key, text, prompt_tokens, completion_tokens, cost_usd FROM remarks "
                f"WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            for key, text, prompt_tokens, completion_tokens, cost in rows:
                if unusable_reason(text) is None:
                    found[key] = Reply(text, prompt_tokens, completion_tokens, cost, cached=True)
        self.hits += sum(key in found for key in keys)
        self.misses += sum(key not in found for key in keys)
        return found

    def put_many(self, items: Mapping[str, Reply]) -> None:
        """Store all replies in one transaction: all of them are committed, or none (ValueError if one
        of them is unusable as a remark)."""
        now = time.time()
        rows = (_row(key, reply, now) for key, reply in items.items())
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO remarks (key, text, prompt_tokens, completion_tokens, cost_usd, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)", rows)

    def stats(self) -> dict[str, int]:
        """Entries in the file; hits and misses of this session."""
        (entries,) = self._db.execute("SELECT COUNT(*) FROM remarks").fetchone()
        return {"entries": entries, "hits": self.hits, "misses": self.misses}

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "RemarkCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CachedPartner:
    """A Partner that answers from the cache and asks the wrapped partner only for the misses.

    Every usable reply that arrives is stored, even when the batch fails: on `IncompleteBatchError` the
    replies that did arrive are cached before the error goes on (re-raised with positions in the
    caller's list), so a re-run does not pay for them again."""

    def __init__(self, partner: Partner, cache: RemarkCache):
        self.partner = partner
        self.cache = cache
        self.calls_made = 0  # conversations sent to the wrapped partner
        self.hits = 0  # conversations answered from the cache

    @property
    def model_id(self) -> str:
        return self.partner.model_id

    def chat(self, conversations: Sequence[Messages], sampling: Sampling) -> list[Reply]:
        """Replies in input order: cache hits (cached=True), then one partner call for the unique misses."""
        keys = [remark_key(self.model_id, messages, sampling) for messages in conversations]
        found = self.cache.get_many(keys)
        self.hits += sum(key in found for key in keys)
        missing = {key: messages for key, messages in zip(keys, conversations) if key not in found}
        if missing:
            self.calls_made += len(missing)
            fresh, failure = self._ask(missing, sampling)
            found.update(fresh)
            if failure is not None:
                raise IncompleteBatchError(failure, {i: found[key] for i, key in enumerate(keys) if key in found},
                                           [i for i, key in enumerate(keys) if key not in found])
        return [found[key] for key in keys]

    def _ask(self, missing: dict[str, Messages], sampling: Sampling) -> tuple[dict[str, Reply], str | None]:
        """The wrapped partner's usable replies to `missing` by key, each already stored, and why the
        others got none (None when all did)."""
        asked = list(missing)
        try:
            fresh = self.partner.chat(list(missing.values()), sampling)
        except IncompleteBatchError as error:  # store what did arrive, then pass the failure on
            return self._store({asked[i]: reply for i, reply in error.replies.items()}), str(error)
        if len(fresh) != len(missing):
            raise PartnerError(f"{self.model_id} returned {len(fresh)} replies for {len(missing)} conversations")
        stored = self._store(dict(zip(asked, fresh)))
        if len(stored) == len(asked):
            return stored, None
        reasons = sorted({unusable_reason(reply.text) for reply in fresh} - {None})
        return stored, (f"{self.model_id} returned {len(asked) - len(stored)} unusable replies "
                        f"({'; '.join(reasons)}); they were not cached and none of them is used")

    def _store(self, items: dict[str, Reply]) -> dict[str, Reply]:
        """Cache the usable replies among `items` (one transaction) and return them."""
        usable = {key: reply for key, reply in items.items() if unusable_reason(reply.text) is None}
        self.cache.put_many(usable)
        return usable
