"""Batched generation: chat templates, left padding, KV cache, length-sorted batches, a progress bar."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Sequence

from .progress import progress_bar


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int = 256
    do_sample: bool = False  # greedy by default
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()  # output is cut at the first stop string
    seed: int = 0


def set_seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def render_chat(tokenizer: Any, conversations: Sequence[list[dict[str, str]]]) -> list[str]:
    """Each conversation rendered by the model's chat template, ready for the assistant's turn."""
    return [tokenizer.apply_chat_template(list(c), tokenize=False, add_generation_prompt=True)
            for c in conversations]


def stop_token_ids(tokenizer: Any) -> list[int]:
    ids = {tokenizer.eos_token_id}
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        ids.add(im_end)
    return sorted(i for i in ids if i is not None)


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    cuts = [text.find(s) for s in stop if s and s in text]
    return text[: min(cuts)] if cuts else text


def generate(model: Any, tokenizer: Any, prompts: Sequence[str], decoding: Decoding = Decoding(), *,
             batch_size: int = 8, progress: bool = True, desc: str = "generate") -> list[str]:
    """Completions for rendered prompts, in input order. Prompts are batched longest-first to
    waste little padding; each batch is one `model.generate` call with the KV cache."""
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    outputs: list[str] = [""] * len(prompts)
    batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in progress_bar(batches, desc=desc, disable=not progress or not batches, unit="batch"):
        texts = generate_batch(model, tokenizer, [prompts[i] for i in batch], decoding)
        for index, text in zip(batch, texts):
            outputs[index] = text
    return outputs


def generate_batch(model: Any, tokenizer: Any, prompts: Sequence[str], decoding: Decoding) -> list[str]:
    import torch

    tokenizer.padding_side = "left"
    encoded = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
    encoded = {k: v.to(model.device) for k, v in encoded.items()}
    sampling = {"temperature": decoding.temperature, "top_p": decoding.top_p} if decoding.do_sample else {}
    cuda = [model.device.index or 0] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), torch.inference_mode():  # sampling never moves the global RNG
        if decoding.do_sample:
            torch.manual_seed(decoding.seed)
        generated = model.generate(
            **encoded, max_new_tokens=decoding.max_new_tokens, do_sample=decoding.do_sample,
            use_cache=True, eos_token_id=stop_token_ids(tokenizer), pad_token_id=tokenizer.pad_token_id,
            **sampling,
        )
    new_tokens = generated[:, encoded["input_ids"].shape[1]:]
    texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return [cut_at_stop(t, decoding.stop).strip() for t in texts]
