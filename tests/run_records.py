"""What a run dir records, in a form two runs of the same config can be compared by: every file by name; JSON
and JSONL without the fields that say how long something took or how much memory it used (and sets in a fixed
order, and the model cache's folder left out of an adapter's base model path); env records (dates, load) by
name only; checkpoints by name only; everything else byte for byte."""

import json
import re
from pathlib import Path

TIMING_KEYS = ("seconds", "elapsed", "time", "timestamp", "wall")  # the machine's load changes these, not the seed
MEASURED_KEYS = ("resources",)  # peak memory
UNORDERED_KEYS = ("target_modules",)  # a set in peft's adapter_config.json: written in the process's hash order
BUILT_MODEL = re.compile(r"[^\s\"']*/models/")  # an adapter names its base model by its path in the model cache


def _steady(value):
    if isinstance(value, dict):
        return {k: sorted(v) if k in UNORDERED_KEYS else _steady(v) for k, v in value.items()
                if k not in MEASURED_KEYS and not any(t in k for t in TIMING_KEYS)}
    if isinstance(value, list):
        return [_steady(v) for v in value]
    return value


def _record(path: Path, relative: Path):
    if relative.name.startswith("env") and path.suffix == ".json" or relative.parts[0] == "checkpoints":
        return None
    if relative.parts[0] == "adapter" and path.suffix in (".json", ".md"):
        text = BUILT_MODEL.sub("<cache>/models/", path.read_text())
        return _steady(json.loads(text)) if path.suffix == ".json" else text
    if path.suffix == ".json":
        return _steady(json.loads(path.read_text()))
    if path.suffix == ".jsonl":
        return [_steady(json.loads(line)) for line in path.read_text().splitlines()]
    return path.read_bytes()


def run_records(run_dir: Path) -> dict[str, object]:
    """relative path -> comparable content, for every file under `run_dir`."""
    return {p.relative_to(run_dir).as_posix(): _record(p, p.relative_to(run_dir))
            for p in sorted(run_dir.rglob("*")) if p.is_file()}
