"""Content-addressed cache of partner remarks (SQLite), and `CachedPartner`, which uses it.

A remark's key is the sha256 of the canonical JSON of (partner model_id, the full messages, the
sampling settings incl. seed): the same request to the same partner is paid for once, across runs.
Each `put_many` is one transaction, so a process killed mid-run leaves only complete entries.
Unusable replies (`partners.unusable_reason`: empty, whitespace only, a refusal) are never stored, and
any such entry left by older code is never served (it counts as a miss and is asked again).
Several processes may share one file (parallel runs, `--executor ray` on one machine): a writer waits for
another's transaction (BUSY_TIMEOUT_S) instead of failing, and the first usable reply stored under a key is
kept, so two runs that asked the same prompt at once both use that one reply (each may have paid for its own
call; once a reply is stored it is never paid for again).

The cache only saves partner calls, so it heals instead of failing: every entry carries a checksum, and an
entry whose checksum does not match (edited by hand, or damaged) is a miss, counted in `rejected`; a file that
SQLite finds damaged or that is not a database is moved aside (`<name>.damaged-<time>`, named in a one-line
warning and in `moved_aside`) and the run goes on with a fresh cache, asking the partner again. Entries written
before checksums existed get theirs when the file is first opened by this code. A remark cut to a token budget
(saie_lib.remark_budget) is stored with that budget and served only under the same one; a whole remark is served
under any budget, cut to it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .artifacts import stable_hash
from .partners import IncompleteBatchError, Messages, Partner, PartnerError, Reply, Sampling, unusable_reason
from .progress import warn

SCHEMA = """
CREATE TABLE IF NOT EXISTS remarks (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd REAL,
    created_at REAL NOT NULL,
    cut_chars INTEGER NOT NULL DEFAULT 0,
    budget TEXT,
    checksum TEXT
)
"""
# Columns added after caches were in use: added to an older file when it is opened.
ADDED_COLUMNS = {"cut_chars": "INTEGER NOT NULL DEFAULT 0", "budget": "TEXT", "checksum": "TEXT"}
STORED = "key, text, prompt_tokens, completion_tokens, cost_usd, cut_chars, budget"
LOOKUP_CHUNK = 500  # keys per SELECT, well under SQLite's limit on bound parameters
REMEDY = ("the cache only saves partner calls: point the config field 'remark_cache' (or the environment variable "
          "SAIE_REMARK_CACHE) at another file, or remove this one")
BUSY_TIMEOUT_S = 120.0  # how long a writer waits for another process's transaction on the same file


def remark_key(model_id: str, messages: Messages, sampling: Sampling) -> str:
    """sha256 hex of the request; numbers are normalised so that temperature 0 and 0.0 agree."""
    settings = asdict(sampling)
    settings.update(temperature=float(sampling.temperature), top_p=float(sampling.top_p))
    return stable_hash({"model_id": model_id, "messages": list(messages), "sampling": settings}, length=64)


def entry_checksum(key: str, text: str, prompt_tokens: int, completion_tokens: int, cost_usd: float | None,
                   cut_chars: int, budget: str | None) -> str:
    """sha256 of everything an entry stores (created_at aside): an entry edited after it was written fails it."""
    return stable_hash([key, text, prompt_tokens, completion_tokens, cost_usd, cut_chars, budget], length=64)


def _row(key: str, reply: Reply, budget: str | None, now: float) -> tuple:
    reason = unusable_reason(reply.text)
    if reason is not None:
        raise ValueError(f"refusing to cache an unusable remark under key {key[:16]}: {reason}")
    stored = (key, reply.text, reply.prompt_tokens, reply.completion_tokens, reply.cost_usd, reply.cut_chars,
              budget if reply.cut_chars else None)
    return (*stored, entry_checksum(*stored), now)


def _is_damage(error: sqlite3.DatabaseError) -> bool:
    """A damaged file or one that is not a database (not: locked, read-only, cannot be opened)."""
    return not isinstance(error, sqlite3.OperationalError)


def check_cache_path(path: Path) -> None:
    """A remark cache path that exists must be a file (SQLite's own error would not say which path it tried)."""
    if path.exists() and not path.is_file():
        raise ValueError(f"remark cache {path} is a folder, not a file; expected the path of a SQLite file "
                         "(config field 'remark_cache', or the environment variable SAIE_REMARK_CACHE)")


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
        check_cache_path(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self.rejected = 0  # entries whose checksum did not match: misses, asked again
        self.moved_aside: Path | None = None  # where a damaged file went
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        """A connection to a usable file; a damaged one is moved aside first."""
        try:
            return self._connect()
        except sqlite3.DatabaseError as error:
            if not _is_damage(error):
                raise ValueError(f"cannot open the remark cache {self.path} ({error}); {REMEDY}") from None
            self._move_aside(error)
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path)
        try:
            db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            db.execute(f"PRAGMA journal_mode={journal_mode(self.path)}")
            problems = db.execute("PRAGMA quick_check").fetchall()
            if problems != [("ok",)]:
                raise sqlite3.DatabaseError(f"integrity check: {problems[0][0]}")
            with db:
                db.execute(SCHEMA)
                _add_checksums(db)
        except sqlite3.Error:
            db.close()
            raise
        return db

    def _move_aside(self, error: sqlite3.DatabaseError) -> None:
        """Move the damaged file (and its WAL and shared-memory files) aside, with a one-line warning."""
        target = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        while target.exists():
            target = target.with_name(target.name + "-")
        try:
            for suffix in ("-wal", "-shm", ""):
                side = Path(f"{self.path}{suffix}")
                if side.exists():
                    os.replace(side, f"{target}{suffix}")
        except OSError as move_error:
            raise ValueError(f"the remark cache {self.path} is damaged ({error}) and could not be moved aside "
                             f"({move_error.strerror}); {REMEDY}") from None
        self.moved_aside = target
        warn(f"remark cache {self.path} was damaged ({error}); moved it aside to {target.name} and started a fresh "
             "cache: its remarks will be asked for again")

    def _healing(self, operation: Callable[..., Any], *args: Any) -> Any:
        """`operation(*args)`, run again on a fresh cache if the file turns out to be damaged while in use."""
        try:
            return operation(*args)
        except sqlite3.DatabaseError as error:
            if not _is_damage(error):
                raise
            self._db.close()
            self._move_aside(error)
            self._db = self._connect()
            return operation(*args)

    def get_many(self, keys: Iterable[str], budget: Any = None) -> dict[str, Reply]:
        """The cached replies (cached=True) among `keys`, cut to `budget` (a RemarkBudget) when given; hits and
        misses count each key asked for. An entry cut to another budget, or unusable after the cut, is a miss."""
        keys = list(keys)
        found = self._lookup(list(dict.fromkeys(keys)), budget)
        self.hits += sum(key in found for key in keys)
        self.misses += sum(key not in found for key in keys)
        return found

    def _lookup(self, unique: list[str], budget: Any, *, writing: bool = False) -> dict[str, Reply]:
        """The entries among `unique` that serve under `budget`, as served (no hits or misses counted). `writing`:
        inside put_many's transaction (which heals as a whole; its rejected entries were counted when asked for)."""
        found: dict[str, Reply] = {}
        for start in range(0, len(unique), LOOKUP_CHUNK):
            chunk = unique[start:start + LOOKUP_CHUNK]
            for row in self._select(chunk) if writing else self._healing(self._select, chunk):
                reply = self._served(row, budget, count_rejected=not writing)
                if reply is not None:
                    found[row[0]] = reply
        return found

    def _select(self, keys: list[str]) -> list[tuple]:
        query = f"SELECT {STORED}, checksum FROM remarks WHERE key IN ({','.join('?' * len(keys))})"
        return self._db.execute(query, keys).fetchall()

    def _served(self, row: tuple, budget: Any, count_rejected: bool = True) -> Reply | None:
        """The reply an entry serves under `budget`, or None (a checksum mismatch, another budget, unusable)."""
        *stored, checksum = row
        key, text, prompt_tokens, completion_tokens, cost, cut_chars, stored_budget = stored
        if checksum != entry_checksum(*stored):
            if count_rejected:
                self.rejected += 1
            return None
        if cut_chars and stored_budget != (budget.budget_id if budget is not None else None):
            return None
        reply = Reply(text, prompt_tokens, completion_tokens, cost, cached=True, cut_chars=cut_chars)
        if budget is not None:
            reply = budget.apply(reply)
        return reply if unusable_reason(reply.text) is None else None

    def put_many(self, items: Mapping[str, Reply], budget: Any = None) -> dict[str, Reply]:
        """Store all replies in one transaction: all of them are committed, or none (ValueError if one
        of them is unusable as a remark). A cut reply is stored with `budget` (the RemarkBudget it was cut to).
        A key that already holds an entry served under `budget` keeps it (another process stored it first);
        returned: the reply each key now serves, that one (cached=True) where it differs."""
        now = time.time()
        budget_id = budget.budget_id if budget is not None else None
        rows = [_row(key, reply, budget_id, now) for key, reply in items.items()]

        def insert() -> dict[str, Reply]:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")  # no other writer between the lookup and the insert
                kept = self._lookup(list(items), budget, writing=True)
                self._db.executemany(f"INSERT OR REPLACE INTO remarks ({STORED}, checksum, created_at) "
                                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [r for r in rows if r[0] not in kept])
            return kept
        kept = self._healing(insert)
        return {key: kept[key] if key in kept and kept[key].text != reply.text else reply
                for key, reply in items.items()}

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


def _add_checksums(db: sqlite3.Connection) -> None:
    """An older file: add the columns it lacks, and checksum the entries it holds (trusted as they are now)."""
    present = {row[1] for row in db.execute("PRAGMA table_info(remarks)")}
    for name, kind in ADDED_COLUMNS.items():
        if name not in present:
            db.execute(f"ALTER TABLE remarks ADD COLUMN {name} {kind}")
    if "checksum" not in present:
        rows = db.execute(f"SELECT {STORED} FROM remarks").fetchall()
        db.executemany("UPDATE remarks SET checksum = ? WHERE key = ?", [(entry_checksum(*r), r[0]) for r in rows])


class CachedPartner:
    """A Partner that answers from the cache and asks the wrapped partner only for the misses.

    Every usable reply that arrives is stored, even when the batch fails: on `IncompleteBatchError` the
    replies that did arrive are cached before the error goes on (re-raised with positions in the
    caller's list), so a re-run does not pay for them again. A partner with a `budget` (a RemarkBudget) cuts its
    replies to it; cached replies are served under that budget only (RemarkCache.get_many)."""

    def __init__(self, partner: Partner, cache: RemarkCache):
        self.partner = partner
        self.cache = cache
        self.budget = getattr(partner, "budget", None)
        self.calls_made = 0  # conversations sent to the wrapped partner
        self.hits = 0  # conversations answered from the cache

    @property
    def model_id(self) -> str:
        return self.partner.model_id

    def chat(self, conversations: Sequence[Messages], sampling: Sampling) -> list[Reply]:
        """Replies in input order: cache hits (cached=True), then one partner call for the unique misses."""
        keys = [remark_key(self.model_id, messages, sampling) for messages in conversations]
        found = self.cache.get_many(keys, self.budget)
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
        return self.cache.put_many(usable, self.budget)
