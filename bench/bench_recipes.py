"""Benchmark: one discussion step and batched generation under each CPU recipe, on the same inputs, in one run.
Writes results/bench/recipes-<model>.json and .png.

    SAIE_DATA_DIR=../shared/data .venv/bin/python bench/bench_recipes.py --model smollm2-135m-instruct

Recipes: `fp32` (the committed cpu-small runs), `fp32_merged` (fp32 with TrainConfig.merged_generation: each LoRA
delta merged into the base weights while the learner generates), `fp32_merged_checkpointed` (also
gradient_checkpointing: on, for memory), `bf16` (dtype native on a CPU with AVX-512 BF16, LoRA weights fp32),
`bf16_checkpointed` (bf16 with gradient_checkpointing: on, the cpu-quick profile's training recipe).
Each recipe runs in its own process (spawned), so its peak RSS is its own. The step is
`stages.train.discussion_batch` with the cpu-small shapes (batch 4, learner 128 / partner 64 new tokens,
rounds 1, adversarial partner = the adapter-off learner); the LoRA B matrices are drawn at random (seeded) so
the adapters change the model as a trained one does. Generation: the library's `generate`, greedy, batch 8 vs
one by one, on 8 CommonsenseQA prompts (short answers of unequal length) and on 8 GSM8K prompts (long answers).
Step timings are the best of `--repeats`, generation timings one call each after a warm-up; the load average and
the memory allocator (tcmalloc when the parent was started with it preloaded) are recorded beside them.

`--baseline-ref REF` also times the same step with the code of an older commit (float32, as its profiles ran;
bench/step_at_ref.py in its own process, under the same allocator): `baseline`, and each recipe's
`step_speedup_vs_baseline`. Issue 14's "today's float32 step" is the code it was filed against, a944315:

    SAIE_DATA_DIR=../shared/data .venv/bin/python bench/bench_recipes.py --model smollm2-135m-instruct \
        --baseline-ref a944315
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_discussion, run as a script

from bench_discussion import frozen_optimizer, measure_batching, timed  # noqa: E402
from bench_plots import bar_panels, save  # noqa: E402

from saie_lib import artifacts  # noqa: E402
from saie_lib.config import TrainConfig  # noqa: E402
from saie_lib.data import load_task  # noqa: E402
from saie_lib.learner import Learner, LoraSettings  # noqa: E402
from saie_lib.partners.local import AdapterOffPartner  # noqa: E402
from saie_lib.paths import results_dir  # noqa: E402
from saie_lib.resources import allocator  # noqa: E402
from saie_lib.stages import train as trainer  # noqa: E402

RECIPES = {"fp32": {"dtype": "float32"}, "fp32_merged": {"dtype": "float32", "merged_generation": True},
           "fp32_merged_checkpointed": {"dtype": "float32", "merged_generation": True, "gradient_checkpointing": "on"},
           "bf16": {"dtype": "native"}, "bf16_checkpointed": {"dtype": "native", "gradient_checkpointing": "on"}}


def randomise_lora(learner) -> None:
    import torch

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in learner.model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)


def measure_recipe(args: argparse.Namespace, recipe: str) -> dict:
    import torch

    torch.manual_seed(0)
    cfg = TrainConfig(model=args.model, task=args.task, rounds=1, remark_policy="adversarial", batch_size=4,
                      eval_batch_size=8, learner_max_new_tokens=128, partner_max_new_tokens=64, **RECIPES[recipe])
    examples = load_task(args.task, "train", data_dir=args.data_dir, limit=8, seed=0)
    learner = Learner.create(args.model, LoraSettings(), device="cpu", dtype=cfg.dtype,
                             gradient_checkpointing=cfg.gradient_checkpointing)
    randomise_lora(learner)
    partner = AdapterOffPartner(learner, batch_size=8)
    session = trainer.Session(cfg, Path("."), learner, partner, frozen_optimizer(learner), schedule=[])
    step_s, (logs, transcript) = timed(lambda: trainer.discussion_batch(session, examples[:4], 0), args.repeats)
    learner.for_inference()
    long_answers = load_task("gsm8k", "train", data_dir=args.data_dir, limit=8, seed=0)
    with learner.lora_merged() if cfg.merged_generation else contextlib.nullcontext():
        batching = measure_batching(learner, examples, args.new_tokens)
        batching_long = measure_batching(learner, long_answers, args.new_tokens)
    return {"recipe": recipe, "config": RECIPES[recipe], "dtype": str(learner.model.dtype).removeprefix("torch."),
            "allocator": allocator(), "step_s": step_s, "batching": batching, "batching_gsm8k": batching_long,
            "turns": [row["learner"] for row in transcript], "example_ids": [e.id for e in examples[:4]],
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2,
            "load_average": os.getloadavg()}


def measure_at_ref(args: argparse.Namespace, ref: str) -> dict:
    """The step with the code of commit `ref` (bench/step_at_ref.py in a fresh process, on that commit's files)."""
    repo = Path(__file__).resolve().parents[1]  # git archive in a subfolder would archive only that folder
    sha = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=repo, capture_output=True,
                         text=True, check=True).stdout.strip()
    data_dir = [] if args.data_dir is None else ["--data-dir", str(Path(args.data_dir).resolve())]
    with tempfile.TemporaryDirectory() as tree:
        archive = subprocess.run(["git", "archive", sha], cwd=repo, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        worker = [sys.executable, str(Path(__file__).resolve().parent / "step_at_ref.py"), tree, "--model",
                  args.model, "--task", args.task, "--repeats", str(args.repeats), *data_dir]
        output = subprocess.run(worker, cwd=tree, capture_output=True, text=True)
    if output.returncode:
        raise RuntimeError(f"the step at {ref} failed:\n{output.stderr[-3000:]}")
    return {"ref": ref, "git_sha": sha, "allocator": allocator(), **json.loads(output.stdout.strip().splitlines()[-1])}


def compare_with_baseline(recipes: dict, baseline: dict) -> None:
    for name, result in recipes.items():
        if result["example_ids"] != baseline["example_ids"]:
            raise RuntimeError(f"recipe {name} and the step at {baseline['ref']} saw different examples")
        result["step_speedup_vs_baseline"] = baseline["step_s"] / result["step_s"]
        result["same_turns_as_baseline"] = result["turns"] == baseline["turns"]


def plot(record: dict, path: Path) -> None:
    recipes = record["recipes"]
    names, labels = list(recipes), [name.replace("_", "\n") for name in recipes]
    panels = [([recipes[n]["step_s"] for n in names], "seconds", "one discussion step (batch 4, rounds 1)"),
              ([recipes[n].get("batching_gsm8k", recipes[n]["batching"])["speedup"] for n in names],
               "batched / one-by-one", f"generation at batch 8, {record['new_tokens']} new tokens (GSM8K)"),
              ([recipes[n]["peak_rss_gb"] for n in names], "GB", "peak RSS of the recipe's process")]
    fig, axes = bar_panels(labels, [f"C{i}" for i in range(len(names))], panels, width=13,
                           title=f"{record['model']} on CPU ({os.cpu_count()} cores)")
    axes[1].axhline(3.0, color="k", lw=0.8, ls="--")
    if "baseline" in record:
        step = record["baseline"]["step_s"]
        axes[0].axhline(step, color="k", lw=0.8, ls=":", label=f"float32 at {record['baseline']['ref']}")
        axes[0].axhline(step / 2, color="k", lw=0.8, ls="--", label="half of that")
        axes[0].legend(fontsize=7)
    save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-random-smollm2")
    parser.add_argument("--task", default="commonsense_qa")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--baseline-ref", default=None, help="also time the step with this commit's code (float32)")
    parser.add_argument("--plot-only", action="store_true", help="redraw the figure from the existing record")
    args = parser.parse_args()
    folder = results_dir() / "bench"
    if args.plot_only:
        name = f"recipes-{artifacts.slug(args.model)}"
        return plot(artifacts.read_json(folder / f"{name}.json"), folder / f"{name}.png")

    env = artifacts.env_record()
    recipes = {}
    with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        for recipe in args.recipes.split(","):
            recipes[recipe] = pool.apply(measure_recipe, (args, recipe))
            print({k: v for k, v in recipes[recipe].items() if k != "turns"}, flush=True)
    base = recipes.get("fp32")
    for result in recipes.values():
        if base:
            result["step_speedup_vs_fp32"] = base["step_s"] / result["step_s"]
            result["same_turns_as_fp32"] = result["turns"] == base["turns"]
    record = {"model": args.model, "task": args.task, "new_tokens": args.new_tokens, "repeats": args.repeats,
              "recipes": recipes, "env": env}
    if args.baseline_ref:
        record["baseline"] = measure_at_ref(args, args.baseline_ref)
        print({k: v for k, v in record["baseline"].items() if k != "turns"}, flush=True)
        compare_with_baseline(recipes, record["baseline"])
    artifacts.write_json(folder / f"recipes-{artifacts.slug(args.model)}.json", record)
    plot(record, folder / f"recipes-{artifacts.slug(args.model)}.png")


if __name__ == "__main__":
    main()
