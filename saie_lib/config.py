"""Config dataclasses that validate themselves; recipes are YAML files whose keys are the fields."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config_checks
from .conditions import INFERENCE_SETTINGS, NO_PARTNER_POLICIES, REMARK_POLICIES
from .config_checks import check_choice, check_min, check_partner, check_positive, check_run_fields
from .model_sources import partner_weights_fields, weights_fields
from .paths import configs_dir
from .tasks import TASKS
from .yaml_files import read_yaml_mapping

# auto: float32 on CPU, bfloat16 on CUDA (the rule committed runs used); native: bfloat16 where the hardware
# computes it natively (AVX-512 BF16/AMX CPUs, Ampere+ GPUs), else float32 (saie_lib.precision.resolve_dtype)
DTYPES = ("auto", "native", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")
MODEL_SOURCES = ("auto", "hub", "gguf")
# Fields that say where files live, not what is computed: they do not change a run's identity.
LOCATION_FIELDS = ("data_dir", "results_root", "remark_cache")
# Fields that say how patiently a partner is asked or how memory is traded for time (checkpointing gives the same
# gradients bit for bit on CPU: tests/test_memory.py), not what is computed: not part of a run's identity either.
OPERATIONAL_FIELDS = ("partner_timeout_s", "partner_max_retries", "partner_concurrency", "partner_outage_wait_s",
                      "gradient_checkpointing")
GRADIENT_CHECKPOINTING = ("auto", "on", "off")  # auto: on a GPU only


class RunConfig:
    """What every run config shares: the model/task field checks and the run identity."""

    def _check_model_fields(self) -> None:
        check_run_fields(self)
        check_choice(self, "task", tuple(TASKS))
        check_choice(self, "dtype", DTYPES)
        check_choice(self, "device", DEVICES)
        check_choice(self, "model_source", MODEL_SOURCES)

    # Fields added after runs were committed, left out of the identity while they hold the value that reproduces
    # the earlier behaviour, so those runs keep their identity and any other value makes a new run.
    omitted_at: dict[str, Any] = {}

    def identity(self) -> dict[str, Any]:
        """The fields that decide what a run computes (locations excluded), and the weights `model` resolves to
        where they are not the reference ones (saie_lib.model_sources.weights_identity: the source and digest or
        revision, so a Hub user's `auto` run and a committed GGUF one never share an id)."""
        return {**{k: v for k, v in to_dict(self).items() if k not in LOCATION_FIELDS + OPERATIONAL_FIELDS
                   and not (k in self.omitted_at and self.omitted_at[k] == v)},
                **weights_fields(self.model, self.model_source)}  # every run config has both fields


@dataclass(frozen=True)
class EvalConfig(RunConfig):
    study: str = "baseline"  # results/runs/<study>/...
    task: str = "gsm8k"  # a name from saie_lib.tasks.TASKS
    split: str | None = None  # None: the task's evaluation split
    model: str = "smollm2-135m-instruct"  # alias (saie_lib.models.MODEL_ALIASES), Hub id or local path
    model_source: str = "auto"  # for aliases: auto (Hub, else embedded GGUF), hub, gguf
    limit: int | None = 50  # examples per task; None = the whole split
    seed: int = 0
    subjects: tuple[str, ...] | None = None  # MMLU subject filter
    data_dir: str | None = None  # None: env SAIE_DATA_DIR, else the Hugging Face Hub
    results_root: str | None = None  # None: env SAIE_RESULTS_DIR, else <repo>/results
    batch_size: int = 8
    max_new_tokens: int = 256
    dtype: str = "auto"  # auto: float32 on CPU, bfloat16 on CUDA; native: bfloat16 where the hardware has it
    device: str = "auto"
    trust_remote_code: bool = False
    # How the model is loaded: "peft" = plain transformers; "unsloth"/"auto" and load_in_4bit load it as the
    # trained conditions' learner is loaded (same quantisation and dtype), evaluated with its adapters off.
    backend: str = "peft"
    load_in_4bit: bool = False
    generation: str = "hf"  # hf (transformers, the reference) or vllm (a vLLM server; saie_lib.engines)

    omitted_at = {"backend": "peft", "load_in_4bit": False, "generation": "hf"}

    def __post_init__(self) -> None:
        self._check_model_fields()
        check_choice(self, "backend", BACKENDS)
        check_min(self, "batch_size", 1)
        check_min(self, "max_new_tokens", 1)
        check_min(self, "limit", 1)


UPDATE_TARGETS = ("gold", "self_revision_if_correct", "mixed")
BACKENDS = ("auto", "peft", "unsloth")


@dataclass(frozen=True)
class TrainConfig(RunConfig):
    """SAIE training: warm-up SFT, then online learner <-> partner discussion rounds (docs/METHOD_CARD.md)."""

    study: str = "saie"
    task: str = "gsm8k"
    model: str = "smollm2-135m-instruct"  # the learner: alias, Hub id or local path
    model_source: str = "auto"
    backend: str = "auto"  # auto: unsloth on CUDA when installed, else peft
    load_in_4bit: bool = False  # unsloth only
    remark_policy: str = "saie"  # saie (supportive/adversarial 50/50, seeded), supportive, adversarial, none
    rounds: int = 2  # discussion rounds per example
    warmup_fraction: float = 0.2  # share of the training examples used for warm-up SFT
    partner: str = "self"  # self (learner base, adapters off), scripted (stance by construction: partners.scripted),
    # a model alias / Hub id / path, or api:<model>
    partner_base_url: str | None = None  # api partners; None: env OPENAI_BASE_URL, else api.openai.com
    partner_api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable, never stored
    partner_sees_gold: bool = False
    partner_timeout_s: float | None = None  # api partners: seconds per request; None: the client's default
    partner_max_retries: int | None = None  # api partners: retries per request on faults; None: the default
    partner_concurrency: int | None = None  # api partners: requests in flight; None: the client's default
    partner_outage_wait_s: float | None = None  # api partners: how long to wait out an outage; None: default
    remark_cache: str | None = None  # SQLite file of partner remarks; None: <cache dir>/remarks.sqlite
    remark_budget: int | None = None  # tokens a remark is cut to (learner tokenizer); None: max_seq_len // 4
    # gold: rationale + answer; self_revision_if_correct: the learner's revision where correct, else gold;
    # mixed: gold, plus the plain question -> gold pair of each example in the same step
    update_target: str = "gold"
    stance_retries: int = 0  # re-ask the partner (batched) up to this often while a remark fails the stance check
    merged_generation: bool = False  # learner turns and evaluation with LoRA merged into the fp32 base (lora_merged)
    gradient_checkpointing: str = "auto"  # recompute activations in backward; auto: on a GPU only (memory vs time)
    micro_batch_tokens: int | None = None  # a step's rows in length-sorted micro-batches of this many padded tokens
    limit: int | None = 64  # training examples (seeded subset of the task's train split)
    eval_limit: int | None = 50  # evaluation examples (task's eval split); None = whole split
    seed: int = 0
    batch_size: int = 4  # examples per optimiser step
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    max_seq_len: int = 1024  # beyond it the discussion's middle is cut (logged); the target keeps up to half
    learner_max_new_tokens: int = 192
    partner_max_new_tokens: int = 96
    partner_temperature: float = 0.0
    eval_max_new_tokens: int = 256
    eval_batch_size: int = 8
    checkpoint_every: int = 4  # batches between checkpoints (adapter, optimiser, RNG, data cursor)
    save_merged: bool = False  # also write a merged 16-bit model
    data_dir: str | None = None
    results_root: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    trust_remote_code: bool = False
    generation: str = "hf"  # evaluation on hf or vllm (saie_lib.engines); the learner's turns stay on hf

    omitted_at = {"stance_retries": 0, "merged_generation": False, "micro_batch_tokens": None, "remark_budget": None,
                  "generation": "hf"}

    def identity(self) -> dict[str, Any]:
        """`stance_retries` decides nothing where no partner remark is asked for (none, placebo) or the remarks
        are scripted (never re-asked); a scripted partner's remarks are decided by its script's version."""
        identity = super().identity()
        if self.remark_policy in NO_PARTNER_POLICIES or self.partner == "scripted":
            identity.pop("stance_retries", None)
        if self.partner == "scripted":
            from .partners.scripted import SCRIPT_VERSION

            identity["partner_script"] = SCRIPT_VERSION
        return {**identity, **partner_weights_fields(self.partner)}

    def __post_init__(self) -> None:
        self._check_model_fields()
        check_choice(self, "remark_policy", REMARK_POLICIES)
        check_min(self, "stance_retries", 0)
        check_choice(self, "update_target", UPDATE_TARGETS)
        check_choice(self, "gradient_checkpointing", GRADIENT_CHECKPOINTING)
        config_checks.check_train_fields(self)
        check_choice(self, "backend", BACKENDS)
        for name in ("rounds", "batch_size", "lora_r", "lora_alpha", "max_seq_len", "learner_max_new_tokens",
                     "partner_max_new_tokens", "eval_max_new_tokens", "eval_batch_size", "checkpoint_every",
                     "micro_batch_tokens", "limit", "eval_limit", "partner_max_retries", "partner_concurrency"):
            check_min(self, name, 1 if name != "partner_max_retries" else 0)
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"config field 'warmup_fraction' = {self.warmup_fraction}; expected 0 <= x < 1")
        check_positive(self, "learning_rate", "max_grad_norm", "partner_timeout_s")
        for name in ("weight_decay", "partner_temperature", "partner_outage_wait_s"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < float("inf"):
                raise ValueError(f"config field {name!r} = {getattr(self, name)}; expected >= 0")
        check_partner(self.partner)
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"config field 'lora_dropout' = {self.lora_dropout}; expected 0 <= x < 1")


