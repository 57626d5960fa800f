"""Profiles: one YAML file per compute budget (configs/profiles/<name>.yaml) holding every setting of every
experiment, so a reproduction is `profile name -> configs -> run dirs` with nothing typed in between.

A profile has a `train` section (TrainConfig fields shared by the training experiments), per-task overrides
under `tasks`, and an `inference` section (InferenceConfig fields; its `task` names the training experiment
whose conditions are discussed at inference time). The model, dtype and device of the inference
section default to the training ones.

`seeds` (a count, or a list of distinct seeds starting with the train section's `seed`) says how many times
each training experiment is replicated: every seed draws its own training and evaluation subset and trains every
condition again. Default 1. The first seed's runs are the profile's plain runs (same identity as before `seeds`
existed); the inference experiment discusses the first seed's models; the robustness experiment challenges
every seed's models, all on the same challenge items.

`conditions` (default: all of `conditions.CONDITIONS`) narrows what every experiment compares, or adds the
scripted-partner family (`conditions.SCRIPTED_CONDITIONS`); it must keep base, none and saie, the paper's
comparison. `experiments` (default: all) is what `make reproduce` runs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .challenge_config import ChallengeConfig
from .colab import require_gpu, runtime_report
from .conditions import ALL_CONDITIONS, CONDITIONS
from .config import InferenceConfig, TrainConfig, from_dict
from .config_checks import MAX_SEED
from .experiment_registry import EXPERIMENTS
from .paths import configs_dir
from .tasks import TASKS
from .yaml_files import read_yaml_mapping

PROFILE_KEYS = ("description", "expected_wall_time", "expected_memory", "train", "tasks", "inference", "seeds",
                "robustness", "conditions", "experiments")
REQUIRED_CONDITIONS = ("base", "none", "saie")  # the paper's comparison, which every finding reads
MAX_SEEDS = 100  # each seed trains every condition again
SHARED_WITH_INFERENCE = ("model", "model_source", "dtype", "device", "trust_remote_code", "seed", "backend",
                         "load_in_4bit", "generation")


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    description: str
    expected_wall_time: str
    expected_memory: str
    train: dict[str, Any]
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    inference: dict[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    robustness: dict[str, Any] = field(default_factory=dict)  # ChallengeConfig fields of the robustness experiment
    conditions: tuple[str, ...] = CONDITIONS  # what every experiment compares, in the canonical order
    experiments: tuple[str, ...] | None = None  # what `make reproduce` runs (None: every experiment)

    @property
    def trained_conditions(self) -> tuple[str, ...]:
        return tuple(c for c in self.conditions if c != "base")

    def training_config(self, task: str, remark_policy: str, **fields: Any) -> TrainConfig:
        """The profile's TrainConfig for one task and condition; `fields` (study, data_dir, ...) on top."""
        data = {**self.train, **self.tasks.get(task, {}), "task": task, "remark_policy": remark_policy, **fields}
        return from_dict(TrainConfig, data, f"{self.path} (task {task})")

    @property
    def inference_task(self) -> str:
        return self.inference["task"]

    def inference_config(self, **fields: Any) -> InferenceConfig:
        """The profile's InferenceConfig; `fields` (adapter, label, study, data_dir, ...) on top."""
        shared = {k: self.train[k] for k in SHARED_WITH_INFERENCE if k in self.train}
        return from_dict(InferenceConfig, {**shared, **self.inference, **fields}, f"{self.path} (inference)")

    def challenge_config(self, **fields: Any) -> ChallengeConfig:
        """The profile's ChallengeConfig (model settings from `train`); `fields` (adapters, label, ...) on top."""
        shared = {k: self.train[k] for k in SHARED_WITH_INFERENCE if k in self.train}
        return from_dict(ChallengeConfig, {**shared, **self.robustness, **fields}, f"{self.path} (robustness)")


def profile_path(name: str | Path) -> Path:
    path = Path(name)
    candidate = path if path.suffix in (".yaml", ".yml") else configs_dir() / "profiles" / f"{name}.yaml"
    if not candidate.is_file():
        raise ValueError(f"profile {str(name)!r} not found at {candidate}; available profiles: {available_profiles()}")
    return candidate


def available_profiles() -> list[str]:
    return sorted(p.stem for p in (configs_dir() / "profiles").glob("*.yaml"))


