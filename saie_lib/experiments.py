"""Running the paper's experiments (their registry: `experiment_registry`): three training experiments (one per
task), the inference-time discussion experiment and the robustness-to-remarks experiment. Every experiment runs
the conditions of its profile (by default all of `conditions.CONDITIONS`) on the same examples, steps and seed:

    base (untrained), none (conventional fine-tuning), placebo, supportive, adversarial, saie, saie_mixed

and records what it produced in `<results>/runs/<profile>/<experiment>/experiment.json`, written last, which
is what the summary step reads. All run dirs of an experiment live beside that file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import artifacts
from .conditions import ALL_CONDITIONS, CONDITIONS, TRAINED_CONDITIONS, condition_fields  # noqa: F401 (CONDITIONS: re-exported)
from .config import TrainConfig, eval_config_for
from .experiment_registry import EXPERIMENTS, Experiment, get_experiment, training_experiment_for
from .learner import prepare_backend
from .paths import results_root as resolve_results_root
from .profiles import Profile
from .stages.challenge import challenge_run_dir, run_challenge
from .stages.discuss import inference_run_dir, run_inference
from .stages.evaluate import eval_run_dir, run_evaluation
from .stages.train import train, training_run_dir

MARKER = artifacts.EXPERIMENT_MARKER


def experiment_dir(profile: str, experiment: str, results_root: str | Path | None = None) -> Path:
    return resolve_results_root(results_root) / "runs" / profile / experiment


def study_of(profile: Profile, experiment: Experiment) -> str:
    return f"{profile.name}/{experiment.name}"


def read_marker(profile: str, experiment: str, results_root: str | Path | None = None) -> dict[str, Any] | None:
    path = experiment_dir(profile, experiment, results_root) / MARKER
    return artifacts.read_json(path) if path.is_file() else None


def condition_configs(profile: Profile, experiment: Experiment, **locations: Any) -> dict[str, Any]:
    """condition -> the TrainConfig that produces it ('base' -> the untrained model's EvalConfig)."""
    configs: dict[str, Any] = {c: profile.training_config(
        experiment.task, study=study_of(profile, experiment), **condition_fields(c), **locations)
        for c in profile.trained_conditions}
    return {"base": eval_config_for(configs["saie"]), **configs}


def condition_run_dirs(profile: Profile, experiment: Experiment, **locations: Any) -> dict[str, Path]:
    configs = condition_configs(profile, experiment, **locations)
    return {c: eval_run_dir(cfg) if c == "base" else training_run_dir(cfg) for c, cfg in configs.items()}


def condition_runs(cfg: TrainConfig) -> list[Path]:
    """The finished runs that differ from `cfg` in the remark policy only, after the untrained model's run on
    the same evaluation examples: the comparison this config belongs to, and nothing else."""
    candidates = [eval_run_dir(eval_config_for(cfg))]
    candidates += [training_run_dir(dataclasses.replace(cfg, **condition_fields(c))) for c in TRAINED_CONDITIONS]
    return [path for path in candidates if artifacts.is_finished(path)]


def run_training_experiment(profile: Profile, experiment: Experiment, *, progress: bool = True,
                            **locations: Any) -> dict[str, Path]:
    """Per seed of the profile: evaluate the base model, then train and evaluate its trained conditions; finished
    runs are reused and an interrupted one resumes from its last checkpoint. Returns the first seed's runs."""
    by_seed: dict[int, dict[str, Path]] = {}
    for seed in profile.seeds:  # each seed replicates the experiment: its own data subsets and training runs
        configs = condition_configs(profile, experiment, **locations, seed=seed)
        prepare_backend(configs["saie"].backend, configs["saie"].device)  # Unsloth before the baseline loads
        runs = {"base": run_evaluation(configs.pop("base"), progress=progress)}
        for condition, cfg in configs.items():
            runs[condition] = train(cfg, progress=progress)
        by_seed[seed] = runs
    write_marker(profile, experiment, by_seed, locations.get("results_root"))
    return by_seed[profile.seeds[0]]


def inference_configs(profile: Profile, **locations: Any) -> dict[str, Any]:
    """condition -> InferenceConfig: the base model, then each trained condition's adapter (from the training
    experiment of the profile's inference task, which must have finished)."""
    source = training_experiment_for(profile.inference_task)
    trained = condition_run_dirs(profile, source, **locations)
    unfinished = [c for c, d in trained.items() if c != "base" and not artifacts.is_finished(d)]
    if unfinished:
        raise RuntimeError(f"the inference experiment discusses the models trained by the '{source.name}' "
                           f"experiment, but its conditions {unfinished} have not finished: run "
                           f"notebooks/{source.notebook} (or `make reproduce`) first")
    study = study_of(profile, EXPERIMENTS["multiagent"])
    adapters = {c: None if c == "base" else str(artifacts.run_file(trained[c], "adapter")) for c in trained}
    return {c: profile.inference_config(study=study, label=c, adapter=adapters[c], **locations) for c in trained}


def run_inference_experiment(profile: Profile, *, progress: bool = True, **locations: Any) -> dict[str, Path]:
    """Every inference setting for each condition's model, on the same examples."""
    configs = inference_configs(profile, **locations)
    check_adapters_present(configs)
    runs = {c: run_inference(cfg, progress=progress) for c, cfg in configs.items()}
    write_marker(profile, EXPERIMENTS["multiagent"], runs, locations.get("results_root"))
    return runs


def challenge_configs(profile: Profile, seeds: Sequence[int] | None = None,
                      **locations: Any) -> dict[int, dict[str, Any]]:
    """seed -> {condition -> ChallengeConfig}: per seed of the profile (or of `seeds`, a subset), the base model,
    then each trained condition with that seed's adapter per task (from that seed's runs of the task's training
    experiment, which must have finished).

    Every seed meets the same challenge items: a config's `seed` (which items, and which wrong answer each is
    challenged with) is the profile's train seed for every training seed, so the seeds' configs differ in their
    adapters only. Hence the first seed's configs are exactly those the experiment had before it ran several
    seeds (its committed runs are found and reused), the base model's config is one and the same for every seed
    (one run, named under each seed), and the pooled tests of `robustness_report` pair the same items in every
    seed."""
    tasks = profile.challenge_config().tasks
    trained = {seed: {t: condition_run_dirs(profile, training_experiment_for(t), **locations, seed=seed)
                      for t in tasks} for seed in (profile.seeds if seeds is None else seeds)}
    unfinished = {f"seed {seed}, {task}": [c for c, d in runs.items() if c != "base" and not artifacts.is_finished(d)]
                  for seed, by_task in trained.items() for task, runs in by_task.items()}
    if any(unfinished.values()):
        raise RuntimeError(f"the robustness experiment challenges, for each seed {list(trained)}, the models "
                           f"trained by that seed's runs of the training experiments of {list(tasks)}, but these "
                           f"conditions have not finished: { {k: c for k, c in unfinished.items() if c} }: run their "
                           "notebooks (or `make reproduce`) first")
    study = study_of(profile, EXPERIMENTS["robustness"])
    return {seed: {c: profile.challenge_config(study=study, label=c, **locations, adapters=() if c == "base" else
                                               tuple(str(artifacts.run_file(by_task[t][c], "adapter")) for t in tasks))
                   for c in profile.conditions} for seed, by_task in trained.items()}


def check_adapters_present(configs: dict[Any, Any]) -> None:
    """Before any model answers: every unfinished inference or challenge run's adapters exist (a committed
    training run has its records but not its adapter, which is not committed)."""
    missing = [a for cfg in configs.values() if not artifacts.is_finished(_run_dir(cfg))
               for a in _adapters(cfg) if not (Path(a) / "adapter_config.json").is_file()]
    if missing:
        notebooks = sorted({EXPERIMENTS[e].notebook for e in (Path(a).parent.parent.name for a in missing)
                            if e in EXPERIMENTS})
        raise ValueError(f"this experiment needs the trained adapters, and {len(missing)} are missing "
                         f"(adapters are not committed): {[Path(a).parent.name for a in missing]}; run "
                         f"{', '.join(f'notebooks/{n}' for n in notebooks) or 'their training notebook'} first "
                         "(after removing those run dirs, or with `make reproduce`), with the same results root: "
                         "on Colab keep RESULTS_ON_DRIVE ticked so the adapters outlive the runtime")


def _run_dir(cfg: Any) -> Path:
    return challenge_run_dir(cfg) if hasattr(cfg, "adapters") else inference_run_dir(cfg)


def _adapters(cfg: Any) -> tuple[str, ...]:
    return tuple(cfg.adapters) if hasattr(cfg, "adapters") else ((cfg.adapter,) if cfg.adapter else ())


def run_robustness_experiment(profile: Profile, *, progress: bool = True, **locations: Any) -> dict[str, Path]:
    """The scripted challenge for each seed's and condition's models, on the same challenge sets (the base model's
    run is done once and reused for every seed). Returns the first seed's runs."""
    configs = challenge_configs(profile, **locations)
    check_adapters_present({(seed, c): cfg for seed, by_condition in configs.items()
                            for c, cfg in by_condition.items()})
    runs = {seed: {c: run_challenge(cfg, progress=progress) for c, cfg in by_condition.items()}
            for seed, by_condition in configs.items()}
    write_marker(profile, EXPERIMENTS["robustness"], runs, locations.get("results_root"))
    return runs[profile.seeds[0]]


def run_experiment(profile: Profile, name: str, *, progress: bool = True, **locations: Any) -> dict[str, Path]:
    experiment = get_experiment(name)
    if experiment.is_training:
        return run_training_experiment(profile, experiment, progress=progress, **locations)
    if experiment.kind == "robustness":
        return run_robustness_experiment(profile, progress=progress, **locations)
    return run_inference_experiment(profile, progress=progress, **locations)


def write_marker(profile: Profile, experiment: Experiment, runs: dict[Any, Any], results_root: Any) -> Path:
    """experiment.json, written when every condition has finished: the run dir of each condition, per seed.

    `runs` is condition -> run dir (one seed: the profile's first) or seed -> {condition -> run dir}.
    `conditions` names the first seed's runs (what readers written before seeds existed read), `seeds` every
    seed's."""
    folder = experiment_dir(profile.name, experiment.name, results_root)
    by_seed = runs if all(isinstance(k, int) for k in runs) else {profile.seeds[0]: runs}
    names = {str(seed): {c: r[c].name for c in profile.conditions} for seed, r in by_seed.items()}
    marker = {"experiment": experiment.name, "title": experiment.title, "profile": profile.name,
              "task": experiment.task or marker_task(profile, experiment), "kind": experiment.kind,
              "conditions": next(iter(names.values())), "seeds": names}
    artifacts.write_json(folder / MARKER, marker)
    return folder / MARKER


def marker_task(profile: Profile, experiment: Experiment) -> str:
    """The task(s) an experiment without its own task ran on: the inference task, or the challenged tasks."""
    return "+".join(profile.challenge_config().tasks) if experiment.kind == "robustness" else profile.inference_task


def marker_run_dirs(marker: dict[str, Any], folder: Path) -> dict[str, Path]:
    """condition -> run dir, in the canonical condition order, for the conditions the marker names (a marker
    written before a condition was added lacks it)."""
    return {c: folder / marker["conditions"][c] for c in ALL_CONDITIONS if c in marker["conditions"]}


def marker_seed_run_dirs(marker: dict[str, Any], folder: Path) -> dict[int, dict[str, Path]]:
    """seed -> {condition -> run dir}. A marker written before seeds existed names one seed's runs: its seed is
    read from those runs' config.json."""
    if "seeds" not in marker:
        runs = marker_run_dirs(marker, folder)
        seeds = {artifacts.read_json(artifacts.run_file(d, "config"))["config"]["seed"] for d in runs.values()}
        if len(seeds) != 1:
            raise ValueError(f"{folder / MARKER}: its runs have different seeds {sorted(seeds)}; a marker without "
                             "'seeds' must name one seed's runs")
        return {seeds.pop(): runs}
    return {int(seed): marker_run_dirs({"conditions": names}, folder) for seed, names in marker["seeds"].items()}


def seed_run_dirs(profile: Profile, experiment: Experiment, **locations: Any) -> dict[int, dict[str, Path]]:
    """seed -> {condition -> run dir} that a training experiment of this profile implies now."""
    return {seed: condition_run_dirs(profile, experiment, **locations, seed=seed) for seed in profile.seeds}


