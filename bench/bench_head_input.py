"""Benchmark: the output head's matmul on CPU when its input is a strided slice of the hidden states (what
generation's prefill, `logits_to_keep=1`, and the training loss, the target span, hand it) against the same input
made contiguous (what `saie_lib.precision.contiguous_head_input` does for bf16/fp16 models on CPU). The model's
real head weight, random hidden states of the shapes cpu-quick's calls have; each case in its own process, so its
peak RSS is its own: seconds (best of --repeats), peak RSS growth over the process before the matmul, and whether
the logits are bit-identical. Writes results/bench/head-input-<model>.json and .png.

    .venv/bin/python bench/bench_head_input.py --model smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_plots, run as a script

from bench_plots import bar_panels, save  # noqa: E402

from saie_lib import artifacts  # noqa: E402
from saie_lib.paths import results_dir  # noqa: E402

# (name, rows, tokens, positions the head keeps): cpu-quick's GSM8K and MMLU evaluation prefills at batch 32, the
# training discussion's batch 4 prefill, and a training loss over a 200-token target span
SHAPES = [("prefill gsm8k 32x174", 32, 174, 1), ("prefill mmlu 32x564", 32, 564, 1),
          ("prefill discussion 4x600", 4, 600, 1), ("loss 4x600, 200 kept", 4, 600, 200)]


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def measure_case(weight_file: str, dtype_name: str, shape: tuple, contiguous: bool, repeats: int) -> dict:
    import torch

    torch.manual_seed(0)
    weight = torch.load(weight_file).to(getattr(torch, dtype_name))
    _, rows, tokens, kept = shape
    hidden = torch.randn(rows, tokens, weight.shape[1]).to(weight.dtype)
    x = hidden[:, -kept:, :]
    x = x.contiguous() if contiguous else x
    before, seconds = peak_gb(), []
    with torch.inference_mode():
        for _ in range(repeats):
            started = time.perf_counter()
            logits = torch.nn.functional.linear(x, weight)
            seconds.append(time.perf_counter() - started)
    # numpy, not a tensor: a tensor returned from a pool worker is shared through the worker, which exits
    return {"seconds": min(seconds), "peak_rss_growth_gb": peak_gb() - before, "logits": logits.float().numpy()}


def compare(pool, weight_file: str, dtype_name: str, shape: tuple, repeats: int) -> dict:
    strided = pool.apply(measure_case, (weight_file, dtype_name, shape, False, repeats))
    contiguous = pool.apply(measure_case, (weight_file, dtype_name, shape, True, repeats))
    return {"case": shape[0], "dtype": dtype_name, "strided_s": strided["seconds"],
            "contiguous_s": contiguous["seconds"], "speedup": strided["seconds"] / contiguous["seconds"],
            "strided_peak_growth_gb": strided["peak_rss_growth_gb"],
            "contiguous_peak_growth_gb": contiguous["peak_rss_growth_gb"],
            "bit_identical": bool((strided["logits"] == contiguous["logits"]).all())}


def head_weight(model: str, folder: Path) -> str:
    import torch

    from saie_lib.models import load_model

    loaded, _, _ = load_model(model, device="cpu", dtype="float32")
    path = folder / "head.pt"
    torch.save(loaded.get_output_embeddings().weight.detach().clone(), path)
    return str(path)


def plot(record: dict, path: Path) -> None:
    cases = record["cases"]
    labels = [f"{c['dtype']}\n" + c["case"].replace(", ", " ").replace(" ", "\n") for c in cases]
    colors = ["C0" if c["dtype"] == "bfloat16" else "C1" for c in cases]
    panels = [([c["speedup"] for c in cases], "strided / contiguous seconds", "output head matmul: time"),
              ([c["strided_peak_growth_gb"] for c in cases], "GB", "peak RSS growth, strided input (contiguous: "
               f"at most {max(c['contiguous_peak_growth_gb'] for c in cases):.2f} GB)")]
    fig, axes = bar_panels(labels, colors, panels, title=f"{record['model']}: output head on CPU", width=13,
                           label_size=7)
    axes[0].set_yscale("log")
    save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-random-smollm2")
    parser.add_argument("--dtypes", default="bfloat16,float32")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    env = artifacts.env_record()
    cases = []
    with tempfile.TemporaryDirectory() as folder, \
            multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        weight_file = pool.apply(head_weight, (args.model, Path(folder)))
        for dtype_name in args.dtypes.split(","):
            for shape in SHAPES:
                cases.append(compare(pool, weight_file, dtype_name, shape, args.repeats))
                print(cases[-1], flush=True)
    record = {"model": args.model, "repeats": args.repeats, "cases": cases, "env": env}
    path = results_dir() / "bench" / f"head-input-{artifacts.slug(args.model)}.json"
    artifacts.write_json(path, record)
    plot(record, path.with_suffix(".png"))


if __name__ == "__main__":
    main()
