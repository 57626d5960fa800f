"""Do two results roots hold the same study? `python -m saie_lib.record_compare A B` compares every run's
samples, transcripts, training log and metrics, file by file.

Samples are compared byte for byte. Transcripts, training logs and metrics are compared byte for byte too,
except the fields that say how this session got a result rather than what the result is: whether a partner
remark came from the remark cache or from the partner (which depends on which run asked first: with runs in
parallel, or after a resume, the same remark is a hit in one and a miss in the other), and how long a step
took or how much memory the process peaked at. Those fields are left out of both sides before comparing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

SESSION_KEYS = frozenset({"cache_hit", "partner_cache_hits", "calls_this_session", "cache_hits_this_session",
                          "resources"})
TIMING_MARK = "seconds"
COMPARED = ("samples*.jsonl", "transcripts.jsonl", "train_log.jsonl", "metrics.json")
BYTE_EXACT = "samples"


def without_session_facts(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_session_facts(v) for k, v in value.items()
                if k not in SESSION_KEYS and TIMING_MARK not in k}
    if isinstance(value, list):
        return [without_session_facts(v) for v in value]
    return value


def comparable_text(path: Path) -> bytes:
    """The file as compared: samples as they are; the others re-serialised without session facts."""
    raw = path.read_bytes()
    if path.name.startswith(BYTE_EXACT):
        return raw
    if path.suffix == ".jsonl":
        rows = [without_session_facts(json.loads(line)) for line in raw.splitlines() if line.strip()]
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    return json.dumps(without_session_facts(json.loads(raw)), indent=2, sort_keys=True).encode()


def record_files(root: Path) -> dict[Path, Path]:
    """relative path -> file, for every compared file of every run dir under `root`."""
    found = {}
    for pattern in COMPARED:
        for path in root.rglob(pattern):
            if "checkpoints" not in path.relative_to(root).parts:
                found[path.relative_to(root)] = path
    return found


def differences(first: Path, second: Path) -> list[str]:
    """What differs between the records under two roots: files only one has, files whose content differs."""
    a, b = record_files(Path(first)), record_files(Path(second))
    problems = [f"only in {first}: {p}" for p in sorted(set(a) - set(b))]
    problems += [f"only in {second}: {p}" for p in sorted(set(b) - set(a))]
    problems += [f"differs: {p}" for p in sorted(set(a) & set(b)) if comparable_text(a[p]) != comparable_text(b[p])]
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m saie_lib.record_compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path, help="a results root, or a folder of run dirs")
    parser.add_argument("second", type=Path)
    args = parser.parse_args(argv)
    found = differences(args.first, args.second)
    count = len(record_files(args.first))
    print("\n".join(found) if found else f"same records: {count} files")
    return 1 if found or not count else 0


if __name__ == "__main__":
    sys.exit(main())
