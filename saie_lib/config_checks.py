"""Field checks shared by the config dataclasses: each failure names the field, its value and what was expected,
and runs before anything is written (a config that fails here leaves no run dir behind)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .models import MODEL_ALIASES

MAX_SEED = 2**32 - 1  # numpy's seed range
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


def check_run_fields(cfg: Any) -> None:
    """seed range, a non-empty model, a study that stays inside the results root, a results root that is a folder,
    a generation engine that can serve the model as configured."""
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
    ok = (partner == "self" or served or partner in MODEL_ALIASES or "/" in partner
          or Path(partner).expanduser().is_dir())
    if not ok:
        raise ValueError(f"config field 'partner' = {partner!r}; expected 'self', 'api:<model>', 'vllm:<model>', "
                         "a model alias "
                         f"({', '.join(sorted(MODEL_ALIASES))}), a Hub id (owner/name) or a local directory")


def check_positive(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value is not None and not (value > 0 and value != float("inf")):
            raise ValueError(f"config field {name!r} = {value}; expected a finite number > 0")


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
