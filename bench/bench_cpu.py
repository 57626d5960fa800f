"""Benchmark on CPU, each number beside its physical bound: prefill, decode and LoRA-training tokens/s, batched vs
one-by-one generation, one discussion step vs its parts, peak RSS; fp32 (the library default) against bf16 (the
model cast with .to(torch.bfloat16) here, LoRA weights kept fp32). Writes results/bench/cpu-<model>.json and .png.

    SAIE_DATA_DIR=/work/shared/data .venv/bin/python bench/bench_cpu.py --model smollm2-135m-instruct
    .venv/bin/python bench/bench_cpu.py --model tiny-random-smollm2

Bounds (results/bench/README.md): FLOPs of the model at the measured shapes over this machine's measured
torch.matmul GFLOP/s at the model's shapes, and weight bytes per decode step over its measured memory bandwidth.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_discussion, run as a script

from bench_discussion import measure_parts, measure_step, timed  # noqa: E402

from saie_lib import artifacts  # noqa: E402
from saie_lib.config import TrainConfig  # noqa: E402
from saie_lib.data import load_task  # noqa: E402
from saie_lib.generation import Decoding, generate, render_chat  # noqa: E402
from saie_lib.learner import Learner, LoraSettings  # noqa: E402
from saie_lib.partners.local import AdapterOffPartner  # noqa: E402
from saie_lib.paths import results_dir  # noqa: E402
from saie_lib.portable import portable_path  # noqa: E402
from saie_lib.prompts import build_messages  # noqa: E402
from saie_lib.training import IGNORE_INDEX, optimizer_step, plain_features  # noqa: E402

GB = 1e9
STARTED = time.perf_counter()


def stage(name: str) -> None:
    elapsed, load = time.perf_counter() - STARTED, os.getloadavg()[0]
    print(f"[{elapsed:6.1f} s, load {load:.2f}] {name}", file=sys.stderr, flush=True)


def rss_gb() -> dict:
    """Current RSS (VmRSS) and the process's peak so far (ru_maxrss), in GB."""
    current = 0.0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) * 1024 / GB
    return {"rss_gb": current, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB}


# ---------------------------------------------------------------- the machine's limits


