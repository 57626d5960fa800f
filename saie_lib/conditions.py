"""The study's vocabulary, listed once.

- A **stance** is what the frozen partner is asked to take in one remark: supportive or adversarial.
- A **remark policy** (TrainConfig field `remark_policy`) decides which stances a learner meets in training:
  `none` (conventional fine-tuning, no remarks), `placebo` (the same discussion-shaped steps, but the partner
  turn is a fixed neutral request to reconsider: no stance, no partner call), `supportive`, `adversarial`,
  `saie` (both, half and half per batch).
- An **update target** (TrainConfig field `update_target`) is what a discussion step trains on: `gold`,
  `self_revision_if_correct`, or `mixed` (gold, plus the plain question -> gold pair in the same step).
- A **condition** is one of the models every experiment compares: `base` (the untrained model), each remark
  policy with the gold target, and `saie_mixed` (SAIE with the mixed target, so the question-only behaviour is
  trained as in conventional fine-tuning). Tables, markers, figures and the inference experiment's `label`
  use these names.
- The **scripted family** (`supportive_scripted`, `adversarial_scripted`, `saie_scripted`) is each stance
  policy with the scripted partner (`partner: scripted`, `partners.scripted`), whose remarks hold their stance
  by construction. A profile runs them only when its `conditions` list names them (they are not in the default
  `CONDITIONS`).
- An **inference setting** is one way a model answers at inference time (alone, in discussion, ...).
"""

from __future__ import annotations

from typing import Any

STANCES = ("supportive", "adversarial")
PLACEBO = "placebo"  # the partner turn of the placebo control: no stance
# conventional fine-tuning first, then the format control, then the stances; SAIE last
REMARK_POLICIES = ("none", PLACEBO, "supportive", "adversarial", "saie")
NO_PARTNER_POLICIES = ("none", PLACEBO)  # remark policies that never ask the partner
# A trained condition that is not a remark policy with the gold target -> the config fields that make it
SCRIPTED = "scripted"  # the partner whose stance holds by construction
SCRIPTED_SUFFIX = "_scripted"
SCRIPTED_CONDITIONS = tuple(f"{p}{SCRIPTED_SUFFIX}" for p in (*STANCES, "saie"))
CONDITION_FIELDS: dict[str, dict[str, Any]] = {
    "saie_mixed": {"remark_policy": "saie", "update_target": "mixed"},
    **{f"{p}{SCRIPTED_SUFFIX}": {"remark_policy": p, "partner": SCRIPTED} for p in (*STANCES, "saie")}}
TRAINED_CONDITIONS = (*REMARK_POLICIES, "saie_mixed")
CONDITIONS = ("base", *TRAINED_CONDITIONS)  # a profile's default: what every experiment compares
ALL_CONDITIONS = (*CONDITIONS, *SCRIPTED_CONDITIONS)  # what a profile may name, in the canonical order
INFERENCE_SETTINGS = ("individual", "self_discussion", "multi_agent", "self_consistency", "partner_discussion")
TARGET_SUFFIXES = {"gold": "", "mixed": "_mixed", "self_revision_if_correct": "_selfrev"}


def condition_fields(condition: str) -> dict[str, Any]:
    """The TrainConfig fields that make a trained condition (its remark policy, a target other than gold, the
    scripted partner)."""
    known = (*TRAINED_CONDITIONS, *SCRIPTED_CONDITIONS)
    if condition not in known:
        raise ValueError(f"unknown trained condition {condition!r}; known: {', '.join(known)}")
    return CONDITION_FIELDS.get(condition, {"remark_policy": condition})


def condition_name(remark_policy: str, update_target: str = "gold", partner: str | None = None) -> str:
    """The condition a training config trains: its remark policy, with a suffix for a target other than gold
    (`saie` + `mixed` -> `saie_mixed`) and for the scripted partner (`saie_scripted`). Gold-target runs with a
    model partner keep the policy's name (and their run dir names)."""
    scripted = SCRIPTED_SUFFIX if partner == SCRIPTED and remark_policy not in NO_PARTNER_POLICIES else ""
    return f"{remark_policy}{TARGET_SUFFIXES[update_target]}{scripted}"