def load_profile(name: str | Path) -> Profile:
    """Read and fully validate a profile: every config it implies is built once, so a bad field fails here,
    named with its file, and not an hour into a run."""
    path = profile_path(name)
    data = read_yaml_mapping(path, "profile")
    unknown = sorted(set(data) - set(PROFILE_KEYS))
    missing = [k for k in ("description", "expected_wall_time", "expected_memory", "train") if k not in data]
    if unknown or missing:
        raise ValueError(f"{path}: unknown profile key(s) {unknown}, missing {missing}; expected {list(PROFILE_KEYS)}")
    tasks = data.get("tasks") or {}
    bad_tasks = sorted(set(tasks) - set(TASKS))
    if bad_tasks:
        raise ValueError(f"{path}: 'tasks' names unknown task(s) {bad_tasks}; known: {sorted(TASKS)}")
    for key in ("train", "inference", "robustness"):
        if not isinstance(data.get(key) or {}, dict):
            raise ValueError(f"{path}: '{key}' must be a mapping of config fields")
    inference = dict(data.get("inference") or {})
    inference.setdefault("task", "commonsense_qa")
    profile = Profile(name=path.stem, path=path, description=str(data["description"]),
                      expected_wall_time=str(data["expected_wall_time"]),
                      expected_memory=str(data["expected_memory"]), train=dict(data["train"]),
                      tasks={t: dict(v or {}) for t, v in tasks.items()}, inference=inference,
                      seeds=parse_seeds(data.get("seeds", 1), int(data["train"].get("seed", 0)), path),
                      robustness=dict(data.get("robustness") or {}),
                      conditions=parse_conditions(data.get("conditions", list(CONDITIONS)), path),
                      experiments=parse_experiments(data.get("experiments"), path))
    for task in TASKS:
        profile.training_config(task, "saie")
    profile.inference_config()
    profile.challenge_config()
    return profile


def parse_conditions(value: Any, path: Path) -> tuple[str, ...]:
    """A subset of ALL_CONDITIONS (the default CONDITIONS, and the scripted-partner family) that keeps the paper's
    comparison, returned in the canonical order."""
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise ValueError(f"{path}: 'conditions' = {value!r}; expected a list of names from {list(ALL_CONDITIONS)}")
    unknown = [c for c in value if c not in ALL_CONDITIONS]
    missing = [c for c in REQUIRED_CONDITIONS if c not in value]
    problems = [f"names unknown condition(s) {unknown}"] * bool(unknown) + [f"lacks {missing}"] * bool(missing)
    if problems:
        raise ValueError(f"{path}: 'conditions' {' and '.join(problems)}; known: {list(ALL_CONDITIONS)}, of which "
                         f"{list(REQUIRED_CONDITIONS)} are required (the paper's comparison)")
    return tuple(c for c in ALL_CONDITIONS if c in value)


def parse_experiments(value: Any, path: Path) -> tuple[str, ...] | None:
    """None (every experiment) or a list of experiment names, returned in the registry's order."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or any(e not in EXPERIMENTS for e in value):
        raise ValueError(f"{path}: 'experiments' = {value!r}; expected a non-empty list from {list(EXPERIMENTS)}")
    return tuple(e for e in EXPERIMENTS if e in value)


def parse_seeds(value: Any, first: int, path: Path) -> tuple[int, ...]:
    """`seeds: 3` -> (first, first + 1, first + 2); `seeds: [0, 7]` -> (0, 7), whose first must be the train
    section's seed so that the profile's plain runs are its first seed's runs."""
    if isinstance(value, bool) or not isinstance(value, (int, list)):
        raise ValueError(f"{path}: 'seeds' = {value!r}; expected a count (e.g. 3) or a list of integer seeds")
    count = value if isinstance(value, int) else len(value)
    if count > MAX_SEEDS:
        raise ValueError(f"{path}: 'seeds' = {value if isinstance(value, int) else f'a list of {count}'}; expected "
                         f"at most {MAX_SEEDS} seeds (each trains every condition again)")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"{path}: 'seeds' = {value}; expected at least 1")
        value = list(range(first, first + value))
    if not value or any(isinstance(s, bool) or not isinstance(s, int) for s in value) or len(set(value)) != len(value):
        raise ValueError(f"{path}: 'seeds' = {value!r}; expected a non-empty list of distinct integers")
    if not all(0 <= s <= MAX_SEED for s in value):
        raise ValueError(f"{path}: 'seeds' = {value!r}; expected seeds from 0 to {MAX_SEED}")
    if value[0] != first:
        raise ValueError(f"{path}: 'seeds' starts with {value[0]} but train.seed is {first}; list the train seed first")
    return tuple(value)


def resolve_profile(name: str) -> str:
    """'auto': colab-t4 when a CUDA GPU is visible, else cpu-small; on Colab without a GPU it refuses instead of
    silently running the CPU profile. Any other name is returned as it is."""
    if name != "auto":
        return name
    import torch

    if torch.cuda.is_available():
        return "colab-t4"
    if "google.colab" in sys.modules:
        require_gpu(runtime_report())
    return "cpu-small"
