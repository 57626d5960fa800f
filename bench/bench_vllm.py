"""Benchmark: generation on HF (the library's CPU path) vs a vLLM server, tokens/s at the profiles' batch sizes.

The same rendered prompts (the task's evaluation questions, as evaluation renders them) go through
`saie_lib.generation.generate` with the HF model (batch by batch, greedy loop on CPU) and with a VllmEngine
(every prompt in flight at once), greedy, interleaved: for each repeat, each batch size, HF then vLLM, so a
change in the machine's load falls on both. New tokens are counted by re-tokenising each output (the same
count for equal texts); the record keeps every output's agreement with HF's (share identical, first differing
character). The server runs with the library's default arguments (torch.compile warm-up: minutes to start,
recorded as `startup_seconds`, not counted in tokens/s); on 2 cores it computes on one thread (`auto` binding
keeps a core for its front end), and the HF path gets the same (`--hf-threads 1`). Writes
results/bench/vllm-<model>-<dtype>.json/.png.

    SAIE_DATA_DIR=../shared/data .venv-vllm/bin/python bench/bench_vllm.py   # ~15 min on 2 cores
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from bench_plots import bar_panels, save

from saie_lib import artifacts
from saie_lib.config import EvalConfig
from saie_lib.data import load_task
from saie_lib.engines import open_engine
from saie_lib.generation import Decoding, generate, render_chat
from saie_lib.models import load_model
from saie_lib.paths import results_dir
from saie_lib.prompts import build_messages
from saie_lib.tasks import get_task
from saie_lib.vllm_server import stop_all


def first_difference(a: str, b: str) -> int | None:
    """The first character position where two texts part (None when equal)."""
    if a == b:
        return None
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def timed(model, tokenizer, prompts: list[str], decoding: Decoding, batch_size: int) -> tuple[float, list[str]]:
    started = time.perf_counter()
    texts = generate(model, tokenizer, prompts, decoding, batch_size=batch_size, progress=False)
    return time.perf_counter() - started, texts


def case(engine: str, batch: int, seconds: float, texts: list[str], tokenizer, reference: list[str]) -> dict:
    tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    differences = [first_difference(t, r) for t, r in zip(texts, reference)]
    return {"engine": engine, "batch": batch, "seconds": round(seconds, 2), "new_tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 1), "identical_to_hf": sum(d is None for d in differences),
            "first_difference": [d for d in differences if d is not None]}


def summary(cases: list[dict], sizes: list[int]) -> dict:
    """Median tokens/s per engine and batch size, and vLLM's speed-up over HF."""
    out = {}
    for batch in sizes:
        median = {e: statistics.median(c["tokens_per_s"] for c in cases if c["engine"] == e and c["batch"] == batch)
                  for e in ("hf", "vllm")}
        out[str(batch)] = {"hf_tokens_per_s": median["hf"], "vllm_tokens_per_s": median["vllm"],
                           "speedup": round(median["vllm"] / median["hf"], 2)}
    return out


def plot(record: dict, path: Path) -> None:
    """Median tokens/s per engine and batch size, and the speed-up, from the record alone."""
    sizes = record["batch_sizes"]
    labels = [f"{e} b{b}" for b in sizes for e in ("hf", "vllm")]
    values = [record["summary"][str(b)][f"{e}_tokens_per_s"] for b in sizes for e in ("hf", "vllm")]
    panels = [(values, "new tokens / s (median)", "generation throughput")]
    load = record["load_average"]
    fig, axes = bar_panels(labels, ["C0", "C1"] * len(sizes), panels, width=7,
                           title=f"{record['model']} {record['dtype']}, {record['max_new_tokens']} new tokens, greedy, "
                                 f"2-core CPU (load {load[0]:.0f}-{load[1]:.0f})")
    axes[0].set_ylim(0, max(values) * 1.15)
    axes[0].set_xlabel(f"HF: {record['hf_threads']} torch thread(s); vLLM: its CPU default (one compute thread here); "
                       "x = vLLM / HF", fontsize=8)
    for index, batch in enumerate(sizes):
        top = max(values[2 * index: 2 * index + 2])
        axes[0].annotate(f"x{record['summary'][str(batch)]['speedup']:g}", (2 * index + 1, top), ha="center",
                         va="bottom")
    save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--task", default="gsm8k")
    parser.add_argument("--batch-sizes", default="8,32")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--hf-threads", type=int, default=1,
                        help="torch threads of the HF path; 1 = the compute threads vLLM's CPU server uses on 2 cores "
                             "(it keeps one core for its front end); on a shared machine 2 threads stall each other")
    parser.add_argument("--replot", action="store_true", help="redraw the figure from the existing record")
    args = parser.parse_args()
    path = results_dir() / "bench" / f"vllm-{args.model}-{args.dtype}.json"
    if args.replot:
        return plot(artifacts.read_json(path), path.with_suffix(".png"))
    import torch

    torch.set_num_threads(args.hf_threads)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    examples = load_task(args.task, get_task(args.task).eval_split, limit=max(sizes), seed=0)
    model, tokenizer, _ = load_model(args.model, dtype=args.dtype, device="cpu")
    prompts = render_chat(tokenizer, [build_messages(e) for e in examples])
    decoding = Decoding(max_new_tokens=args.max_new_tokens)
    load_start = os.getloadavg()[0]
    engine = open_engine(EvalConfig(model=args.model, dtype=args.dtype, device="cpu", generation="vllm"))
    cases = []
    try:
        for repeat in range(args.repeats):
            for batch in sizes:
                hf_seconds, hf_texts = timed(model, tokenizer, prompts[:batch], decoding, batch)
                vllm_seconds, vllm_texts = timed(engine, tokenizer, prompts[:batch], decoding, batch)
                for row in (case("hf", batch, hf_seconds, hf_texts, tokenizer, hf_texts),
                            case("vllm", batch, vllm_seconds, vllm_texts, tokenizer, hf_texts)):
                    cases.append({"repeat": repeat, **row})
                    print(cases[-1], flush=True)
        engine_info = engine.engine_info
    finally:
        stop_all()
    record = {"model": args.model, "dtype": args.dtype, "task": args.task, "batch_sizes": sizes,
              "max_new_tokens": args.max_new_tokens, "repeats": args.repeats, "hf_threads": args.hf_threads,
              "vllm_threads_bind": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "auto"),
              "cases": cases,
              "summary": summary(cases, sizes), "engine": engine_info,
              "load_average": [round(load_start, 2), round(os.getloadavg()[0], 2)], "cpu_count": os.cpu_count(),
              "env": artifacts.env_record()}
    artifacts.write_json(path, record)
    plot(record, path.with_suffix(".png"))
    print(record["summary"])


if __name__ == "__main__":
    main()
