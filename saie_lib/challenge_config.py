"""The robustness experiment's run config: one model (base, or a condition's adapters) on the challenge sets of
several tasks. A condition's adapters differ per task (each trained on its own task), so `adapters` lists one
per task, in the order of `tasks`; the base model has none."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import BACKENDS, DEVICES, DTYPES, MODEL_SOURCES, RunConfig
from .config_checks import check_choice, check_min, check_run_fields, check_upper_bounds
from .tasks import TASKS


@dataclass(frozen=True)
class ChallengeConfig(RunConfig):
    study: str = "robustness"
    tasks: tuple[str, ...] = ("commonsense_qa", "gsm8k")
    limits: tuple[int, ...] = (200, 50)  # challenge-set size per task, in the order of `tasks`
    max_new_tokens: tuple[int, ...] = (160, 256)  # per task: the first answer (reasoning, then the answer line)
    final_max_new_tokens: int = 48  # the final answer after the remark (asked for in one line)
    model: str = "smollm2-135m-instruct"
    model_source: str = "auto"
    adapters: tuple[str, ...] = ()  # one peft adapter dir per task (a condition's); empty: the base model
    label: str | None = None  # the condition's name in tables
    seed: int = 0  # which items (seeded subset of the eval split) and which wrong answer each is challenged with
    batch_size: int = 8
    data_dir: str | None = None
    results_root: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    trust_remote_code: bool = False
    backend: str = "peft"  # as EvalConfig: "unsloth"/"auto" or load_in_4bit load the base as it was trained on
    load_in_4bit: bool = False
    generation: str = "hf"  # as EvalConfig: hf or vllm (saie_lib.engines)

    omitted_at = {"generation": "hf"}

    def identity(self) -> dict[str, Any]:
        """An adapter counts by the training run it came from, not by where that run sits on disk."""
        identity = super().identity()
        identity["adapters"] = [f"{Path(a).parent.name}/{Path(a).name}" for a in self.adapters]
        return identity

    def __post_init__(self) -> None:
        check_run_fields(self)
        for name, allowed in (("dtype", DTYPES), ("device", DEVICES), ("model_source", MODEL_SOURCES),
                              ("backend", BACKENDS)):
            check_choice(self, name, allowed)
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"config field 'tasks' = {list(self.tasks)}; expected distinct task names from "
                             f"{', '.join(TASKS)}")
        for name in ("limits", "max_new_tokens"):
            object.__setattr__(self, name, _positive_ints(name, getattr(self, name), len(self.tasks)))
        if self.adapters and len(self.adapters) != len(self.tasks):
            raise ValueError(f"config field 'adapters' has {len(self.adapters)} entries for {len(self.tasks)} "
                             "tasks; expected one adapter dir per task, or none for the base model")
        check_min(self, "batch_size", 1)
        check_min(self, "final_max_new_tokens", 1)
        check_upper_bounds(self)

    def per_task(self) -> list[tuple[str, int, int, str | None]]:
        """(task, limit, max_new_tokens, adapter or None) for each task."""
        adapters = self.adapters or (None,) * len(self.tasks)
        return list(zip(self.tasks, self.limits, self.max_new_tokens, adapters))


def _positive_ints(name: str, values: Any, count: int) -> tuple[int, ...]:
    """A tuple of `count` integers >= 1 (YAML lists arrive as strings through config.from_dict)."""
    values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    try:
        numbers = tuple(int(v) for v in values if not isinstance(v, bool))
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) != count or len(values) != count or any(n < 1 for n in numbers) or \
            any(str(n) != str(v).strip() for n, v in zip(numbers, values)):
        raise ValueError(f"config field {name!r} = {list(values)}; expected {count} integer(s) >= 1, one per task")
    return numbers
