"""What a run used: peak memory of this process (RSS) and of the GPU, and the memory allocator behind the RSS,
recorded with every run's metrics.

The allocator matters on CPU: glibc's malloc raises its mmap threshold after each large free, so a training step's
activations (tens of MB each) come from a heap it cannot hand back, and the peak RSS of a step ends up about twice
its live memory (one LoRA step of SmolLM2-135M on 8 x 512 tokens, checkpointing off or on: about half the peak under
tcmalloc, no slower; results/bench/allocators-*.json). `make reproduce` preloads tcmalloc where it is installed
(Makefile, MALLOC_LIB); the numbers computed do not depend on it.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any, Iterable


def peak_memory() -> dict[str, Any]:
    """Peak resident memory of this process so far, and peak GPU memory allocated by torch (None without CUDA).
    Both are process-wide peaks: a notebook that ran several stages reports the largest of them."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    rss_bytes = rss if sys.platform == "darwin" else rss * 1024
    gpu = None
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            gpu = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return {"peak_rss_gb": round(rss_bytes / 2**30, 2), "peak_gpu_gb": gpu, "allocator": allocator()}


ALLOCATORS = ("tcmalloc", "jemalloc", "mimalloc")


def allocator(maps: str | Path = "/proc/self/maps") -> str:
    """The malloc this process runs on: a preloaded one named in its memory map, else 'glibc' (on Linux), or
    'unknown' where the map cannot be read (not Linux)."""
    try:
        text = Path(maps).read_text()
    except OSError:
        return "unknown"
    return next((name for name in ALLOCATORS if f"lib{name}" in text), "glibc")


def largest_recorded_peak(run_dirs: Iterable[Path]) -> tuple[float, Path] | None:
    """The largest `resources.peak_rss_gb` the runs' metrics.json record, and its run; None where none records it
    (runs made before it was recorded). A run's peak is its process's: a notebook that ran several stages first
    reports the largest of them."""
    peaks = [(recorded_resources(run).get("peak_rss_gb"), run) for run in run_dirs]
    peaks = [peak for peak in peaks if peak[0] is not None]
    return max(peaks, key=lambda peak: peak[0]) if peaks else None


def allocator_note(run: Path) -> str:
    """' under <allocator>' as the run's metrics.json records it (the peak depends on it), else a note that
    it is not recorded (runs made before it was: glibc's malloc, unless the user preloaded another)."""
    name = recorded_resources(run).get("allocator")
    return f" under {name}" if name else " (allocator not recorded)"


def recorded_resources(run: Path) -> dict:
    """The `resources` section of a run's metrics.json; empty where the run has none (not finished, or older)."""
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    return metrics.get("resources") or {}
