"""Encoder-decoder learners (Flan-T5, the paper's learner): what differs from decoder-only models, in one place.

- Family: a model is seq2seq when its config says `is_encoder_decoder`; `models.load_model` then loads it with
  AutoModelForSeq2SeqLM. Flan-T5's tokenizer has no chat template: its prompts are the plain rendering of
  saie_lib.prompts, and a plain prompt is encoded with the tokenizer's own special tokens (T5 closes the
  encoder input with </s>, as in its pre-training and instruction tuning).
- Precision: never float16 (T5's feed-forward activations overflow it: inf, then NaN losses). `auto` is
  bfloat16 on a CUDA GPU that supports it (same exponent range as float32), else float32 (CPU, and GPUs
  without bfloat16 such as the T4).
- LoRA: peft with task type SEQ_2_SEQ_LM on T5's attention (q, k, v, o) and feed-forward projections (wi_0,
  wi_1, wo in T5 v1.1 / Flan-T5, which are gated-GELU; wi, wo in T5 v1.0). Unsloth patches decoder-only
  models only, so the seq2seq path is always plain peft.
- Loss: training rows are family-agnostic (saie_lib.training: prompt tokens, then target tokens, labels -100
  on the prompt). Here the prompt part is the encoder's input and the target part the decoder's labels; the
  decoder's input is the labels shifted right behind decoder_start_token_id. No prompt token is a label.
- Padding: the encoder input is left-padded, like every prompt (saie_lib.generation). Padding is masked out,
  and T5's relative position bias depends only on the distance between two real tokens, so the side does not
  change the result. The decoder side is right-padded (it is causal). Generation starts the decoder from
  decoder_start_token_id and returns what follows it.
"""

from __future__ import annotations

from typing import Any, Sequence

from .training import IGNORE_INDEX, collate

SEQ2SEQ_LORA_MODULES = ("q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo")


def is_encoder_decoder(model_or_config: Any) -> bool:
    config = getattr(model_or_config, "config", model_or_config)
    return bool(getattr(config, "is_encoder_decoder", False))


def is_seq2seq_checkpoint(path: str, *, trust_remote_code: bool = False) -> bool:
    """Whether the model at `path` (a local dir or Hub id from_pretrained accepts) is an encoder-decoder."""
    from transformers import AutoConfig

    return is_encoder_decoder(AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code))


def seq2seq_dtype(dtype: str, device: str):
    """The torch dtype for a T5-family model: float16 refused, auto = bfloat16 where supported, else float32."""
    import torch

    if dtype == "float16":
        raise ValueError("config field 'dtype' = 'float16': T5-family models overflow in float16 (inf, then NaN "
                         "losses); use 'bfloat16' (GPUs from Ampere on), 'float32' or 'auto'")
    if dtype != "auto":
        return getattr(torch, dtype)
    return torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32


def seq2seq_precision(requested: str, resolved: str) -> str:
    """The training step's precision for a T5-family model: fp16 refused; where `auto` chose fp16 (a GPU
    without bfloat16), fp32."""
    if requested == "fp16":
        raise ValueError("precision 'fp16' for a T5-family model: T5 overflows in float16 (inf, then NaN losses); "
                         "use 'bf16' (GPUs from Ampere on), 'fp32' or 'auto'")
    return "fp32" if resolved == "fp16" else resolved


def lora_arguments(model: Any, causal_targets: Sequence[str]) -> dict[str, Any]:
    """peft LoraConfig task type and target modules for the model's family."""
    if not is_encoder_decoder(model):
        return {"task_type": "CAUSAL_LM", "target_modules": list(causal_targets)}
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [m for m in SEQ2SEQ_LORA_MODULES if m in present]
    if not targets:
        raise ValueError(f"this encoder-decoder model has none of T5's projection modules {SEQ2SEQ_LORA_MODULES}; "
                         "the seq2seq learner supports the T5 family (T5, T5 v1.1, Flan-T5)")
    return {"task_type": "SEQ_2_SEQ_LM", "target_modules": targets}


def split_rows(features: Sequence[dict]) -> tuple[list[list[int]], list[list[int]]]:
    """(encoder input ids, decoder labels) per training row: its prompt part and its target part. A row
    without target tokens keeps one ignored label, so it adds nothing to the loss."""
    sources, targets = [], []
    for f in features:
        labels = f["labels"]
        cut = f.get("prompt_length")
        if cut is None:
            cut = next((i for i, label in enumerate(labels) if label != IGNORE_INDEX), len(labels))
        sources.append(list(f["input_ids"][:cut]))
        targets.append(list(labels[cut:]) or [IGNORE_INDEX])
    return sources, targets


def shift_right(labels: Any, start_id: int, pad_id: int) -> Any:
    """The decoder's input: decoder_start, then every label but the last; ignored positions become padding."""
    shifted = labels.new_full(labels.shape, pad_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = start_id
    return shifted.masked_fill(shifted == IGNORE_INDEX, pad_id)


def decoder_start_id(model: Any) -> int:
    start = getattr(model.config, "decoder_start_token_id", None)
    if start is None:
        start = model.generation_config.decoder_start_token_id
    if start is None:
        raise ValueError("the encoder-decoder model sets no decoder_start_token_id (T5: the pad token's id)")
    return start


def seq2seq_batch(features: Sequence[dict], pad_id: int, start_id: int) -> tuple[dict[str, Any], Any]:
    """Model inputs (encoder ids and mask left-padded, decoder input ids) and the right-padded labels."""
    import torch

    sources, targets = split_rows(features)
    encoder = collate([{"input_ids": s, "labels": [IGNORE_INDEX] * len(s)} for s in sources], pad_id, side="left")
    width = max(len(t) for t in targets)
    labels = torch.tensor([t + [IGNORE_INDEX] * (width - len(t)) for t in targets])
    inputs = {"input_ids": encoder["input_ids"], "attention_mask": encoder["attention_mask"],
              "decoder_input_ids": shift_right(labels, start_id, pad_id)}
    return inputs, labels


def seq2seq_target_loss(model: Any, features: Sequence[dict], pad_id: int, device: Any):
    """Mean cross-entropy over the target tokens (the decoder's labels), computed in float32."""
    import torch

    inputs, labels = seq2seq_batch(features, pad_id, decoder_start_id(model))
    logits = model(**{k: v.to(device) for k, v in inputs.items()}).logits.float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.to(device).reshape(-1),
                                             ignore_index=IGNORE_INDEX)
