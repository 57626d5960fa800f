"""Benchmark: one SAIE discussion step against its parts, batched vs one-by-one generation, peak memory,
and partner calls on a replay. Writes results/bench/<model>-batch<N>.json and .png.

    .venv/bin/python bench/bench_discussion.py --model tiny-random-smollm2
    .venv/bin/python bench/bench_discussion.py --model smollm2-135m-instruct

Targets (issue): step <= 1.10x the sum of its parts; batched >= 5x one-by-one throughput at batch 8;
peak memory of a CPU SmolLM2 run <= 4 GB; a replayed run makes 0 partner calls.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from saie_lib import artifacts
from saie_lib.config import TrainConfig
from saie_lib.data import load_task
from saie_lib.discussion import DiscussionState, advance, draw_stances, partner_turn
from saie_lib.generation import Decoding, generate, render_chat
from saie_lib.learner import Learner, LoraSettings
from saie_lib.partners import Sampling
from saie_lib.partners.local import AdapterOffPartner
from saie_lib.paths import results_dir
from saie_lib.prompts import build_messages, format_target, partner_messages
from saie_lib.remark_cache import CachedPartner, RemarkCache
from saie_lib.stages import train as trainer
from saie_lib.training import optimizer_step, supervised_features


def timed(fn, repeats: int) -> tuple[float, object]:
    """Best wall time of `repeats` calls (the least disturbed by the rest of the machine)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def measure_parts(learner, partner, examples, cfg, repeats):
    """The pieces of one discussion step (rounds=1), each timed alone on exactly the inputs the step sees:
    the learner's answer, the partner's remark, the learner's revision, the optimiser step."""
    decoding = Decoding(max_new_tokens=cfg.learner_max_new_tokens)
    state = DiscussionState(examples)
    t_answer, responses = timed(lambda: learner.generate(state.conversations, decoding, batch_size=cfg.eval_batch_size),
                                repeats)
    stances = draw_stances(cfg.remark_policy, len(examples), seed=cfg.seed, batch_index=0, round_index=1)
    sampling = Sampling(max_new_tokens=cfg.partner_max_new_tokens, seed=cfg.seed)
    t_partner, remarks = timed(lambda: partner_turn(partner, examples, responses, stances, sampling,
                                                    sees_gold=False), repeats)
    advance(state, responses, remarks)
    t_revision, _ = timed(lambda: learner.generate(state.conversations, decoding, batch_size=cfg.eval_batch_size),
                          repeats)
    features = [supervised_features(learner.tokenizer, c, format_target(e), cfg.max_seq_len)
                for c, e in zip(state.conversations, examples)]
    t_step, _ = timed(lambda: optimizer_step(learner, frozen_optimizer(learner), features, 1.0), repeats)
    return {"learner_answer_s": t_answer, "partner_remark_s": t_partner, "learner_revision_s": t_revision,
            "train_step_s": t_step}


def frozen_optimizer(learner):
    import torch

    return torch.optim.SGD(learner.trainable_parameters(), lr=0.0)  # lr 0: timing only, weights unchanged


def measure_step(learner, partner, examples, cfg, repeats):
    """One whole discussion batch with rounds=1, as the trainer runs it."""
    session = trainer.Session(cfg, Path("."), learner, partner, frozen_optimizer(learner), schedule=[])
    t_step, _ = timed(lambda: trainer.discussion_batch(session, examples, 0), repeats)
    return t_step


