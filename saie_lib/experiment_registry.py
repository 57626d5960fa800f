"""The registry of the paper's experiments: name -> task, notebook and kind. Data only, so that profiles can
validate the experiments they list without importing what runs them (`saie_lib.experiments`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    notebook: str  # notebooks/<notebook>
    task: str | None  # training experiments: their task; inference: None (the profile's inference task)

    @property
    def is_training(self) -> bool:
        return self.task is not None

    @property
    def kind(self) -> str:
        """training, inference or robustness: what experiment.json says, and how the summary reads it."""
        return "training" if self.is_training else "robustness" if self.name == "robustness" else "inference"


EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment("math", "Math word problems (GSM8K)", "10_math_gsm8k.ipynb", "gsm8k"),
    Experiment("commonsense", "Commonsense reasoning (CommonsenseQA)", "11_commonsense_csqa.ipynb", "commonsense_qa"),
    Experiment("multidomain", "Multi-domain knowledge (MMLU)", "12_multidomain_mmlu.ipynb", "mmlu"),
    Experiment("multiagent", "Discussion at inference time", "20_multiagent_inference.ipynb", None),
    Experiment("robustness", "Robustness to remarks", "13_robustness.ipynb", None),
)}


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known experiments: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def training_experiment_for(task: str) -> Experiment:
    return next(e for e in EXPERIMENTS.values() if e.task == task)
