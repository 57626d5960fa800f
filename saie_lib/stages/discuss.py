"""Stage: the five inference settings (conditions.INFERENCE_SETTINGS) for one model (base or adapter) on the
same examples, into a run dir.

seed -> data -> model -> individual / self-discussion / multi-agent / self-consistency -> analyses. Each
finished setting is saved on its own, so an interrupted run redoes only the settings it had not finished.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .. import artifacts
from ..artifacts import read_jsonl, write_jsonl
from ..config import InferenceConfig
from ..config_checks import check_fits_context
from ..data import load_task
from ..discussion_analysis import accuracy_by_round, as_strict, flips_by_round, robustness
from ..engines import close_engine, generation_record, open_engine
from ..generation import Decoding, generation_settings, is_engine, model_context
from ..inference import Agent, individual, multi_agent, partner_discussion, self_consistency, self_discussion
from ..learner import Learner, load_as_learner, loads_as_learner
from ..models import load_model
from ..parsing import RULES_VERSION
from ..partners import Sampling
from ..partners.local import AdapterOffPartner, EnginePartner, LocalModelPartner
from ..progress import progress_bar
from ..stats import reasoning_rouge
from ..tasks import get_task
from . import (
    named_run_dir,
    open_run,
    record_session,
    run_prompt_version,
    single_writer,
    stage_identity,
    starting,
    weights_record,
    write_metrics,
)


def run_identity(cfg: InferenceConfig) -> dict[str, Any]:
    return stage_identity(cfg)


def inference_run_dir(cfg: InferenceConfig) -> Path:
    return named_run_dir(cfg, f"{cfg.task}-{artifacts.slug(label_of(cfg))}", run_identity(cfg))


def label_of(cfg: InferenceConfig) -> str:
    if cfg.label:
        return cfg.label
    return cfg.model if not cfg.adapter else f"{cfg.model}+{Path(cfg.adapter).parent.name or 'adapter'}"


def load_discussant(cfg: InferenceConfig):
    """The model for every agent: the base model, with the trained LoRA adapter on top when given. With backend
    "peft" on plain transformers; otherwise loaded as the trained conditions' learner was (Unsloth, 4-bit), so an
    adapter sits on the base it was trained on (a fresh adapter starts at zero: exactly the base)."""
    if cfg.adapter and not (Path(cfg.adapter) / "adapter_config.json").is_file():
        raise ValueError(f"config field 'adapter' = {cfg.adapter!r}: no peft adapter there. Adapters are not "
                         "committed; train one with notebook 02 or `make reproduce` (remove a finished run dir "
                         "to re-create its adapter)")
    if cfg.generation == "vllm":  # a vLLM server (saie_lib.engines), the adapter merged into its checkpoint
        engine = open_engine(cfg, adapter=cfg.adapter)
        return engine, engine.tokenizer, engine.model_info
    if loads_as_learner(cfg):
        learner = load_as_learner(cfg, adapter=cfg.adapter)
        return learner.model, learner.tokenizer, {**learner.info, "adapter": cfg.adapter}
    model, tokenizer, info = load_model(cfg.model, source=cfg.model_source, dtype=cfg.dtype, device=cfg.device,
                                        trust_remote_code=cfg.trust_remote_code)
    if cfg.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, cfg.adapter).eval()
    return model, tokenizer, {**info, "adapter": cfg.adapter}


def run_setting(setting: str, cfg: InferenceConfig, model: Any, tokenizer: Any, examples: list,
                first_answers: list[str] | None = None) -> list[dict]:
    """One setting's rows. `first_answers`: `individual`'s outputs, which the greedy discussions (self,
    partner) reuse as their round 0 instead of generating the same answers again."""
    greedy = Decoding(max_new_tokens=cfg.max_new_tokens)
    sampled = Decoding(max_new_tokens=cfg.max_new_tokens, do_sample=True, temperature=cfg.temperature)
    common = {"seed": cfg.seed, "batch_size": cfg.batch_size}
    if setting == "individual":
        return individual(Agent("greedy", model, tokenizer, greedy), examples, **common)
    if setting == "self_discussion":
        return self_discussion(Agent("greedy", model, tokenizer, greedy), examples, rounds=cfg.rounds,
                               first_answers=first_answers, **common)
    if setting == "partner_discussion":
        return partner_discussion(Agent("greedy", model, tokenizer, greedy), frozen_partner(model, tokenizer, cfg),
                                  examples, rounds=cfg.rounds, partner_sampling=Sampling(
                                      max_new_tokens=cfg.partner_max_new_tokens, seed=cfg.seed),
                                  first_answers=first_answers, **common)
    agents = [Agent(f"agent{i}", model, tokenizer, sampled) for i in range(cfg.agents)]
    if setting == "multi_agent":
        return multi_agent(agents, examples, rounds=cfg.rounds, **common)
    return self_consistency(agents[0], examples, samples=cfg.agents * (cfg.rounds + 1), **common)


def individual_answers(out: Path, examples: list) -> list[str] | None:
    """This run's `individual` outputs in example order, when that setting has finished (else None)."""
    path = artifacts.setting_samples(out, "individual")
    if not path.exists():
        return None
    by_id = {row["id"]: row["output"] for row in read_jsonl(path)}
    return [by_id[e.id] for e in examples] if all(e.id in by_id for e in examples) else None


