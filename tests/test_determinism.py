"""Outputs are deterministic for a fixed seed on the same machine: a tiny SAIE training run (warm-up, discussion
with the self partner, optimiser steps) and the evaluation of the trained learner, run twice from nothing
(separate results folders and remark caches, so the partner really answers twice), write byte-identical losses,
transcripts, samples and adapter weights."""

import pytest

from saie_lib.artifacts import read_jsonl, run_file
from saie_lib.config import TrainConfig, load_config
from saie_lib.stages import train as trainer

pytestmark = pytest.mark.slow

# rows that only say how long something took or when: the machine's load changes them, not the seed
TIMING_KEYS = ("seconds", "elapsed", "time", "timestamp", "wall")


def _run(data_dir, folder):
    cfg = load_config("train-tiny", cls=TrainConfig, task="commonsense_qa", data_dir=str(data_dir),
                      results_root=str(folder / "results"), remark_cache=str(folder / "remarks.sqlite"))
    return trainer.train(cfg, progress=False)


def _without_timings(rows):
    return [{k: v for k, v in row.items() if not any(t in k for t in TIMING_KEYS)} for row in rows]


def test_same_seed_same_machine_gives_byte_identical_outputs(data_dir, tmp_path):
    first, second = _run(data_dir, tmp_path / "first"), _run(data_dir, tmp_path / "second")
    assert first.name == second.name  # the same identity
    for name in ("samples", "transcripts"):
        assert run_file(first, name).read_bytes() == run_file(second, name).read_bytes(), name
    log_first, log_second = (read_jsonl(run_file(out, "train_log")) for out in (first, second))
    assert len(log_first) > 1 and all(isinstance(row["loss"], float) for row in log_first)
    assert [row["loss"] for row in log_first] == [row["loss"] for row in log_second]
    assert _without_timings(log_first) == _without_timings(log_second)
    adapter = "adapter_model.safetensors"
    assert (run_file(first, "adapter") / adapter).read_bytes() == (run_file(second, "adapter") / adapter).read_bytes()
    samples = read_jsonl(run_file(first, "samples"))
    assert samples and len({row["output"] for row in samples}) > 1  # the outputs really are model text
