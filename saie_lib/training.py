"""SAIE training: warm-up SFT on part of the train split, then online discussion rounds with a frozen partner.

For each discussion batch and round: the learner answers (batched), a stance is drawn by the remark policy,
the partner remarks (batched, cached), and the learner takes one step on the target conditioned on the
discussion. `remark_policy="none"` takes the same number of steps on the same examples without a discussion:
conventional fine-tuning with an equal budget.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

from .parsing import grade
from .prompts import build_messages, format_target, has_chat_template, render_plain
from .tasks import Example

IGNORE_INDEX = -100


def split_warmup(examples: Sequence[Example], fraction: float, seed: int) -> tuple[list, list]:
    """A seeded shuffle, then the first `fraction` for warm-up and the rest for discussion."""
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    cut = round(fraction * len(shuffled))
    return shuffled[:cut], shuffled[cut:]


def batched(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i: i + size]) for i in range(0, len(items), size)]


def supervised_features(tokenizer: Any, conversation: list[dict], target: str, max_seq_len: int) -> dict:
    """input_ids for conversation + assistant target; labels are -100 everywhere except the target's tokens
    (and the chat template's end-of-turn marker, or the eos token, after it). Too long: the target keeps up to
    half the budget, and the prompt loses tokens from the middle of the discussion: its opening (system and
    question) and its latest turns stay. Flags say when either was cut. The same row serves both model
    families: an encoder-decoder model reads its first `prompt_length` tokens as the encoder input and is
    trained on the rest (saie_lib.seq2seq)."""
    prompt, answer = _prompt_and_answer(tokenizer, conversation, target)
    # a chat template writes its own special tokens; a plain prompt gets the tokenizer's (T5: a closing </s>)
    prompt_ids = tokenizer(prompt, add_special_tokens=not has_chat_template(tokenizer))["input_ids"]
    answer_ids = tokenizer(answer.rstrip("\n"), add_special_tokens=False)["input_ids"]
    target_truncated = len(answer_ids) > max_seq_len // 2
    answer_ids = answer_ids[: max_seq_len // 2]
    budget = max_seq_len - len(answer_ids)
    prompt_truncated = len(prompt_ids) > budget
    if prompt_truncated:
        head = min(_opening_length(tokenizer, conversation, prompt), budget // 2)
        prompt_ids = prompt_ids[:head] + prompt_ids[len(prompt_ids) - (budget - head):]
    return {"input_ids": prompt_ids + answer_ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids,
            "prompt_truncated": prompt_truncated, "target_truncated": target_truncated,
            "prompt_length": len(prompt_ids)}


def _prompt_and_answer(tokenizer: Any, conversation: list[dict], target: str) -> tuple[str, str]:
    """The rendered prompt, and the text after it that the model learns: the chat template's assistant turn,
    or (no template: the plain rendering) the target and the eos token."""
    eos = tokenizer.eos_token or ""
    if not has_chat_template(tokenizer):
        return render_plain(conversation), target + eos
    prompt = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(conversation + [{"role": "assistant", "content": target}],
                                         tokenize=False)
    return prompt, full[len(prompt):] if full.startswith(prompt) else target + eos


def _opening_length(tokenizer: Any, conversation: list[dict], prompt: str) -> int:
    """Tokens of the rendered first turn (system header and question), when it is a prefix of the prompt."""
    opening = (tokenizer.apply_chat_template(conversation[:1], tokenize=False) if has_chat_template(tokenizer)
               else render_plain(conversation[:1], add_generation_prompt=False))
    if not prompt.startswith(opening):
        return 0
    return len(tokenizer(opening, add_special_tokens=False)["input_ids"])


def collate(features: Sequence[dict], pad_id: int, *, side: str = "right"):
    """Padded tensors; padding is masked out of attention and loss. Left padding puts every target at the
    end of its row, so only the last positions need logits (see `target_loss`)."""
    import torch

    width = max(len(f["input_ids"]) for f in features)

    def pad(values, fill):
        return [([fill] * (width - len(v)) + v) if side == "left" else (v + [fill] * (width - len(v)))
                for v in values]

    mask = torch.tensor(pad([[1] * len(f["input_ids"]) for f in features], 0))
    return {
        "input_ids": torch.tensor(pad([f["input_ids"] for f in features], pad_id)),
        "attention_mask": mask,
        "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
        "labels": torch.tensor(pad([f["labels"] for f in features], IGNORE_INDEX)),
    }


def target_loss(model: Any, features: Sequence[dict], pad_id: int, device: Any):
    """Mean cross-entropy over the target tokens, computing logits only for the last positions of a
    left-padded batch (the vocabulary-sized logits of every prompt token are never materialised)."""
    import torch

    batch = {k: v.to(device) for k, v in collate(features, pad_id, side="left").items()}
    labels = batch.pop("labels")
    keep = max(_target_span(f["labels"]) for f in features) + 1
    logits = model(**batch, logits_to_keep=keep).logits[:, :-1].float()
    shifted = labels[:, labels.shape[1] - keep + 1:]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), shifted.reshape(-1),
                                             ignore_index=IGNORE_INDEX)


def _target_span(labels: Sequence[int]) -> int:
    """Positions from the first target token to the end of the row (0 when there is no target)."""
    first = next((i for i, label in enumerate(labels) if label != IGNORE_INDEX), len(labels))
    return len(labels) - first


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradient norm of a step is NaN or infinite: the step is not taken."""


def optimizer_step(learner: Any, optimizer: Any, features: Sequence[dict], max_grad_norm: float,
                   micro_batch_tokens: int | None = None) -> dict:
    """One step of cross-entropy on the target tokens, in the learner's precision (fp32, bf16 autocast, or fp16
    autocast with loss scaling); returns loss, token count, truncation counts and whether fp16 skipped the step.
    `micro_batch_tokens`: the rows go through in length-sorted micro-batches (`micro_batches`), each loss weighted
    by its share of the target tokens and its gradient accumulated: the same token-weighted mean as one batch."""
    import torch

    n_target = sum(_target_tokens(f) for f in features)
    cut = {"prompts_truncated": sum(f.get("prompt_truncated", False) for f in features),
           "targets_truncated": sum(f.get("target_truncated", False) for f in features)}
    if n_target == 0:
        return {"loss": None, "target_tokens": 0, **cut}
    learner.for_training()
    precision, total = learner.precision, 0.0
    for group in micro_batches(features, micro_batch_tokens):
        share = sum(_target_tokens(f) for f in group) / n_target
        if share == 0:
            continue
        with precision.autocast():
            loss = learner.target_loss(group) * share
        if not torch.isfinite(loss):
            optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(f"loss is {float(loss.detach() / share)}")
        precision.backward(loss)
        total += float(loss.detach())
    precision.unscale(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(learner.trainable_parameters(), max_grad_norm)
    finite = bool(torch.isfinite(grad_norm))
    if not finite and precision.scaler is None:
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(f"gradient norm is {float(grad_norm)} (loss {total:.4f})")
    took = precision.step(optimizer, finite)
    optimizer.zero_grad(set_to_none=True)
    return {"loss": total, "target_tokens": n_target, **cut, **({} if took else {"skipped": True})}


def micro_batches(features: Sequence[dict], token_budget: int | None) -> list[list[dict]]:
    """The rows of a step in one batch (`token_budget` None), or sorted longest first and cut into micro-batches
    whose padded size (rows x longest row) stays within `token_budget`, one row at least: rows of like length
    share a batch, so little is padding (a mixed-target step pairs discussions with short plain questions), and
    the peak memory is the largest micro-batch's."""
    if not token_budget:
        return [list(features)]
    groups: list[list[dict]] = []
    for row in sorted(features, key=lambda f: -len(f["input_ids"])):
        if not groups or (len(groups[-1]) + 1) * len(groups[-1][0]["input_ids"]) > token_budget:
            groups.append([])
        groups[-1].append(row)
    return groups


def _target_tokens(feature: dict) -> int:
    return sum(label != IGNORE_INDEX for label in feature["labels"])


def plain_features(tokenizer: Any, examples: Sequence[Example], max_seq_len: int) -> list[dict]:
    """Question -> gold rationale + answer (warm-up and conventional fine-tuning)."""
    return [supervised_features(tokenizer, build_messages(e), format_target(e), max_seq_len) for e in examples]


def discussion_targets(examples: Sequence[Example], revisions: Sequence[str] | None, update_target: str) -> list:
    """gold and mixed: rationale + answer. self_revision_if_correct: the learner's revision where it is correct
    (by the flexible parse), else the gold rationale + answer, so every example adds loss to every step."""
    if update_target in ("gold", "mixed"):
        return [format_target(e) for e in examples]
    if update_target != "self_revision_if_correct":
        raise ValueError(f"unknown update_target {update_target!r}")
    if revisions is None or len(revisions) != len(examples):
        raise ValueError("update_target self_revision_if_correct needs one revision per example")
    kept = []
    for example, revision in zip(examples, revisions):
        _, correct = grade(example.task, revision, example.answer, choices=example.choices)
        kept.append(revision.strip() if correct else format_target(example))
    return kept


def discussion_features(tokenizer: Any, examples: Sequence[Example], conversations: Sequence[list[dict]],
                        targets: Sequence[str], update_target: str, max_seq_len: int) -> list[dict]:
    """One training row per example: its discussion so far -> its target. The mixed target adds each example's
    plain question -> gold row to the same step, so the question-only behaviour that conventional fine-tuning
    trains is trained in a discussion condition too."""
    features = [supervised_features(tokenizer, c, t, max_seq_len) for c, t in zip(conversations, targets)]
    if update_target == "mixed":
        features += plain_features(tokenizer, examples, max_seq_len)
    return features
