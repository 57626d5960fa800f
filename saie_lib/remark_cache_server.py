"""The remark cache served by one process to the runs of a Ray dispatch (`saie_lib.ray_executor`).

SQLite's write-ahead log needs every process that writes a file to be on one machine, and file locks on network
filesystems are not to be trusted. Under `--executor ray` the runs may sit on several machines, so none of them
opens the SQLite file: one Ray actor on the dispatching machine does, and every run's `open_remark_cache` gets a
`ServedRemarkCache` that forwards `get_many` / `put_many` to it. The actor answers one call at a time, so every
stored entry is whole and the first usable reply stored under a key is the one every run gets back.

A run's remark budget (saie_lib.remark_budget) holds its learner's tokenizer, which stays with the run: the actor
matches entries to the budget by its id (a remark cut to another budget is a miss, as in `RemarkCache.get_many`)
and the run cuts a whole remark to its budget itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from .partners import Reply, unusable_reason
from .remark_cache import RemarkCache

ACTOR_NAME = "saie-remark-cache"
NAMESPACE = "saie"
SERVED_ENV = "SAIE_REMARK_CACHE_SERVED"  # set by `--executor ray` for its runs


def open_remark_cache(path: str | Path) -> "RemarkCache | ServedRemarkCache":
    """The cache a run uses: the SQLite file at `path`; inside a Ray dispatch, that file as served by the one
    process that opens it (runs on several machines must not write one SQLite file themselves)."""
    return ServedRemarkCache(path) if os.environ.get(SERVED_ENV) else RemarkCache(path)


@dataclass(frozen=True)
class BudgetLabel:
    """A remark budget as the actor knows it: its id only. Entries are matched to it; nothing is cut here."""

    budget_id: str

    def apply(self, reply: Reply) -> Reply:
        return reply


def budget_label(budget: Any) -> BudgetLabel | None:
    return None if budget is None else BudgetLabel(budget.budget_id)


class RemarkCacheServer:
    """The one process that opens the SQLite files (made a Ray actor by `start_server`)."""

    def __init__(self) -> None:
        self.caches: dict[str, Any] = {}

    def _cache(self, path: str) -> RemarkCache:
        if path not in self.caches:
            self.caches[path] = RemarkCache(path)
        return self.caches[path]

    def get_many(self, path: str, keys: list[str], budget: BudgetLabel | None) -> tuple[dict, int, str | None]:
        """The entries served under `budget` (not cut yet), the checksum mismatches met, where a damaged file went."""
        cache = self._cache(path)
        rejected = cache.rejected
        found = cache._lookup(list(dict.fromkeys(keys)), budget)
        return found, cache.rejected - rejected, str(cache.moved_aside) if cache.moved_aside else None

    def put_many(self, path: str, items: dict, budget: BudgetLabel | None) -> dict:
        return self._cache(path).put_many(items, budget)

    def entries(self, path: str) -> int:
        return self._cache(path).stats()["entries"]


def start_server():
    """The actor, on this machine (where the dispatch runs), restarted if it dies; its handle."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(RemarkCacheServer).options(
        name=ACTOR_NAME, namespace=NAMESPACE, num_cpus=0, max_restarts=-1, max_task_retries=-1,
        scheduling_strategy=here, get_if_exists=True).remote()


class ServedRemarkCache:
    """RemarkCache's interface, answered by the server actor (inside a Ray task of the dispatch)."""

    def __init__(self, path: str | Path):
        import ray

        self.path = str(Path(path))
        self.server = ray.get_actor(ACTOR_NAME, namespace=NAMESPACE)
        self.hits = 0
        self.misses = 0
        self.rejected = 0  # entries whose checksum did not match, met by this run's lookups
        self.moved_aside: Path | None = None  # where the server moved a damaged file

    def _call(self, method: str, *args: Any) -> Any:
        import ray

        return ray.get(getattr(self.server, method).remote(self.path, *args))

    def get_many(self, keys: Iterable[str], budget: Any = None) -> dict[str, Reply]:
        keys = list(keys)
        found, rejected, moved_aside = self._call("get_many", keys, budget_label(budget))
        found = _cut(found, budget)
        self.rejected += rejected
        self.moved_aside = Path(moved_aside) if moved_aside else self.moved_aside
        self.hits += sum(key in found for key in keys)
        self.misses += sum(key not in found for key in keys)
        return found

    def put_many(self, items: Mapping[str, Reply], budget: Any = None) -> dict[str, Reply]:
        """As `RemarkCache.put_many`: the reply each key now serves (another run's, where it stored one first)."""
        held = self._call("put_many", dict(items), budget_label(budget))
        kept = _cut({key: reply for key, reply in held.items() if reply.cached}, budget)
        return {key: kept[key] if key in kept and kept[key].text != reply.text else reply
                for key, reply in items.items()}

    def stats(self) -> dict[str, int]:
        return {"entries": self._call("entries"), "hits": self.hits, "misses": self.misses}

    def close(self) -> None:
        pass

    def __enter__(self) -> "ServedRemarkCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _cut(found: dict[str, Reply], budget: Any) -> dict[str, Reply]:
    """`found` cut to `budget` (a RemarkBudget; None: as they are), less what is unusable after the cut."""
    if budget is None:
        return found
    cut = {key: budget.apply(reply) for key, reply in found.items()}
    return {key: reply for key, reply in cut.items() if unusable_reason(reply.text) is None}