def frozen_partner(model: Any, tokenizer: Any, cfg: InferenceConfig):
    """The partner of partner_discussion: the base model (adapters off, when the model has them)."""
    if is_engine(model):
        return EnginePartner(open_engine(cfg) if cfg.adapter else model, name=cfg.model)
    info = {"name": cfg.model, "source": cfg.model_source, "dtype": str(model.dtype).removeprefix("torch.")}
    if cfg.adapter:
        return AdapterOffPartner(Learner(model, tokenizer, info), batch_size=cfg.batch_size)
    return LocalModelPartner.from_loaded(model, tokenizer, info, batch_size=cfg.batch_size)


def setting_metrics(rows: list[dict], examples: list, seed: int) -> dict[str, Any]:
    """Voted accuracy per round (and the final round's under the strict parse), flips, generations spent per
    example, ROUGE of the last round's reasoning."""
    by_round = accuracy_by_round(rows, seed=seed)
    strict = {"final_strict": accuracy_by_round(as_strict(rows), seed=seed)[-1]} \
        if all("parsed_strict" in r for r in rows) else {}  # runs recorded before rows kept the strict parse
    last = max(r["round"] for r in rows)
    final_rows = [r for r in rows if r["round"] == last]
    references = {e.id: e.rationale for e in examples}
    stance_rows = [r for r in rows if r.get("stance")]
    return {
        "by_round": by_round, "final": by_round[-1], **strict, "flips": flips_by_round(rows),
        **({"robustness": robustness(rows)} if stance_rows else {}),
        "generations_per_example": len(rows) / len(examples),
        "rouge": reasoning_rouge([r["output"] for r in final_rows], [references[r["id"]] for r in final_rows]),
    }


@single_writer(inference_run_dir)
def run_inference(cfg: InferenceConfig, *, progress: bool = True) -> Path:
    """All configured settings on the same examples; finished settings are kept, a finished run is reused."""
    out = inference_run_dir(cfg)
    if not open_run(out, run_identity(cfg), cfg):
        return out
    with starting(out):
        examples = load_task(cfg.task, get_task(cfg.task).eval_split, data_dir=cfg.data_dir, limit=cfg.limit,
                             seed=cfg.seed)
        model, tokenizer, info = load_discussant(cfg)
        check_fits_context(cfg, model_context(model))
        record_session(out, cfg, model=info, resolved={"model_source": info["source"]}, **generation_record(model))
    started = time.perf_counter()
    metrics: dict[str, Any] = {}
    try:
        for setting in progress_bar(cfg.settings, desc="settings", disable=not progress):
            path = artifacts.setting_samples(out, setting)
            if not path.exists():
                rows = run_setting(setting, cfg, model, tokenizer, examples, individual_answers(out, examples))
                write_jsonl(path, rows)
            metrics[setting] = setting_metrics(read_jsonl(path), examples, cfg.seed)
        engine = generation_record(model)
    finally:
        close_engine(model)
    write_metrics(out, cfg, {
        "task": cfg.task, "label": label_of(cfg), "model": cfg.model, "adapter": cfg.adapter, "n": len(examples),
        "agents": cfg.agents, "rounds": cfg.rounds, "seed": cfg.seed, "prompt_version": run_prompt_version(cfg),
        "model_source": info["source"], **weights_record(cfg), "parser_rules": RULES_VERSION, "settings": metrics,
        "decoding": {
            "greedy": generation_settings(Decoding(max_new_tokens=cfg.max_new_tokens)),
            "sampled": generation_settings(Decoding(max_new_tokens=cfg.max_new_tokens, do_sample=True,
                                                    temperature=cfg.temperature))},
        "seconds_this_session": round(time.perf_counter() - started, 1), **engine,
    })
    return out
