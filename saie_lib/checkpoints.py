"""Training checkpoints: adapter weights, optimiser state, RNG states and the data cursor, written atomically.

Everything in optimizer.pt and rng.pt is tensors and plain Python values (dict, list, int, float, str,
None), so both load with `torch.load(..., weights_only=True)`: a checkpoint cannot run code when read.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

from .artifacts import read_json, run_file, write_json
from .write_errors import writes_path

KEEP_LAST = 2


def checkpoints_dir(run_dir: str | Path) -> Path:
    return run_file(run_dir, "checkpoints")


@writes_path
def save_checkpoint(run_dir: str | Path, learner: Any, optimizer: Any, cursor: dict[str, Any]) -> Path:
    """checkpoints/batch-<n>/ with the adapter, optimizer.pt, rng.pt and cursor.json; older ones pruned."""
    import torch

    folder = checkpoints_dir(run_dir)
    target = folder / f"batch-{cursor['next_batch']:06d}"
    staging = folder / f".{target.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    learner.save_adapter(staging / "adapter")
    torch.save(optimizer.state_dict(), staging / "optimizer.pt")
    torch.save(rng_state(), staging / "rng.pt")
    write_json(staging / "cursor.json", cursor)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    for old in sorted(folder.glob("batch-*"))[:-KEEP_LAST]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    done = sorted(p for p in checkpoints_dir(run_dir).glob("batch-*") if (p / "cursor.json").exists())
    return done[-1] if done else None


def restore_checkpoint(path: Path, learner: Any, optimizer: Any) -> dict[str, Any]:
    """Load adapter weights, optimiser and RNG states in place; return the cursor."""
    import torch

    learner.load_adapter_weights(path / "adapter")
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    set_rng_state(torch.load(path / "rng.pt", weights_only=True))
    return read_json(path / "cursor.json")


def rng_state() -> dict[str, Any]:
    """The torch (CPU, and CUDA when in use), Python `random` and NumPy global RNG states, as tensors and
    plain values."""
    import numpy as np
    import torch

    version, internal, gauss_next = random.getstate()
    name, key, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
        "numpy": {"name": str(name), "key": [int(k) for k in key], "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gaussian)},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # never start CUDA just to save its RNG
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Put back what `rng_state` saved. The CUDA states are restored when as many devices are present."""
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss_next"]))
    numpy = state["numpy"]
    np.random.set_state((numpy["name"], np.array(numpy["key"], dtype=np.uint32), numpy["pos"], numpy["has_gauss"],
                         numpy["cached_gaussian"]))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
