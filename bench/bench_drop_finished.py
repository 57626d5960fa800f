"""Benchmark: does a greedy decoding loop that drops finished rows pay on this CPU? Writes
results/bench/drop-finished-<model>.json and .png.

    SAIE_DATA_DIR=... .venv/bin/python bench/bench_drop_finished.py --model smollm2-135m-instruct

`model.generate` keeps every row of a batch in every decoding step until the longest row stops, so one long
answer makes 31 finished rows ride along at batch 32. saie_lib.greedy_decoding (the library's greedy decoding
on CPU, which `generate_batch` runs; the committed record was made with the same loop as a prototype in this
script, git 8afbc90) removes a row from the batch and from the KV cache (`DynamicCache.batch_select_indices`) as
soon as it emits a stop token.
Both decode the same token-id prompts (the profile's evaluation prompts: cpu-quick's 30 evaluation examples per
task, 192 new tokens, one batch of 32, the base model), greedily, EOS only, as evaluation does. Per task and
dtype: seconds of each (one call each after a warm-up), the share of outputs word for word the same, new tokens
per row and `row_steps_used` = the sum of row lengths / (rows x longest), the share of generate's row-steps that
produce a kept token.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench_discussion import timed
from bench_plots import bar_panels, save

from saie_lib import artifacts
from saie_lib.data import load_task
from saie_lib.generation import (
    Decoding,
    drops_finished_rows,
    encode_prompts,
    generate_batch,
    hf_generate_batch,
    render_chat,
)
from saie_lib.models import load_model
from saie_lib.paths import results_dir
from saie_lib.prompts import build_messages
from saie_lib.tasks import get_task


def measure_task(model, tokenizer, task: str, args: argparse.Namespace) -> dict:
    examples = load_task(task, get_task(task).eval_split, data_dir=args.data_dir, limit=args.limit, seed=0)
    prompts = encode_prompts(tokenizer, render_chat(tokenizer, [build_messages(e) for e in examples]))
    prompts = sorted(prompts, key=len, reverse=True)[: args.batch]  # one batch, longest first as generate sorts
    decoding = Decoding(max_new_tokens=args.new_tokens)
    if not drops_finished_rows(model, decoding):
        raise SystemExit(f"{args.model} does not take the library's greedy loop here (saie_lib.generation)")
    hf_generate_batch(model, tokenizer, prompts[:2], Decoding(max_new_tokens=2))  # warm-up
    generate_s, reference = timed(lambda: hf_generate_batch(model, tokenizer, prompts, decoding), 1)
    dropping_s, dropped = timed(lambda: generate_batch(model, tokenizer, prompts, decoding), 1)
    lengths = [min(len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1, args.new_tokens)
               for text in reference]
    return {"task": task, "rows": len(prompts), "generate_s": generate_s, "dropping_s": dropping_s,
            "speedup": generate_s / dropping_s, "same_outputs": sum(a == b for a, b in zip(reference, dropped))
            / len(prompts), "new_tokens_per_row": lengths,
            "row_steps_used": sum(lengths) / (len(lengths) * max(lengths))}


def plot(record: dict, path: Path) -> None:
    cases = record["cases"]
    labels = [f"{c['task']}\n{c['dtype']}" for c in cases]
    panels = [([c["generate_s"] for c in cases], "seconds", "model.generate (finished rows ride along)"),
              ([c["dropping_s"] for c in cases], "seconds", "finished rows dropped"),
              ([c["same_outputs"] for c in cases], "share", "outputs word for word the same")]
    fig, _ = bar_panels(labels, [f"C{i}" for i in range(len(cases))], panels, width=12,
                        title=f"{record['model']}: batch {record['batch']}, {record['new_tokens']} new tokens")
    save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-random-smollm2")
    parser.add_argument("--tasks", default="commonsense_qa,gsm8k")
    parser.add_argument("--dtypes", default="float32,native")
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=192)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    env, cases = artifacts.env_record(), []
    for dtype in args.dtypes.split(","):
        model, tokenizer, info = load_model(args.model, dtype=dtype, device="cpu")
        for task in args.tasks.split(","):
            cases.append({"dtype": str(model.dtype).removeprefix("torch."), **measure_task(model, tokenizer, task,
                                                                                          args)})
            print({k: v for k, v in cases[-1].items() if k != "new_tokens_per_row"}, flush=True)
    record = {"model": args.model, "batch": args.batch, "limit": args.limit, "new_tokens": args.new_tokens,
              "cases": cases, "env": env}
    folder, name = results_dir() / "bench", f"drop-finished-{artifacts.slug(args.model)}"
    artifacts.write_json(folder / f"{name}.json", record)
    plot(record, folder / f"{name}.png")


if __name__ == "__main__":
    main()