def measure_batching(learner, examples, new_tokens):
    """The library's `generate` on the examples' prompts, all in one batch vs one by one, after a warm-up call.
    A batch decodes until its longest row stops, one by one each row decodes only its own tokens: with a step
    costing about the same at batch 1 and 8 (decode is bound by reading the weights), batching can gain at most
    `decode_steps_ratio` = (sum of the rows' new tokens) / (the longest row's)."""
    prompts = render_chat(learner.tokenizer, [build_messages(e) for e in examples])
    decoding = Decoding(max_new_tokens=new_tokens)
    learner.for_inference()
    generate(learner.model, learner.tokenizer, prompts[:1], Decoding(max_new_tokens=4), progress=False)
    t_batched, texts = timed(lambda: generate(learner.model, learner.tokenizer, prompts, decoding,
                                              batch_size=len(prompts), progress=False), 1)
    t_single, _ = timed(lambda: generate(learner.model, learner.tokenizer, prompts, decoding, batch_size=1,
                                         progress=False), 1)
    lengths = [min(len(learner.tokenizer(t, add_special_tokens=False)["input_ids"]) + 1, new_tokens) for t in texts]
    return {"batched_s": t_batched, "one_by_one_s": t_single, "speedup": t_single / t_batched,
            "new_tokens_per_row": lengths, "decode_steps_ratio": sum(lengths) / max(lengths)}


def measure_replay(learner, examples, cfg):
    with tempfile.TemporaryDirectory() as folder:
        partner = CachedPartner(AdapterOffPartner(learner), RemarkCache(Path(folder) / "r.sqlite"))
        asks = [partner_messages(e, "The answer is A.", "supportive", sees_gold=False) for e in examples]
        sampling = Sampling(max_new_tokens=cfg.partner_max_new_tokens)
        partner.chat(asks, sampling)
        first = partner.calls_made
        partner.chat(asks, sampling)
        return {"first_run_calls": first, "replay_calls": partner.calls_made - first}


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts, batching = record["parts"], record["batching"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    stack, bottom = [(name.removesuffix("_s").replace("_", " "), value) for name, value in parts.items()], 0.0
    for index, (label, value) in enumerate(stack):
        left.bar("sum of parts", value, bottom=bottom, color=f"C{index}", label=label)
        bottom += value
    left.bar("discussion step", record["step_s"], color="C3")
    left.set(ylabel="seconds", title=f"one step = {record['step_over_parts']:.2f}× its parts")
    left.legend(fontsize=8)
    right.bar(["one by one", f"batch {record['batch']}"], [batching["one_by_one_s"], batching["batched_s"]],
              color=["C7", "C2"])
    right.set(ylabel="seconds", title=f"generation: batched {batching['speedup']:.1f}× faster")
    fig.suptitle(f"{record['model']} on {record['device']}, {record['new_tokens']} new tokens")
    fig.tight_layout()
    fig.savefig(path, dpi=150)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-random-smollm2")
    parser.add_argument("--task", default="commonsense_qa")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()

    env = artifacts.env_record()  # before the work: the commit that ran it
    cfg = TrainConfig(model=args.model, task=args.task, rounds=1, remark_policy="adversarial",
                      learner_max_new_tokens=args.new_tokens, partner_max_new_tokens=args.new_tokens,
                      eval_batch_size=args.batch, batch_size=args.batch)
    examples = load_task(args.task, "train", data_dir=args.data_dir, limit=args.batch, seed=0)
    learner = Learner.create(args.model, LoraSettings(), device=cfg.device)
    partner = AdapterOffPartner(learner, batch_size=args.batch)
    parts = measure_parts(learner, partner, examples, cfg, args.repeats)
    step = measure_step(learner, partner, examples, cfg, args.repeats)
    sum_of_parts = sum(parts.values())
    record = {
        "model": args.model, "device": str(learner.device), "batch": args.batch, "new_tokens": args.new_tokens,
        "parts": parts, "step_s": step, "sum_of_parts_s": sum_of_parts, "step_over_parts": step / sum_of_parts,
        "batching": measure_batching(learner, examples, args.new_tokens),
        "replay": measure_replay(learner, examples, cfg),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2,
        "env": env,
    }
    folder, name = results_dir() / "bench", f"{artifacts.slug(args.model)}-batch{args.batch}"
    artifacts.write_json(folder / f"{name}.json", record)
    plot(record, folder / f"{name}.png")
    print({k: v for k, v in record.items() if k != "env"})


if __name__ == "__main__":
    main()