@dataclass(frozen=True)
class InferenceConfig(RunConfig):
    """Discussion at inference time for one model (optionally with a trained adapter) on one task."""

    study: str = "inference"
    task: str = "commonsense_qa"
    model: str = "smollm2-135m-instruct"
    model_source: str = "auto"
    adapter: str | None = None  # a peft adapter dir (e.g. a training run's adapter/), None: the base model
    label: str | None = None  # name shown in tables; None: derived from model and adapter
    settings: tuple[str, ...] = INFERENCE_SETTINGS
    agents: int = 3  # multi-agent discussion: copies of the model, sampled independently
    rounds: int = 2  # discussion rounds after the first answer (self-discussion and multi-agent)
    temperature: float = 0.7  # sampling for multi-agent and self-consistency (individual and self: greedy)
    partner_max_new_tokens: int = 96  # partner_discussion: length of a remark
    limit: int | None = 20
    seed: int = 0
    batch_size: int = 8
    max_new_tokens: int = 256
    data_dir: str | None = None
    results_root: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    trust_remote_code: bool = False
    backend: str = "peft"  # as EvalConfig: "unsloth"/"auto" or load_in_4bit load the base as it was trained on
    load_in_4bit: bool = False
    generation: str = "hf"  # as EvalConfig; the partner of partner_discussion is served the same way

    omitted_at = {"backend": "peft", "load_in_4bit": False, "generation": "hf"}

    def identity(self) -> dict[str, Any]:
        """The adapter counts by the training run it came from, not by where that run sits on disk."""
        identity = super().identity()
        if self.adapter:
            path = Path(self.adapter)
            identity["adapter"] = f"{path.parent.name}/{path.name}"
        return identity

    def __post_init__(self) -> None:
        self._check_model_fields()
        check_choice(self, "backend", BACKENDS)
        unknown = [s for s in self.settings if s not in INFERENCE_SETTINGS]
        if unknown or not self.settings:
            raise ValueError(f"config field 'settings' = {list(self.settings)}; expected a non-empty list from "
                             f"{', '.join(INFERENCE_SETTINGS)}")
        for name in ("agents", "rounds", "limit", "batch_size", "max_new_tokens", "partner_max_new_tokens"):
            check_min(self, name, 1)
        if self.agents < 2:
            raise ValueError(f"config field 'agents' = {self.agents}; a discussion needs at least 2")
        if not self.temperature > 0:
            raise ValueError(f"config field 'temperature' = {self.temperature}; expected > 0 (agents must differ)")


