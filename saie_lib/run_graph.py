"""The study as a graph of runs: every run a profile implies, what it reads, and how to run one of them alone.

Derived from the functions the notebooks call (`saie_lib.experiments`), so there is no second list of runs:

    training experiment, per seed: base (the untrained model's evaluation) and every trained condition; the
        runs that ask a local partner (the learner's base or a local model) one after another, in serial order
    inference experiment, per condition: reads the first seed's trained conditions of its task
    robustness experiment, per condition: reads the first seed's trained conditions of each challenged task

`run_node` runs one of them through the same entry points as a serial run (`train`, `run_evaluation`,
`run_inference`, `run_challenge`), so a finished run is reused and an interrupted one resumes from its last
checkpoint. An executor (`saie_lib.ray_executor`) runs the nodes in dependency order, then
`write_finished_markers` writes experiment.json for every experiment whose runs all finished: the notebooks then
find every run finished and only read, render and plot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from . import artifacts
from .checkpoints import latest_checkpoint
from .experiment_registry import EXPERIMENTS, get_experiment, training_experiment_for
from .profiles import Profile, load_profile

BASE = "base"


@dataclass(frozen=True)
class RunNode:
    """One run of the study. `run_dir` is known up front for training-experiment runs; an inference or
    robustness run's dir depends on its adapters' paths and is known once its `needs` have finished."""

    experiment: str
    condition: str
    seed: int | None  # training and robustness runs: the seed; inference: None (the first seed's models)
    needs: tuple[str, ...] = ()  # labels of the runs whose adapters it reads
    after: tuple[str, ...] = ()  # labels of the runs it starts after, finished or not (see asks_local_partner)
    run_dir: Path | None = None
    gpu: bool = False  # the run's device is CUDA: one GPU

    @property
    def label(self) -> str:
        seed = "" if self.seed is None else f"seed{self.seed}/"
        return f"{self.experiment}/{seed}{self.condition}"


def study_graph(profile: Profile, experiments: Sequence[str] | None = None, **locations: Any) -> list[RunNode]:
    """Every run of `experiments` (default: the profile's, else all) in dependency order. A needed run that is
    outside the graph (its experiment not selected) is not listed in `needs`: it must have finished already,
    which the run itself checks (`inference_configs`, `challenge_configs`)."""
    from .experiments import condition_configs

    names = [get_experiment(n).name for n in (experiments or profile.experiments or EXPERIMENTS)]
    nodes: list[RunNode] = []
    for name in (n for n in names if EXPERIMENTS[n].is_training):
        previous_asker: tuple[str, ...] = ()  # the last run of this experiment that asked the local partner
        for seed in profile.seeds:
            configs = condition_configs(profile, EXPERIMENTS[name], **locations, seed=seed)
            for c, cfg in configs.items():
                asks = c != BASE and asks_local_partner(cfg)
                nodes.append(RunNode(name, c, seed, after=previous_asker if asks else (),
                                     run_dir=_training_run_dir(c, cfg), gpu=uses_gpu(cfg.device)))
                previous_asker = (nodes[-1].label,) if asks else previous_asker
    present = {node.label for node in nodes}
    for name in (n for n in names if not EXPERIMENTS[n].is_training):
        if name == "robustness":
            nodes += _robustness_nodes(profile, present)
            continue
        needs = tuple(label for label in _needed_labels(profile, name, profile.seeds[0]) if label in present)
        gpu = uses_gpu(profile.inference_config().device)
        nodes += [RunNode(name, c, None, needs=needs, gpu=gpu) for c in profile.conditions]
    return nodes


def _robustness_nodes(profile: Profile, present: set[str]) -> list[RunNode]:
    """One challenge run per seed and condition, needing that seed's trained runs; the base model's config is the
    same for every seed (`experiments.challenge_configs`), so it is one run, under the first seed."""
    gpu = uses_gpu(profile.challenge_config().device)
    nodes = []
    for seed in profile.seeds:
        needs = tuple(label for label in _needed_labels(profile, "robustness", seed) if label in present)
        conditions = [c for c in profile.conditions if c != BASE or seed == profile.seeds[0]]
        nodes += [RunNode("robustness", c, seed, needs=needs, gpu=gpu) for c in conditions]
    return nodes


def asks_local_partner(cfg: Any) -> bool:
    """Whether a training run asks a partner model that runs in its own process (`self` or a local model) for
    remarks. Such runs share the remark cache, and what a sampled remark says depends on which other prompts
    missed the cache in the same batch: so they run one after another, in the serial loop's order (seed, then
    condition), and their records equal a serial run's. API, vLLM and scripted partners and the conditions
    without remarks run in parallel."""
    from .conditions import NO_PARTNER_POLICIES

    served = cfg.partner == "scripted" or cfg.partner.startswith(("api:", "vllm:"))
    return cfg.remark_policy not in NO_PARTNER_POLICIES and not served


def uses_gpu(device: str) -> bool:
    """A run on `cuda` (or `cuda:<n>`) asks the executor for one GPU; `auto` does where the cluster has one."""
    return device.startswith("cuda") or (device == "auto" and _cuda_cluster())


def _cuda_cluster() -> bool:
    """Whether an `auto` device means a GPU: where this process runs under a Ray cluster, whether it has
    GPUs; otherwise whether this machine has CUDA."""
    try:
        import ray

        if ray.is_initialized():
            return ray.cluster_resources().get("GPU", 0) > 0
    except ImportError:
        pass
    import torch

    return torch.cuda.is_available()


def _training_run_dir(condition: str, cfg: Any) -> Path:
    from .stages.evaluate import eval_run_dir
    from .stages.train import training_run_dir

    return eval_run_dir(cfg) if condition == BASE else training_run_dir(cfg)


def _needed_labels(profile: Profile, experiment: str, seed: int) -> list[str]:
    """The trained runs of `seed` that an inference or robustness experiment reads, for its task(s)."""
    tasks = profile.challenge_config().tasks if experiment == "robustness" else (profile.inference_task,)
    return [RunNode(training_experiment_for(t).name, c, seed).label for t in tasks
            for c in profile.trained_conditions]


def run_node(node: RunNode, profile_path: str | Path, *, progress: bool = True,
             **locations: Any) -> tuple[Path, bool]:
    """Run one node in this process, as the experiment's serial loop would; returns its run dir and whether
    that had finished before (then it was reused as it is)."""
    from .experiments import challenge_configs, check_adapters_present, condition_configs, inference_configs
    from .learner import prepare_backend
    from .stages.challenge import challenge_run_dir, run_challenge
    from .stages.discuss import inference_run_dir, run_inference
    from .stages.evaluate import run_evaluation
    from .stages.train import train

    profile = load_profile(profile_path)
    experiment = get_experiment(node.experiment)
    if experiment.is_training:
        configs = condition_configs(profile, experiment, **locations, seed=node.seed)
        reused = artifacts.is_finished(_training_run_dir(node.condition, configs[node.condition]))
        prepare_backend(configs["saie"].backend, configs["saie"].device)  # as run_training_experiment does
        run = run_evaluation if node.condition == BASE else train
        return run(configs[node.condition], progress=progress), reused
    robustness = experiment.kind == "robustness"
    if robustness:
        cfg = challenge_configs(profile, [node.seed], **locations)[node.seed][node.condition]
    else:
        cfg = inference_configs(profile, **locations)[node.condition]
    reused = artifacts.is_finished(challenge_run_dir(cfg) if robustness else inference_run_dir(cfg))
    check_adapters_present({node.condition: cfg})
    return (run_challenge if robustness else run_inference)(cfg, progress=progress), reused


def resume_point(node: RunNode) -> str | None:
    """What an unfinished training run will resume from (its last checkpoint), for the run's log."""
    if node.run_dir is None or artifacts.is_finished(node.run_dir):
        return None
    checkpoint = latest_checkpoint(node.run_dir)
    return checkpoint.name if checkpoint else None


