"""Field checks shared by the config dataclasses: each failure names the field, its value and what was expected,
and runs before anything is written (a config that fails here leaves no run dir behind)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .models import MODEL_ALIASES

MAX_SEED = 2**32 - 1  # numpy's seed range
MAX_NEW_TOKENS = 32768  # the longest context of the models used here (Qwen2.5); the model's own context is checked
MAX_EXAMPLES = 1_000_000  # per run; the largest split (MMLU test) has 14,042
# Upper bounds of the config fields that set a size (of memory, time or generations), checked when the config is
# read, so that an absurd value is refused up front and not met as a MemoryError or a run that never ends.
UPPER_BOUNDS = {
    "limit": MAX_EXAMPLES, "eval_limit": MAX_EXAMPLES, "limits": MAX_EXAMPLES,
    "max_new_tokens": MAX_NEW_TOKENS, "learner_max_new_tokens": MAX_NEW_TOKENS,
    "partner_max_new_tokens": MAX_NEW_TOKENS, "eval_max_new_tokens": MAX_NEW_TOKENS,
    "final_max_new_tokens": MAX_NEW_TOKENS, "remark_budget": MAX_NEW_TOKENS, "max_seq_len": 4 * MAX_NEW_TOKENS,
    "micro_batch_tokens": 64 * MAX_NEW_TOKENS,
    "batch_size": 4096, "eval_batch_size": 4096,
    "rounds": 32, "agents": 32, "stance_retries": 32,  # each multiplies the generations per example
    "partner_max_retries": 100, "partner_concurrency": 1024, "checkpoint_every": MAX_EXAMPLES, "lora_r": 4096,
}
# Token fields that the model generating them (or, for max_seq_len, training on them) must hold in its context.
CONTEXT_FIELDS = ("max_seq_len", "max_new_tokens", "learner_max_new_tokens", "partner_max_new_tokens",
                  "eval_max_new_tokens", "final_max_new_tokens")
# Where generated tokens come from (saie_lib.engines): hf (transformers, the reference) or vllm (a vLLM server)
GENERATIONS = ("hf", "vllm")
# A study names a folder under results/runs/: one or more path parts of plain characters, never '.' or '..'.
_STUDY_PART_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


def check_choice(cfg: Any, name: str, allowed: tuple[str, ...]) -> None:
    value = getattr(cfg, name)
    if value not in allowed:
        raise ValueError(f"config field {name!r} = {value!r}; expected one of {', '.join(allowed)}")


def check_min(cfg: Any, name: str, minimum: int) -> None:
    value = getattr(cfg, name)
    if value is not None and value < minimum:
        raise ValueError(f"config field {name!r} = {value!r}; expected an integer >= {minimum}")


def check_upper_bounds(cfg: Any) -> None:
    """Every size field of `cfg` (one number, or one per task) within its UPPER_BOUNDS entry."""
    for name, bound in UPPER_BOUNDS.items():
        value = getattr(cfg, name, None)
        values = value if isinstance(value, (list, tuple)) else (value,)
        if any(isinstance(v, int) and v > bound for v in values):
            raise ValueError(f"config field {name!r} = {_shown(value)}; expected at most {bound:,} (an upper bound "
                             "on sizes, so that an absurd value is refused before any work)")


def _shown(value: Any) -> str:
    text = repr(list(value) if isinstance(value, tuple) else value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_fits_context(cfg: Any, context: int | None, names: tuple[str, ...] = CONTEXT_FIELDS) -> None:
    """Token fields of `cfg` (one number, or one per task) within the loaded model's context (None: unknown)."""
    for name in names:
        value = getattr(cfg, name, None)
        values = value if isinstance(value, (list, tuple)) else (value,)
        if context is not None and any(isinstance(v, int) and v > context for v in values):
            raise ValueError(f"config field {name!r} = {_shown(value)} is more than the model's context of "
                             f"{context:,} tokens (config.max_position_embeddings); lower it")


