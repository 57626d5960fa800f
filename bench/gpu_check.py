"""GPU check: what a lent GPU machine measures in under 8 minutes, with nothing to download there.

Models are built from the real architectures' configs (Qwen2.5-0.5B / 1.5B shapes) with random weights: speed and
memory do not depend on the weights. The vocabulary is SmolLM2's tokenizer (49,152 tokens, shipped in the
embedded GGUF package) instead of Qwen's 151,936, so that the library's prompts, discussion and decoding run
unchanged; the record says so. Data: the committed test fixtures (real GSM8K / CommonsenseQA rows).

    python bench/gpu_check.py --arch qwen2.5-1.5b --out results/bench          # on the GPU machine
    python bench/gpu_check.py --arch tiny --dry-run --out /tmp/check           # on CPU: the same code, in seconds

Measures: LoRA training tokens/s with plain peft and with Unsloth on the same model and batch; one discussion
step against its parts; generation batched vs one-by-one; peak GPU memory; and a projected wall time of the full
GSM8K SAIE run (7,473 training / 1,319 test examples) from those numbers. Writes gpu_check-<arch>.json and .png.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_discussion import frozen_optimizer, measure_batching, measure_parts, measure_step  # noqa: E402

from saie_lib import artifacts  # noqa: E402
from saie_lib.config import TrainConfig  # noqa: E402
from saie_lib.data import load_task  # noqa: E402
from saie_lib.learner import Learner, LoraSettings, UnslothLearner  # noqa: E402
from saie_lib.models import resolve_model  # noqa: E402
from saie_lib.partners.local import AdapterOffPartner  # noqa: E402
from saie_lib.training import optimizer_step, plain_features  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "data"
ARCHITECTURES = {  # Qwen2 configs of the real checkpoints (vocabulary replaced, see above)
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1e6,
                         tie_word_embeddings=True),
    "qwen2.5-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                         num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1e6,
                         tie_word_embeddings=True),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=2048, rope_theta=1e6, tie_word_embeddings=True),
}
GSM8K_TRAIN, GSM8K_TEST, WARMUP, ROUNDS = 7473, 1319, 0.2, 2


def build_model(arch: str, folder: Path, dtype: str, new_tokens: int, tokenizer_from: str) -> Path:
    """A random-weight model of `arch` with SmolLM2's tokenizer, saved where Learner/Unsloth load local models.
    Its generation config asks for `new_tokens` at least (a random model may stop at once): every generation
    runs its full length, so the timings are those of real answers of that length."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(tokenizer_from).path)
    config = Qwen2Config(**ARCHITECTURES[arch], vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(getattr(torch, dtype))
    model.generation_config.min_new_tokens = new_tokens
    # a random model tends to repeat the prompt's last token, here a newline: keep whitespace-only tokens out,
    # so that answers and remarks are non-empty text (the partner refuses an empty remark)
    model.generation_config.suppress_tokens = [i for i in range(len(tokenizer)) if not tokenizer.decode([i]).strip()]
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def training_throughput(learner, examples, steps: int, max_seq_len: int) -> dict:
    import torch

    features = plain_features(learner.tokenizer, examples, max_seq_len)
    tokens = sum(len(f["input_ids"]) for f in features)
    optimizer = frozen_optimizer(learner)
    optimizer_step(learner, optimizer, features, 1.0)  # warm-up: kernels, allocator
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        optimizer_step(learner, optimizer, features, 1.0)
    sync()
    seconds = (time.perf_counter() - start) / steps
    return {"step_s": seconds, "tokens_per_step": tokens, "tokens_per_s": tokens / seconds}


def load(backend: str, folder: Path, device: str):
    if backend == "unsloth":
        return UnslothLearner.create(str(folder), LoraSettings(), device=device, max_seq_length=1024)
    return Learner.create(str(folder), LoraSettings(), device=device)


def backend_record(backend: str, folder: Path, args, examples) -> dict:
    try:
        learner = load(backend, folder, args.device)
    except ImportError as error:  # Unsloth not installed on this machine: say so, measure the rest
        return {"available": False, "error": str(error)}
    except Exception as error:  # noqa: BLE001 - a broken Unsloth install must not lose the peft numbers
        if backend == "peft":
            raise
        return {"available": False, "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(limit=8)}
    record = {"available": True, "precision": learner.info.get("precision"),
              "training": training_throughput(learner, examples, args.steps, args.max_seq_len)}
    if backend == "peft":
        cfg = TrainConfig(model=str(folder), task="gsm8k", rounds=1, remark_policy="adversarial",
                          learner_max_new_tokens=args.new_tokens, partner_max_new_tokens=args.new_tokens,
                          eval_batch_size=args.batch, batch_size=args.batch, max_seq_len=args.max_seq_len)
        partner = AdapterOffPartner(learner, batch_size=args.batch)
        record["parts"] = measure_parts(learner, partner, examples, cfg, 1)
        record["discussion_step_s"] = measure_step(learner, partner, examples, cfg, 1)
        record["batching"] = measure_batching(learner, examples, args.new_tokens)
    return record


def projection(peft: dict, batch: int) -> dict:
    """Full GSM8K SAIE from the measured pieces: warm-up steps, discussion batches x rounds, test generation."""
    warmup_batches = round(GSM8K_TRAIN * WARMUP / batch)
    discussion_batches = round(GSM8K_TRAIN * (1 - WARMUP) / batch)
    train_s = warmup_batches * peft["training"]["step_s"] + discussion_batches * ROUNDS * peft["discussion_step_s"]
    eval_s = GSM8K_TEST / batch * peft["batching"]["batched_s"]
    return {"warmup_batches": warmup_batches, "discussion_batches": discussion_batches, "rounds": ROUNDS,
            "train_hours": train_s / 3600, "eval_hours": eval_s / 3600, "saie_run_hours": (train_s + eval_s) / 3600}


def plot(record: dict, path: Path) -> None:
    """Training tokens/s by backend, and where a discussion step's seconds go."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from bench_plots import save

    backends = [b for b in ("peft", "unsloth") if record["backends"][b].get("available")]
    parts = record["backends"]["peft"]["parts"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1, 2]})
    left.bar(backends, [record["backends"][b]["training"]["tokens_per_s"] for b in backends],
             color=["#4c72b0", "#dd8452"][: len(backends)])
    left.set(ylabel="tokens / s", title="LoRA training")
    right.barh([name.removesuffix("_s").replace("_", " ") for name in parts], list(parts.values()), color="#55a868")
    right.set(xlabel="seconds", title=f"one discussion step, peft ({record['new_tokens']} new tokens a turn)")
    fig.suptitle(f"{record['arch']} (random weights), {record['device'].get('gpu', 'CPU')}, batch {record['batch']}")
    save(fig, path)


def peak_gpu_gb() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="qwen2.5-1.5b")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--max-seq-len", type=int, default=768)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--tokenizer", default="smollm2-135m-instruct",
                        help="model alias or local folder whose tokenizer the random model uses (a folder on a "
                             "machine without the embedded GGUF package, e.g. a built tiny-random-smollm2)")
    parser.add_argument("--source-sha",
                        help="the commit a copied work tree was made from (recorded instead of its .git's HEAD)")
    parser.add_argument("--dry-run", action="store_true", help="CPU smoke run: 1 step, 8 new tokens, batch 2")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--plot", type=Path, help="only draw the figure of this record (into --out)")
    args = parser.parse_args(argv)
    if args.plot:
        record = json.loads(args.plot.read_text())
        plot(record, args.out / args.plot.with_suffix(".png").name)
        return record
    if args.dry_run:
        args.steps, args.new_tokens, args.batch, args.dtype = 1, 8, 2, "float32"
    env = artifacts.env_record()
    if args.source_sha:  # a copied work tree: its .git, if any came along, need not be the commit that ran
        env.update(git_sha=args.source_sha, git_dirty=None, git_sha_from="--source-sha")
    examples = load_task("gsm8k", "train", data_dir=str(FIXTURES), limit=args.batch, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model(args.arch, Path(tmp) / args.arch, args.dtype, args.new_tokens, args.tokenizer)
        record = {"arch": args.arch, "vocabulary": "SmolLM2 tokenizer (49,152), not Qwen's 151,936",
                  "weights": "random (timing and memory do not depend on them); generations forced to new_tokens",
                  "batch": args.batch, "new_tokens": args.new_tokens, "max_seq_len": args.max_seq_len,
                  "dtype": args.dtype,
                  "backends": {b: backend_record(b, folder, args, examples) for b in ("peft", "unsloth")}}
    peft, unsloth = record["backends"]["peft"], record["backends"]["unsloth"]
    if unsloth["available"]:
        record["unsloth_over_peft"] = unsloth["training"]["tokens_per_s"] / peft["training"]["tokens_per_s"]
    record.update(projected_gsm8k_saie=projection(peft, args.batch), peak_gpu_gb=peak_gpu_gb(),
                  device=env["device"], env=env)
    args.out.mkdir(parents=True, exist_ok=True)
    artifacts.write_json(args.out / f"gpu_check-{args.arch}.json", record)
    plot(record, args.out / f"gpu_check-{args.arch}.png")
    headline = {k: record.get(k) for k in ("arch", "device", "unsloth_over_peft", "peak_gpu_gb")}
    headline["saie_run_hours"] = record["projected_gsm8k_saie"]["saie_run_hours"]
    headline["peft_tokens_per_s"] = peft["training"]["tokens_per_s"]
    print(json.dumps(headline))
    return record


if __name__ == "__main__":
    main()
