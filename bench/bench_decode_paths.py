"""Benchmark: one greedy decoding step of the LoRA learner on CPU, by batch size and by code path. What a step
costs at batch 1..32 (why evaluation and inference batch 32 rows where they can), and at the discussion's batch 4
what each path tried gives: the LoRA path's share (adapters off), peft's Python around it (the same products
called directly, no module machinery), and torch.compile (inductor, dynamic shapes) with its compile time.
Each path's tokens are compared with the eager peft path's. Writes results/bench/decode-paths-<model>.json, .png.

    SAIE_DATA_DIR=... .venv/bin/python bench/bench_decode_paths.py --model smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_cpu, run as a script

from bench_cpu import encode, to_bf16  # noqa: E402
from bench_plots import bar_panels, save  # noqa: E402
from bench_recipes import randomise_lora  # noqa: E402

from saie_lib import artifacts  # noqa: E402
from saie_lib.data import load_task  # noqa: E402
from saie_lib.generation import render_chat  # noqa: E402
from saie_lib.learner import Learner, LoraSettings  # noqa: E402
from saie_lib.paths import results_dir  # noqa: E402
from saie_lib.prompts import build_messages  # noqa: E402


def decode(forward, learner, prompts: list[str], steps: int, warmup: int = 3) -> dict:
    """Prefill, then `warmup` + `steps` greedy steps with the KV cache through `forward`: median step seconds
    (after the warm-up) and the tokens of row 0."""
    import torch

    batch = encode(learner, prompts)
    with torch.inference_mode():
        out = learner.model(**batch, use_cache=True, logits_to_keep=1)
        cache, mask = out.past_key_values, batch["attention_mask"]
        position = mask.sum(-1, keepdim=True) - 1
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        tokens, seconds = [], []
        for step in range(warmup + steps):
            start = time.perf_counter()
            mask, position = torch.cat([mask, torch.ones_like(token)], 1), position + 1
            out = forward(input_ids=token, attention_mask=mask, position_ids=position, past_key_values=cache,
                          use_cache=True, logits_to_keep=1)
            cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            tokens.append(int(token[0, 0]))
            if step >= warmup:
                seconds.append(time.perf_counter() - start)
    return {"batch": len(prompts), "step_median_s": statistics.median(seconds), "tokens_row0": tokens}


def direct_lora_forward(layer, x, *args, **kwargs):
    """peft's LoRA Linear forward for one plain adapter, the same products in the same order, without its module
    calls and argument checks: what peft's Python costs."""
    import torch.nn.functional as F

    base = layer.base_layer
    result = F.linear(x, base.weight, base.bias)
    if layer.disable_adapters:
        return result
    name = layer.active_adapters[0]
    lora_a, lora_b = layer.lora_A[name].weight, layer.lora_B[name].weight
    x = x.to(lora_a.dtype) if x.dtype != lora_a.dtype else x
    return (result + F.linear(F.linear(x, lora_a), lora_b) * layer.scaling[name]).to(result.dtype)


@contextlib.contextmanager
def direct_lora(model):
    from peft.tuners.lora import LoraLayer

    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    for layer in layers:
        layer.forward = functools.partial(direct_lora_forward, layer)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward


def paths_at(learner, prompts: list[str], steps: int, compile_too: bool) -> list[dict]:
    """The code paths at one batch: eager peft (reference), adapters off, direct LoRA, torch.compile."""
    import torch

    model = learner.model
    reference = {"path": "peft", **decode(model, learner, prompts, steps)}
    cases = [reference]
    with model.disable_adapter():
        cases.append({"path": "adapters off", **decode(model, learner, prompts, steps)})
    with direct_lora(model):
        cases.append({"path": "direct LoRA", **decode(model, learner, prompts, steps)})
    if compile_too:
        compiled = torch.compile(model.forward, dynamic=True)
        started = time.perf_counter()
        decode(compiled, learner, prompts, 1, warmup=0)  # the first step compiles
        first_call_s = time.perf_counter() - started
        cases.append({"path": "torch.compile", **decode(compiled, learner, prompts, steps),
                      "first_call_with_compile_s": first_call_s})
        torch._dynamo.reset()
    for case in cases:
        case["same_tokens_as_peft"] = case["tokens_row0"] == reference["tokens_row0"]
        case["speedup_vs_peft"] = reference["step_median_s"] / case["step_median_s"]
    return cases


def run_dtype(dtype: str, args, examples: list) -> dict:
    learner = Learner.create(args.model, LoraSettings(), device="cpu")
    randomise_lora(learner)  # a trained-looking adapter: LoRA B is zero at creation, which would hide its path
    prompts = render_chat(learner.tokenizer, [build_messages(e) for e in examples])
    if dtype == "bfloat16":
        to_bf16(learner)
    learner.for_inference()
    by_batch = [{"path": "peft", **decode(learner.model, learner, prompts[:b], args.steps)} for b in args.batches]
    paths = paths_at(learner, prompts[:args.discussion_batch], args.steps, dtype in args.compile_dtypes)
    return {"dtype": dtype, "by_batch": by_batch, "paths": paths}


def plot(record: dict, path: Path) -> None:
    runs = record["runs"]
    labels = [f"{r['dtype']} b{c['batch']}" for r in runs for c in r["by_batch"]]
    colors = [f"C{i}" for i, r in enumerate(runs) for _ in r["by_batch"]]
    step_ms = [c["step_median_s"] * 1e3 for r in runs for c in r["by_batch"]]
    path_labels = [f"{r['dtype']}\n{c['path']}" for r in runs for c in r["paths"]]
    fig, axes = bar_panels(labels, colors, [(step_ms, "ms per step", "decode step by batch (peft LoRA)")],
                           title=f"{record['model']}: one greedy decoding step on CPU", width=13, label_size=7)
    save(fig, path.with_name(path.stem + "-batch.png"))
    path_ms = [c["step_median_s"] * 1e3 for r in runs for c in r["paths"]]
    path_colors = [f"C{i}" for i, r in enumerate(runs) for _ in r["paths"]]
    fig, _ = bar_panels(path_labels, path_colors,
                        [(path_ms, "ms per step", f"decode step at batch {record['discussion_batch']} by code path")],
                        title=f"{record['model']}: what was tried", width=13, label_size=7)
    save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-random-smollm2")
    parser.add_argument("--task", default="gsm8k")
    parser.add_argument("--batches", default="1,4,8,16,32")
    parser.add_argument("--discussion-batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--compile-dtypes", default="bfloat16",
                        help="dtypes whose step is also measured under torch.compile (minutes each); '' for none")
    args = parser.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    args.compile_dtypes = [d for d in args.compile_dtypes.split(",") if d]
    env = artifacts.env_record()
    examples = load_task(args.task, "test", limit=max(args.batches), seed=0)
    runs = []
    for dtype in args.dtypes.split(","):
        runs.append(run_dtype(dtype, args, examples))
        print({"dtype": dtype, **{key: [(c.get("path"), c["batch"], round(c["step_median_s"] * 1e3, 1))
                                        for c in runs[-1][key]] for key in ("by_batch", "paths")}}, flush=True)
    record = {"model": args.model, "task": args.task, "steps": args.steps, "discussion_batch": args.discussion_batch,
              "runs": runs, "env": env}
    path = results_dir() / "bench" / f"decode-paths-{args.model}.json"
    artifacts.write_json(path, record)
    plot(record, path.with_suffix(".png"))


if __name__ == "__main__":
    main()