def check_run_fields(cfg: Any) -> None:
    """seed range, a non-empty model, a study that stays inside the results root, a results root that is a folder,
    sizes within their upper bounds, a generation engine that can serve the model as configured."""
    check_upper_bounds(cfg)
    if not 0 <= cfg.seed <= MAX_SEED:
        raise ValueError(f"config field 'seed' = {cfg.seed}; expected an integer from 0 to {MAX_SEED}")
    if not str(cfg.model).strip():
        raise ValueError("config field 'model' is empty; expected a model alias "
                         f"({', '.join(sorted(MODEL_ALIASES))}), a Hub id (owner/name) or a local directory")
    parts = str(cfg.study).split("/")
    if not all(_STUDY_PART_RE.match(part) for part in parts):
        raise ValueError(f"config field 'study' = {cfg.study!r}; expected folder names of letters, digits, '.', "
                         "'_' or '-' separated by '/' (it becomes results/runs/<study>/; no '..', no absolute path)")
    root = cfg.results_root
    if root is not None and Path(root).expanduser().exists() and not Path(root).expanduser().is_dir():
        raise ValueError(f"config field 'results_root' = {root!r} is a file; expected a folder (or None for the "
                         "default results/)")
    check_generation(cfg)


def check_partner(partner: str) -> None:
    served = any(partner.startswith(p) and len(partner) > len(p) for p in ("api:", "vllm:"))
    ok = (partner in ("self", "scripted") or served or partner in MODEL_ALIASES or "/" in partner
          or Path(partner).expanduser().is_dir())
    if not ok:
        raise ValueError(f"config field 'partner' = {partner!r}; expected 'self', 'scripted', 'api:<model>', "
                         "'vllm:<model>', a model alias "
                         f"({', '.join(sorted(MODEL_ALIASES))}), a Hub id (owner/name) or a local directory")


def check_positive(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value is not None and not (value > 0 and value != float("inf")):
            raise ValueError(f"config field {name!r} = {value}; expected a finite number > 0")


def check_train_fields(cfg: Any) -> None:
    """TrainConfig: merged generation where it works, the remark budget and cache fields."""
    check_merged_generation(cfg)
    check_remark_fields(cfg)


def check_remark_fields(cfg: Any) -> None:
    """A remark budget that fits the learner's context; a remark cache path that is not a folder."""
    check_min(cfg, "remark_budget", 1)
    if cfg.remark_budget is not None and cfg.remark_budget > cfg.max_seq_len:
        raise ValueError(f"config field 'remark_budget' = {cfg.remark_budget}; expected at most max_seq_len "
                         f"({cfg.max_seq_len}): a remark must fit the learner's context")
    path = cfg.remark_cache
    if path is not None and Path(path).expanduser().exists() and not Path(path).expanduser().is_file():
        raise ValueError(f"config field 'remark_cache' = {path!r} is a folder, not a file; expected the path of a "
                         "SQLite file (or None for <cache dir>/remarks.sqlite)")


def check_merged_generation(cfg: Any) -> None:
    """Merged generation adds LoRA deltas into float32 base weights (Learner.lora_merged): peft only."""
    if cfg.merged_generation and (cfg.backend == "unsloth" or cfg.dtype in ("bfloat16", "float16")):
        raise ValueError(f"config field 'merged_generation' = true needs the peft backend and a float32 model "
                         f"(backend {cfg.backend!r}, dtype {cfg.dtype!r})")


def check_generation(cfg: Any) -> None:
    """vllm serves the plain model in its dtype, LoRA merged into a float32 checkpoint: not Unsloth's 4-bit
    model, nor the learner merged in place."""
    check_choice(cfg, "generation", GENERATIONS)
    if cfg.generation == "vllm" and (cfg.backend == "unsloth" or cfg.load_in_4bit
                                     or getattr(cfg, "merged_generation", False)):
        raise ValueError("config field 'generation' = 'vllm' serves the model with its adapter merged into a float32 "
                         "checkpoint: it needs backend 'peft' or 'auto', load_in_4bit false and merged_generation "
                         "false, or set generation to 'hf'")