def eval_config_for(cfg: TrainConfig) -> EvalConfig:
    """The untrained model evaluated on exactly the examples and decoding a trained learner is evaluated on."""
    shared = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(EvalConfig) if hasattr(cfg, f.name)}
    return EvalConfig(**{**shared, "limit": cfg.eval_limit, "batch_size": cfg.eval_batch_size,
                         "max_new_tokens": cfg.eval_max_new_tokens})  # every field both have (model, dtype, ...)


def to_dict(cfg: Any) -> dict[str, Any]:
    data = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def from_dict(cls: type, data: dict[str, Any], source: str = "config"):
    """Build `cls` from a mapping; unknown keys and wrongly typed values name the field."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{source}: unknown config field(s) {unknown}; known fields: {sorted(known)}")
    hints = typing.get_type_hints(cls)
    values = {name: _coerce(name, value, hints[name], source) for name, value in data.items()}
    try:
        return cls(**values)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None


def _coerce(name: str, value: Any, hint: Any, source: str) -> Any:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ValueError(f"{source}: config field {name!r} may not be null")
    for option in options:
        origin = typing.get_origin(option)
        if origin is tuple and isinstance(value, (list, tuple)):
            return tuple(str(v) for v in value) if isinstance(value, list) else value
        if option is bool and isinstance(value, bool):
            return value
        if option in (int, float, str) and isinstance(value, option) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
    expected = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ValueError(f"{source}: config field {name!r} = {value!r}; expected {expected}")


def recipe_path(recipe: str | Path) -> Path:
    """A recipe name (configs/recipes/<name>.yaml) or a path to a YAML file."""
    path = Path(recipe)
    candidate = path if path.suffix in (".yaml", ".yml") else configs_dir() / "recipes" / f"{recipe}.yaml"
    if not candidate.is_file():
        available = sorted(p.stem for p in (configs_dir() / "recipes").glob("*.yaml"))
        raise ValueError(f"recipe {str(recipe)!r} not found at {candidate}; available recipes: {available}")
    return candidate


def load_config(recipe: str | Path | None = None, cls: type = EvalConfig, **overrides: Any):
    """Recipe YAML (optional) with keyword overrides on top, validated into `cls`."""
    data: dict[str, Any] = {}
    source = "overrides"
    if recipe is not None:
        path = recipe_path(recipe)
        data = read_yaml_mapping(path, "recipe")
        source = str(path)
    data.update(overrides)
    return from_dict(cls, data, source)


def recipe_overrides(**values: Any) -> dict[str, Any]:
    """Notebook parameters left at None mean 'use the recipe's value': drop them."""
    return {k: v for k, v in values.items() if v is not None}
