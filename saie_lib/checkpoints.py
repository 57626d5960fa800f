"""Training checkpoints: adapter weights, optimiser state, RNG states and the data cursor, written atomically."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

from .artifacts import read_json, write_json

KEEP_LAST = 2


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(run_dir: str | Path, learner: Any, optimizer: Any, cursor: dict[str, Any]) -> Path:
    """checkpoints/batch-<n>/ with the adapter, optimizer.pt, rng.pt and cursor.json; older ones pruned."""
    import numpy as np
    import torch

    folder = checkpoints_dir(run_dir)
    target = folder / f"batch-{cursor['next_batch']:06d}"
    staging = folder / f".{target.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    learner.save_adapter(staging / "adapter")
    torch.save(optimizer.state_dict(), staging / "optimizer.pt")
    torch.save({"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()},
               staging / "rng.pt")
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
    import numpy as np
    import torch

    learner.load_adapter_weights(path / "adapter")
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    rng = torch.load(path / "rng.pt", weights_only=False)
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    return read_json(path / "cursor.json")
