"""What a run used: peak memory of this process (RSS) and of the GPU, recorded with every run's metrics."""

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
    return {"peak_rss_gb": round(rss_bytes / 2**30, 2), "peak_gpu_gb": gpu}


def largest_recorded_peak(run_dirs: Iterable[Path]) -> tuple[float, Path] | None:
    """The largest `resources.peak_rss_gb` the runs' metrics.json record, and its run; None where none records it
    (runs made before it was recorded). A run's peak is its process's: a notebook that ran several stages first
    reports the largest of them."""
    peaks = []
    for run in run_dirs:
        metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
        value = (metrics.get("resources") or {}).get("peak_rss_gb")
        if value is not None:
            peaks.append((value, run))
    return max(peaks, key=lambda peak: peak[0]) if peaks else None
