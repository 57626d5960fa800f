"""Gradient checkpointing at the committed cpu-small scale: the run with the largest recorded peak RSS (GSM8K, SAIE
with the mixed target) trained again with `gradient_checkpointing: on` into a scratch results root with a fresh
remark cache. Are its outputs the committed ones (same run name, samples, transcripts)? What is its peak RSS?
Writes results/bench/checkpointing-<run>[-off][-<allocator>][-micro<N>].json. `--gradient-checkpointing off`: the
run again as committed, to see what the allocator alone does (the allocator is the one this process runs on,
named when it is not glibc's). `--micro-batch-tokens N`: with length-sorted micro-batches, a new identity whose
outputs differ by rounding, to measure their time and peak at real scale.

    SAIE_DATA_DIR=../shared/data .venv/bin/python bench/bench_checkpointing.py --scratch /tmp/saie-ckpt
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 SAIE_DATA_DIR=../shared/data \
        .venv/bin/python bench/bench_checkpointing.py --scratch /tmp/saie-ckpt-tc --gradient-checkpointing off

Times are recorded but compare only on a quiet machine (`load_average` beside them): the committed run's time is
from its own session.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from saie_lib import artifacts
from saie_lib.conditions import condition_fields
from saie_lib.experiments import get_experiment, study_of
from saie_lib.paths import results_dir
from saie_lib.profiles import load_profile
from saie_lib.resources import allocator
from saie_lib.stages.train import train, training_run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu-small")
    parser.add_argument("--experiment", default="math")
    parser.add_argument("--condition", default="saie_mixed")
    parser.add_argument("--scratch", required=True, help="an empty folder for the re-trained run and its cache")
    parser.add_argument("--gradient-checkpointing", default="on", choices=("on", "off"))
    parser.add_argument("--micro-batch-tokens", type=int, default=None,
                        help="also set micro_batch_tokens (a new identity: outputs differ by rounding)")
    args = parser.parse_args()

    profile, experiment = load_profile(args.profile), get_experiment(args.experiment)
    fields = dict(study=study_of(profile, experiment), **condition_fields(args.condition))
    committed = training_run_dir(profile.training_config(experiment.task, **fields))
    scratch = Path(args.scratch)
    cfg = profile.training_config(experiment.task, **fields, results_root=str(scratch),
                                  remark_cache=str(scratch / "remarks.sqlite"),
                                  gradient_checkpointing=args.gradient_checkpointing,
                                  micro_batch_tokens=args.micro_batch_tokens)
    env, start = artifacts.env_record(), time.time()
    out = train(cfg, progress=True)
    new, old = (artifacts.read_json(d / "metrics.json") for d in (out, committed))
    same = {f"same_{name}": (out / f"{name}.jsonl").read_text() == (committed / f"{name}.jsonl").read_text()
            for name in ("samples", "transcripts")}
    record = {"run": committed.name, "same_run_name": out.name == committed.name, **same,
              "gradient_checkpointing": args.gradient_checkpointing, "allocator": allocator(),
              "micro_batch_tokens": args.micro_batch_tokens,
              "accuracy_rerun": new.get("accuracy"), "accuracy_committed": old.get("accuracy"),
              "peak_rss_gb_rerun": new["resources"]["peak_rss_gb"],
              "peak_rss_gb_committed": old["resources"]["peak_rss_gb"],
              "train_s_rerun": new.get("train_seconds_this_session"),
              "train_s_committed": old.get("train_seconds_this_session"), "wall_s": time.time() - start,
              "load_average_end": os.getloadavg(), "env": env}
    suffix = ("-off" if args.gradient_checkpointing == "off" else "") + \
        ("" if record["allocator"] == "glibc" else f"-{record['allocator']}") + \
        (f"-micro{args.micro_batch_tokens}" if args.micro_batch_tokens else "")
    artifacts.write_json(results_dir() / "bench" / f"checkpointing-{committed.name}{suffix}.json", record)
    print({k: v for k, v in record.items() if k != "env"})


if __name__ == "__main__":
    main()
