"""Worker of bench_recipes.py --filing-ref: one discussion step timed with the `saie_lib` of an older commit.

    python bench/step_at_ref.py TREE --model M --task T --repeats N [--data-dir D]

TREE is that commit's files (`git archive REF | tar -x -C TREE`); its saie_lib is put first on sys.path, so this
process runs the old code, float32 as the old profiles did, on the inputs bench_recipes.measure_recipe gives the
current code: the first 4 training examples of `load_task(task, "train", limit=8, seed=0)`, batch 4, learner 128 /
partner 64 new tokens, rounds 1, adversarial remarks from the adapter-off learner, LoRA B drawn at random with
seed 0. Prints one JSON line: best step seconds, the example ids (the caller checks they are the same examples),
the learner's turns and the peak RSS. Self-contained: it imports nothing of the current checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path


def randomise_lora(model) -> None:
    import torch

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)


def discussion_module():
    try:  # the stages/ layout came after the issue was filed; before it the trainer was one module
        from saie_lib.stages import train
    except ImportError:
        from saie_lib import trainer as train
    return train


def measure(args: argparse.Namespace) -> dict:
    import torch

    from saie_lib.config import TrainConfig
    from saie_lib.data import load_task
    from saie_lib.learner import Learner, LoraSettings
    from saie_lib.partners.local import AdapterOffPartner

    train = discussion_module()
    torch.manual_seed(0)
    cfg = TrainConfig(model=args.model, task=args.task, rounds=1, remark_policy="adversarial", batch_size=4,
                      eval_batch_size=8, learner_max_new_tokens=128, partner_max_new_tokens=64)
    examples = load_task(args.task, "train", data_dir=args.data_dir, limit=8, seed=0)[:4]
    learner = Learner.create(args.model, LoraSettings(), device="cpu", dtype="float32")
    randomise_lora(learner.model)
    partner = AdapterOffPartner(learner, batch_size=8)
    optimizer = torch.optim.SGD(learner.trainable_parameters(), lr=0.0)  # timing only: weights unchanged
    session = train.Session(cfg, Path("."), learner, partner, optimizer, schedule=[])
    best, transcript = float("inf"), []
    for _ in range(args.repeats):
        start = time.perf_counter()
        _, transcript = train.discussion_batch(session, examples, 0)
        best = min(best, time.perf_counter() - start)
    return {"step_s": best, "dtype": str(learner.model.dtype).removeprefix("torch."),
            "example_ids": [e.id for e in examples], "turns": [row["learner"] for row in transcript],
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2,
            "load_average": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree")
    parser.add_argument("--model", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    tree = Path(args.tree).resolve()
    sys.path.insert(0, str(tree))
    import saie_lib

    if tree not in Path(saie_lib.__file__).resolve().parents:
        raise SystemExit(f"saie_lib was imported from {saie_lib.__file__}, not from {tree}")
    print(json.dumps(measure(args)), flush=True)


if __name__ == "__main__":
    main()