def finished_experiments_of(nodes: Sequence[RunNode], failed: set[str]) -> list[str]:
    """The experiments none of whose runs failed or were skipped, in graph order."""
    names = list(dict.fromkeys(node.experiment for node in nodes))
    return [name for name in names if not any(n.label in failed for n in nodes if n.experiment == name)]


def write_finished_markers(profile: Profile, experiments: Sequence[str], **locations: Any) -> list[Path]:
    """experiment.json for each experiment whose runs the profile implies have all finished, with the run
    dirs the notebooks and `reproduce.experiment_finished` read (the notebook rewrites the same file)."""
    from .experiments import challenge_configs, inference_configs, seed_run_dirs, write_marker
    from .stages.challenge import challenge_run_dir
    from .stages.discuss import inference_run_dir

    written = []
    for name in experiments:
        experiment = get_experiment(name)
        if experiment.is_training:
            runs: dict[Any, Any] = seed_run_dirs(profile, experiment, **locations)
            dirs = [d for by_condition in runs.values() for d in by_condition.values()]
        elif experiment.kind == "robustness":
            runs = {seed: {c: challenge_run_dir(cfg) for c, cfg in by_condition.items()}
                    for seed, by_condition in challenge_configs(profile, **locations).items()}
            dirs = [d for by_condition in runs.values() for d in by_condition.values()]
        else:
            runs = {c: inference_run_dir(cfg) for c, cfg in inference_configs(profile, **locations).items()}
            dirs = list(runs.values())
        if all(artifacts.is_finished(d) for d in dirs):
            written.append(write_marker(profile, experiment, runs, locations.get("results_root")))
    return written


def log_name(node: RunNode) -> str:
    """The node's log file name: its label with `/` as `-`."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", node.label) + ".log"