def matmul_gflops(m: int, k: int, n: int, dtype, repeats: int) -> float:
    """Best GFLOP/s of torch.matmul (m x k) @ (k x n) in `dtype` (2mkn FLOPs)."""
    import torch

    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(2):
        a @ b
    calls = max(1, int(2e8 // (2 * m * k * n)))  # small shapes: many calls per timing
    seconds, _ = timed(lambda: [a @ b for _ in range(calls)], repeats)
    return 2 * m * k * n * calls / seconds / GB


def memory_bandwidth(repeats: int, megabytes: int = 512) -> dict:
    """GB/s of a large fp32 copy (read + write bytes) and sum (read bytes): the rate weights stream from RAM."""
    import torch

    x = torch.ones(megabytes * 2 ** 20 // 4)
    y = torch.empty_like(x)
    t_copy, _ = timed(lambda: y.copy_(x), repeats)
    t_sum, _ = timed(lambda: x.sum(), repeats)
    return {"copy_gb_s": 2 * x.nbytes / t_copy / GB, "sum_gb_s": x.nbytes / t_sum / GB, "tensor_mb": megabytes}


def machine_limits(shape: dict, batch: int, prefill_tokens: int, repeats: int) -> dict:
    """Measured in a child process, so that its large test tensors stay out of this process's peak RSS."""
    import json
    import subprocess

    sizes = [shape["hidden"], shape["intermediate"], shape["vocab"], batch, prefill_tokens, repeats]
    child = subprocess.run([sys.executable, __file__, "--limits-only", *map(str, sizes)], check=True,
                           capture_output=True, text=True)
    return json.loads(child.stdout.strip().splitlines()[-1])


def measure_limits(d: int, inter: int, vocab: int, batch: int, prefill_tokens: int, repeats: int) -> dict:
    import torch

    shapes = {"prefill_mlp": (prefill_tokens, d, inter), "decode_mlp": (batch, d, inter),
              "decode_mlp_batch1": (1, d, inter), "decode_lm_head": (batch, d, vocab),
              "reference_2048x576x1536": (2048, 576, 1536)}
    gflops = {dt: {name: matmul_gflops(*mkn, getattr(torch, dt), repeats) for name, mkn in shapes.items()}
              for dt in ("float32", "bfloat16")}
    peak = {dt: max(values.values()) for dt, values in gflops.items()}
    return {"matmul_shapes": {k: list(v) for k, v in shapes.items()}, "matmul_gflop_s": gflops,
            "peak_gflop_s": peak,
            "memory": memory_bandwidth(repeats), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads()}


# ---------------------------------------------------------------- the model's FLOPs and bytes


def model_shape(learner) -> dict:
    """Parameter counts by role. Matmul parameters are the frozen nn.Linear weights of the decoder layers; the
    tied embedding is read once per step as the LM head; LoRA adds r x (in + out) per targeted linear."""
    import torch

    base = learner.model.get_base_model()
    config = base.config
    lora = sum(p.numel() for n, p in learner.model.named_parameters() if "lora_" in n)
    linear = sum(m.weight.numel() for n, m in base.named_modules()
                 if isinstance(m, torch.nn.Linear) and "lora_" not in n and not n.endswith("lm_head")
                 and not any(s in n for s in ("lora_A", "lora_B")))
    embed = base.get_input_embeddings().weight.numel()
    total = sum(p.numel() for n, p in base.named_parameters() if "lora_" not in n)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return {"params_total": total, "params_layer_linear": linear, "params_embedding": embed,
            "params_lm_head": config.vocab_size * config.hidden_size, "params_lora": lora,
            "tied_embeddings": bool(config.tie_word_embeddings), "layers": config.num_hidden_layers,
            "hidden": config.hidden_size, "intermediate": config.intermediate_size, "vocab": config.vocab_size,
            "heads": config.num_attention_heads, "kv_heads": config.num_key_value_heads, "head_dim": head_dim}


def forward_flops(shape: dict, batch: int, seq: int, past: int = 0, logits_positions: int = 1) -> float:
    """FLOPs of one forward over a [batch, seq] block after `past` cached positions: 2 x (layer linear + LoRA)
    params per token, attention QK^T and AV (4 x heads x head_dim per query-key pair, causal), and the LM head
    for `logits_positions` positions per row."""
    tokens = batch * seq
    linear = 2 * (shape["params_layer_linear"] + shape["params_lora"]) * tokens
    pairs = batch * (seq * past + seq * (seq + 1) / 2)  # causal query-key pairs
    attention = 4 * shape["layers"] * shape["heads"] * shape["head_dim"] * pairs
    head = 2 * shape["params_lm_head"] * batch * logits_positions
    return linear + attention + head


def weight_bytes(shape: dict, bytes_per_param: int) -> float:
    """Bytes a decode step must stream: layer weights + the LM head (the embedding lookup reads B rows only);
    LoRA weights are fp32 either way."""
    return (shape["params_layer_linear"] + shape["params_lm_head"]) * bytes_per_param + shape["params_lora"] * 4


def kv_bytes(shape: dict, batch: int, positions: int, bytes_per_value: int) -> float:
    return 2 * shape["layers"] * shape["kv_heads"] * shape["head_dim"] * batch * positions * bytes_per_value


# ---------------------------------------------------------------- measurements


def encode(learner, prompts):
    learner.tokenizer.padding_side = "left"
    return learner.tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)


def measure_prefill(learner, batch_inputs, repeats: int) -> float:
    """One forward over the prompts with logits for the last position only (what generate's prefill does)."""
    import torch

    learner.for_inference()
    with torch.inference_mode():
        seconds, _ = timed(lambda: learner.model(**batch_inputs, logits_to_keep=1, use_cache=True), repeats)
    return seconds


def measure_decode(learner, batch_inputs, steps: int, repeats: int) -> dict:
    """Greedy decode steps with the KV cache after a prefill, as a plain loop (no generate machinery): best and
    median step time, and the aten ops one step dispatches (each op has a fixed CPU cost)."""
    import statistics

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountOps(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            CountOps.count += 1
            return func(*args, **(kwargs or {}))

    learner.for_inference()
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            out = learner.model(**batch_inputs, logits_to_keep=1, use_cache=True)
            cache, mask = out.past_key_values, batch_inputs["attention_mask"]
            position = mask.sum(-1, keepdim=True) - 1
            token = out.logits[:, -1].argmax(-1, keepdim=True)
            for step in range(steps):
                mask = torch.cat([mask, torch.ones_like(token)], dim=1)
                position = position + 1
                start = time.perf_counter()
                if step == steps - 1:
                    with CountOps():
                        out = learner.model(input_ids=token, attention_mask=mask, position_ids=position,
                                            past_key_values=cache, use_cache=True, logits_to_keep=1)
                else:
                    out = learner.model(input_ids=token, attention_mask=mask, position_ids=position,
                                        past_key_values=cache, use_cache=True, logits_to_keep=1)
                    times.append(time.perf_counter() - start)
                cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
    return {"step_best_s": min(times), "step_median_s": statistics.median(times), "steps": steps,
            "ops_per_step": CountOps.count}


def profile_decode(learner, batch_inputs, steps: int = 4) -> dict:
    """torch.profiler over `steps` decode steps after a prefill: self CPU time per aten op (top 10) and the share
    in matrix products (mm, addmm, bmm, sdpa kernels) against everything else (per-op overhead, elementwise)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    learner.for_inference()
    with torch.inference_mode():
        out = learner.model(**batch_inputs, logits_to_keep=1, use_cache=True)
        cache, mask = out.past_key_values, batch_inputs["attention_mask"]
        position = mask.sum(-1, keepdim=True) - 1
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            for _ in range(steps):
                mask = torch.cat([mask, torch.ones_like(token)], dim=1)
                position = position + 1
                out = learner.model(input_ids=token, attention_mask=mask, position_ids=position,
                                    past_key_values=cache, use_cache=True, logits_to_keep=1)
                cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
            wall = time.perf_counter() - start
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events)
    products = ("aten::mm", "aten::addmm", "aten::bmm", "aten::_scaled_dot_product", "aten::_flash_attention")
    matmul = sum(e.self_cpu_time_total for e in events if e.key.startswith(products))
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:10]
    return {"steps": steps, "wall_per_step_s": wall / steps, "aten_self_per_step_s": total / 1e6 / steps,
            "matmul_self_per_step_s": matmul / 1e6 / steps, "other_self_per_step_s": (total - matmul) / 1e6 / steps,
            "top_ops": [{"op": e.key, "calls_per_step": e.count / steps,
                         "self_ms_per_step": e.self_cpu_time_total / 1e3 / steps} for e in top]}


def measure_decode_adapters_off(learner, batch_inputs, steps: int, repeats: int) -> dict:
    with learner.adapters_disabled():
        return measure_decode(learner, batch_inputs, steps, repeats)


def measure_train(learner, features, repeats: int) -> dict:
    """One LoRA optimiser step (forward, backward, clip, SGD with lr 0) through the library's optimizer_step,
    and the bytes autograd saves for backward (unique storages) in that step's forward."""
    import torch

    optimizer = torch.optim.SGD(learner.trainable_parameters(), lr=0.0)
    seconds, _ = timed(lambda: optimizer_step(learner, optimizer, features, 1.0), repeats)
    storages: dict[int, int] = {}

    def pack(tensor):
        if isinstance(tensor, torch.Tensor) and tensor.device.type == "cpu":
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    learner.for_training()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = learner.target_loss(features)
    loss.backward()
    optimizer.zero_grad(set_to_none=True)
    return {"seconds": seconds, "saved_activation_gb": sum(storages.values()) / GB}


def measure_generation(learner, prompts, new_tokens: int, repeats: int) -> dict:
    """The library's generate at batch_size=len(prompts) and at 1 (greedy, eos stops a row), after a warm-up
    call: best seconds of `repeats`, decode steps run (the longest row per generate call) and tokens kept."""
    calls = []
    original = learner.model.generate

    def counting(*args, **kwargs):
        out = original(*args, **kwargs)
        width = kwargs["input_ids"].shape[1]
        new = out[:, width:]
        useful = int((new != learner.tokenizer.pad_token_id).sum())
        calls.append({"batch": new.shape[0], "prompt_width": width, "steps": new.shape[1], "tokens": useful})
        return out

    decoding = Decoding(max_new_tokens=new_tokens)
    learner.for_inference()
    learner.model.generate = counting
    try:
        generate(learner.model, learner.tokenizer, prompts[:1], Decoding(max_new_tokens=4), progress=False)
        record = {}
        for name, size in (("batched", len(prompts)), ("one_by_one", 1)):
            times = []
            for _ in range(repeats):
                calls.clear()
                start = time.perf_counter()
                generate(learner.model, learner.tokenizer, prompts, decoding, batch_size=size, progress=False)
                times.append(time.perf_counter() - start)
            record[name] = {"seconds": min(times), "all_seconds": times, "calls": list(calls)}
    finally:
        del learner.model.generate
    record["speedup"] = record["one_by_one"]["seconds"] / record["batched"]["seconds"]
    return record


def generation_bound(shape, calls, peak: float, bandwidth: float, bytes_per_param: int) -> float:
    """Seconds the generate calls need at least: each prefill its FLOPs at peak GFLOP/s, each decode step
    max((weight + KV bytes) / bandwidth, FLOPs / peak GFLOP/s)."""
    total = 0.0
    for call in calls:  # padded width: the padding is computed too
        batch, width = call["batch"], call["prompt_width"]
        total += forward_flops(shape, batch, width) / (peak * GB)
        for step in range(call["steps"]):
            flops = forward_flops(shape, batch, 1, past=width + step)
            memory = weight_bytes(shape, bytes_per_param) + kv_bytes(shape, batch, width + step, bytes_per_param)
            total += max(memory / (bandwidth * GB), flops / (peak * GB))
    return total


def to_bf16(learner) -> None:
    """The base model in bf16, the LoRA weights (the trained ones) in fp32, training under bf16 autocast: what
    `dtype: native` loads on a CPU with AVX-512 BF16 / AMX (saie_lib.precision), cast here in place."""
    import torch

    from saie_lib.precision import StepPrecision, keep_trainable_fp32

    learner.model.to(torch.bfloat16)
    keep_trainable_fp32(learner.model)
    learner.precision = StepPrecision.create("bf16", "cpu")


# ---------------------------------------------------------------- the run


def run_dtype(learner, shape, limits, csqa, synth, prompts, features, args, dtype: str) -> dict:
    peak = limits["peak_gflop_s"][dtype]  # the best the machine reached at any measured shape: a true ceiling
    bandwidth = limits["memory"]["sum_gb_s"]
    nbytes = 4 if dtype == "float32" else 2
    out: dict = {}
    stage(f"{dtype}: prefill")
    for name, inputs in (("csqa", csqa), ("synthetic", synth)):
        batch, seq = inputs["input_ids"].shape
        seconds = measure_prefill(learner, inputs, args.repeats)
        flops = forward_flops(shape, batch, seq)
        bound = flops / (peak * GB)
        out[f"prefill_{name}"] = {"shape": [batch, seq], "seconds": seconds, "tokens_per_s": batch * seq / seconds,
                                  "gflop": flops / GB, "achieved_gflop_s": flops / seconds / GB,
                                  "bound_s": bound, "bound_tokens_per_s": batch * seq / bound,
                                  "measured_over_bound": seconds / bound}
    stage(f"{dtype}: decode")
    batch, width = csqa["input_ids"].shape
    for label, inputs in (("decode_batch", csqa), ("decode_batch1", {k: v[:1] for k, v in csqa.items()})):
        size = inputs["input_ids"].shape[0]
        record = measure_decode(learner, inputs, args.decode_steps, args.repeats)
        past = width + args.decode_steps // 2
        memory = weight_bytes(shape, nbytes) + kv_bytes(shape, size, past, nbytes)
        flops = forward_flops(shape, size, 1, past=past)
        bound = max(memory / (bandwidth * GB), flops / (peak * GB))
        record.update(batch=size, bytes_per_step_gb=memory / GB, gflop_per_step=flops / GB,
                      bound_memory_s=memory / (bandwidth * GB), bound_flops_s=flops / (peak * GB),
                      bound_s=bound, tokens_per_s=size / record["step_best_s"], bound_tokens_per_s=size / bound,
                      measured_over_bound=record["step_best_s"] / bound,
                      overhead_per_op_us=1e6 * (record["step_best_s"] - bound) / record["ops_per_step"])
        out[label] = record
    off = measure_decode_adapters_off(learner, csqa, args.decode_steps, args.repeats)
    out["decode_batch_adapters_off"] = off
    out["decode_profile_batch"] = profile_decode(learner, csqa)
    out["decode_profile_batch1"] = profile_decode(learner, {k: v[:1] for k, v in csqa.items()})

    stage(f"{dtype}: train step")
    train = measure_train(learner, features, args.repeats)
    width_t = max(len(f["input_ids"]) for f in features)
    keep = max(len(f["labels"]) - next((i for i, v in enumerate(f["labels"]) if v != IGNORE_INDEX),
                                       len(f["labels"])) for f in features) + 1
    fwd = forward_flops(shape, len(features), width_t, logits_positions=keep)
    flops = 2 * fwd  # LoRA: backward computes activation gradients (~1x forward), no frozen weight gradients
    bound = flops / (peak * GB)
    tokens = len(features) * width_t
    train.update(shape=[len(features), width_t], logits_positions=keep, gflop=flops / GB,
                 gflop_full_finetune_6nt=3 * fwd / GB, tokens_per_s=tokens / train["seconds"],
                 real_tokens=sum(len(f["input_ids"]) for f in features), bound_s=bound,
                 bound_tokens_per_s=tokens / bound, measured_over_bound=train["seconds"] / bound,
                 achieved_gflop_s=flops / train["seconds"] / GB)
    out["train_step"] = train

    stage(f"{dtype}: generation")
    generation = measure_generation(learner, prompts, args.new_tokens, args.gen_repeats)
    for mode in ("batched", "one_by_one"):
        bound = generation_bound(shape, generation[mode]["calls"], peak, bandwidth, nbytes)
        generation[mode].update(bound_s=bound, measured_over_bound=generation[mode]["seconds"] / bound,
                                tokens=sum(c["tokens"] for c in generation[mode]["calls"]))
        generation[mode]["tokens_per_s"] = generation[mode]["tokens"] / generation[mode]["seconds"]
    generation["bound_speedup"] = generation["one_by_one"]["bound_s"] / generation["batched"]["bound_s"]
    out["generation"] = generation
    out["memory_after"] = rss_gb()
    return out


def main() -> None:
    if sys.argv[1:2] == ["--limits-only"]:
        import json

        print(json.dumps(measure_limits(*map(int, sys.argv[2:]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-random-smollm2")
    parser.add_argument("--task", default="commonsense_qa")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--decode-steps", type=int, default=16)
    parser.add_argument("--synthetic-len", type=int, default=512, help="prefill of batch x this many tokens")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gen-repeats", type=int, default=2, help="repeats of batched / one-by-one generation")
    parser.add_argument("--step-repeats", type=int, default=1, help="repeats of the discussion step and its parts")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()

    import torch

    env = artifacts.env_record()  # before the work: the commit that ran it
    load = {"start": os.getloadavg()}
    started = time.perf_counter()
    memory = {"after_imports": rss_gb()}
    cfg = TrainConfig(model=args.model, task=args.task, rounds=1, remark_policy="adversarial",
                      learner_max_new_tokens=args.new_tokens, partner_max_new_tokens=args.new_tokens,
                      eval_batch_size=args.batch, batch_size=args.batch, device="cpu")
    examples = load_task(args.task, "train", data_dir=args.data_dir, limit=args.batch, seed=0)
    learner = Learner.create(args.model, LoraSettings(), device="cpu")
    memory["after_load"] = rss_gb()
    shape = model_shape(learner)

    prompts = render_chat(learner.tokenizer, [build_messages(e) for e in examples])
    csqa = encode(learner, prompts)
    generator = torch.Generator().manual_seed(0)
    synth = {"input_ids": torch.randint(0, shape["vocab"], (args.batch, args.synthetic_len), generator=generator),
             "attention_mask": torch.ones(args.batch, args.synthetic_len, dtype=torch.long)}
    features = plain_features(learner.tokenizer, examples, cfg.max_seq_len)
    limits = machine_limits(shape, args.batch, args.batch * csqa["input_ids"].shape[1], args.repeats)

    record = {"model": args.model, "task": args.task, "batch": args.batch, "new_tokens": args.new_tokens,
              "data_dir": portable_path(args.data_dir or os.environ.get("SAIE_DATA_DIR") or "(default)"),
              "machine": limits, "model_shape": shape,
              "model_bytes": {"float32": weight_bytes(shape, 4), "bfloat16": weight_bytes(shape, 2)}}
    record["fp32"] = run_dtype(learner, shape, limits, csqa, synth, prompts, features, args, "float32")
    memory["after_fp32_pieces"] = rss_gb()

    stage("discussion step and parts")
    partner = AdapterOffPartner(learner, batch_size=args.batch)
    parts = measure_parts(learner, partner, examples, cfg, args.step_repeats)
    step = measure_step(learner, partner, examples, cfg, args.step_repeats)
    record["discussion"] = {"parts": parts, "step_s": step, "sum_of_parts_s": sum(parts.values()),
                            "step_over_parts": step / sum(parts.values()), "repeats": args.step_repeats}
    memory["after_discussion_fp32"] = rss_gb()

    to_bf16(learner)
    record["bf16"] = run_dtype(learner, shape, limits, csqa, synth, prompts, features, args, "bfloat16")
    memory["after_bf16_pieces"] = rss_gb()
    stage("bf16 discussion step")
    record["discussion"]["step_bf16_s"] = measure_step(learner, partner, examples, cfg, args.step_repeats)
    fp32, bf16 = record["fp32"], record["bf16"]
    record["bf16_speedup"] = {
        "prefill_csqa": fp32["prefill_csqa"]["seconds"] / bf16["prefill_csqa"]["seconds"],
        "prefill_synthetic": fp32["prefill_synthetic"]["seconds"] / bf16["prefill_synthetic"]["seconds"],
        "decode_step_batch": fp32["decode_batch"]["step_best_s"] / bf16["decode_batch"]["step_best_s"],
        "train_step": fp32["train_step"]["seconds"] / bf16["train_step"]["seconds"],
        "generation_batched": fp32["generation"]["batched"]["seconds"] / bf16["generation"]["batched"]["seconds"],
        "discussion_step": record["discussion"]["step_s"] / record["discussion"]["step_bf16_s"],
        "matmul_prefill_shape": (limits["matmul_gflop_s"]["bfloat16"]["prefill_mlp"]
                                 / limits["matmul_gflop_s"]["float32"]["prefill_mlp"]),
    }
    train = fp32["train_step"]
    floor = (memory["after_imports"]["rss_gb"] + record["model_bytes"]["float32"] / GB
             + train["saved_activation_gb"])
    record["memory"] = {**memory, "peak_rss_gb": rss_gb()["peak_rss_gb"],
                        "peak_rss_fp32_gb": memory["after_discussion_fp32"]["peak_rss_gb"],
                        "floor_fp32_gb": floor,
                        "floor_note": "RSS after imports + fp32 weights + bytes autograd saves in a fp32 train step"}
    load["end"] = os.getloadavg()
    record["load_average"] = load
    record["wall_s"] = time.perf_counter() - started
    record["env"] = env
    folder, name = results_dir() / "bench", f"cpu-{artifacts.slug(args.model)}"
    artifacts.write_json(folder / f"{name}.json", record)
    plot(record, folder / f"{name}.png")
    print(summary(record))


def summary(record: dict) -> str:
    lines = [f"{record['model']} batch {record['batch']}  load {record['load_average']}"]
    for dtype in ("fp32", "bf16"):
        r = record[dtype]
        for key in ("prefill_csqa", "prefill_synthetic"):
            lines.append(f"{dtype} {key} {r[key]['shape']}: {r[key]['seconds']:.3f} s, "
                         f"{r[key]['tokens_per_s']:.0f} tok/s, bound {r[key]['bound_tokens_per_s']:.0f} tok/s, "
                         f"x{r[key]['measured_over_bound']:.2f}")
        for key in ("decode_batch", "decode_batch1"):
            d = r[key]
            lines.append(f"{dtype} {key}: step {1e3 * d['step_best_s']:.1f} ms, bound {1e3 * d['bound_s']:.1f} ms "
                         f"(mem {1e3 * d['bound_memory_s']:.1f}, flops {1e3 * d['bound_flops_s']:.1f}), "
                         f"x{d['measured_over_bound']:.2f}, {d['ops_per_step']} ops")
        for key in ("decode_profile_batch", "decode_profile_batch1"):
            p = r[key]
            lines.append(f"{dtype} {key}: wall {1e3 * p['wall_per_step_s']:.1f} ms/step, matmul "
                         f"{1e3 * p['matmul_self_per_step_s']:.1f} ms, "
                         f"other {1e3 * p['other_self_per_step_s']:.1f} ms; "
                         + ", ".join(f"{o['op']} {o['self_ms_per_step']:.1f}" for o in p["top_ops"][:6]))
        lines.append(f"{dtype} decode adapters off: {1e3 * r['decode_batch_adapters_off']['step_best_s']:.1f} ms, "
                     f"{r['decode_batch_adapters_off']['ops_per_step']} ops")
        t = r["train_step"]
        lines.append(f"{dtype} train {t['shape']}: {t['seconds']:.3f} s, {t['tokens_per_s']:.0f} tok/s, bound "
                     f"{t['bound_tokens_per_s']:.0f}, x{t['measured_over_bound']:.2f}, "
                     f"saved {t['saved_activation_gb']:.2f} GB")
        g = r["generation"]
        lines.append(f"{dtype} generation: batched {g['batched']['seconds']:.2f} s "
                     f"(bound {g['batched']['bound_s']:.2f})"
                     f", one-by-one {g['one_by_one']['seconds']:.2f} s (bound {g['one_by_one']['bound_s']:.2f}), "
                     f"speedup {g['speedup']:.2f} (bound {g['bound_speedup']:.2f})")
    lines.append(f"discussion {record['discussion']}")
    lines.append(f"bf16 speedups {record['bf16_speedup']}")
    m = record["memory"]
    lines.append(f"memory peak {m['peak_rss_gb']:.2f} GB, fp32 {m['peak_rss_fp32_gb']:.2f}, "
                 f"floor {m['floor_fp32_gb']:.2f}")
    return "\n".join(lines)


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    rate, gen, disc, mem = axes
    pieces = [("prefill", "prefill_csqa"), ("prefill 512", "prefill_synthetic"), ("decode", "decode_batch"),
              ("train", "train_step")]
    xs = range(len(pieces))
    for offset, dtype, color in ((-0.3, "fp32", "C0"), (0.1, "bf16", "C1")):
        r = record[dtype]
        measured = [r[key]["tokens_per_s"] for _, key in pieces]
        bound = [r[key]["bound_tokens_per_s"] for _, key in pieces]
        rate.bar([x + offset for x in xs], measured, width=0.2, color=color, label=f"{dtype} measured")
        rate.bar([x + offset + 0.2 for x in xs], bound, width=0.2, color=color, alpha=0.35, hatch="//",
                 label=f"{dtype} bound")
    rate.set_xticks(list(xs), [label for label, _ in pieces])
    rate.set(yscale="log", ylabel="tokens / s", title="throughput vs physical bound")
    rate.legend(fontsize=7)
    labels, values, colors = [], [], []
    for dtype, color in (("fp32", "C0"), ("bf16", "C1")):
        g = record[dtype]["generation"]
        for mode, short in (("batched", "batch"), ("one_by_one", "1x1")):
            labels += [f"{dtype}\n{short}", f"{dtype}\n{short} bd"]
            values += [g[mode]["seconds"], g[mode]["bound_s"]]
            colors += [color, "0.75"]
    gen.bar(labels, values, color=colors)
    gen.tick_params(axis="x", labelsize=7)
    g = record["fp32"]["generation"]
    gen.set(ylabel="seconds", title=f"generation {record['new_tokens']} tok: batched {g['speedup']:.1f}x "
                                     f"(bound {g['bound_speedup']:.1f}x)")
    d, bottom = record["discussion"], 0.0
    for index, (name, value) in enumerate(d["parts"].items()):
        disc.bar("sum of parts", value, bottom=bottom, color=f"C{index}", label=name.removesuffix("_s"))
        bottom += value
    disc.bar("step", d["step_s"], color="C4")
    disc.set(ylabel="seconds", title=f"fp32 step = {d['step_over_parts']:.2f}x its parts")
    disc.legend(fontsize=7)
    m = record["memory"]
    mem.bar(["peak RSS fp32", "peak RSS\n+bf16 copy", "floor fp32"],
            [m["peak_rss_fp32_gb"], m["peak_rss_gb"], m["floor_fp32_gb"]], color=["C0", "C1", "0.75"])
    mem.set(ylabel="GB", title="memory")
    fig.suptitle(f"{record['model']} on CPU ({record['machine']['torch_threads']} threads), batch {record['batch']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
