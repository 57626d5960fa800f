"""The study's vocabulary, listed once.

- A **stance** is what the frozen partner is asked to take in one remark: supportive or adversarial.
- A **remark policy** (TrainConfig field `remark_policy`) decides which stances a learner meets in training;
  each remark policy is one trained **condition**: `none` (conventional fine-tuning, no remarks), `supportive`,
  `adversarial`, `saie` (both, half and half per batch).
- A **condition** is one of the five models every experiment compares: `base` (the untrained model) and the
  four remark policies. Tables, markers, figures and the inference experiment's `label` use these names.
- An **inference setting** is one way a model answers at inference time (alone, in discussion, ...).
"""

from __future__ import annotations

STANCES = ("supportive", "adversarial")
REMARK_POLICIES = ("none", "supportive", "adversarial", "saie")  # conventional fine-tuning first, SAIE last
CONDITIONS = ("base", *REMARK_POLICIES)
INFERENCE_SETTINGS = ("individual", "self_discussion", "multi_agent", "self_consistency", "partner_discussion")
