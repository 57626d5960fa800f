"""Batched generation: chat templates, left padding, KV cache, length-sorted batches, a progress bar."""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from typing import Any, Sequence

from .greedy_decoding import decode_greedy, left_padded
from .progress import progress_bar
from .prompts import has_chat_template, render_plain


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int = 256
    do_sample: bool = False  # greedy by default
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()  # output is cut at the first stop string
    seed: int = 0


def generation_settings(decoding: Decoding) -> dict[str, Any]:
    """Every setting that shapes decoding, stated explicitly: a model's own generation_config (top_k,
    repetition_penalty, do_sample, ...) fills only what is left unset, so "greedy" stays greedy. Recorded in
    the metrics of every run."""
    settings: dict[str, Any] = {"max_new_tokens": decoding.max_new_tokens, "do_sample": decoding.do_sample,
                                "num_beams": 1, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
                                "use_cache": True}
    if decoding.do_sample:
        settings.update(temperature=decoding.temperature, top_p=decoding.top_p, top_k=0, min_p=0.0,
                        typical_p=1.0)
    return settings


def set_seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def render_chat(tokenizer: Any, conversations: Sequence[list[dict[str, str]]]) -> list[str]:
    """Each conversation rendered by the model's chat template, ready for the assistant's turn; without a
    template (Flan-T5), by the plain rendering of saie_lib.prompts."""
    if not has_chat_template(tokenizer):
        return [render_plain(list(c)) for c in conversations]
    return [tokenizer.apply_chat_template(list(c), tokenize=False, add_generation_prompt=True)
            for c in conversations]


def model_context(model: Any) -> int | None:
    """The tokens a decoder-only model can attend to (config.max_position_embeddings); None when it has no such
    bound (an encoder-decoder model with relative positions, T5) or does not say."""
    config = getattr(model, "config", None)
    value = getattr(config, "max_position_embeddings", None)
    if getattr(config, "is_encoder_decoder", False) or not isinstance(value, int) or value < 1:
        return None
    return value


def check_max_new_tokens(model: Any, max_new_tokens: int) -> None:
    context = model_context(model)
    if context is not None and max_new_tokens > context:
        raise ValueError(f"max_new_tokens = {max_new_tokens:,} is more than the model's context of {context:,} "
                         "tokens (config.max_position_embeddings); lower the config's max_new_tokens field")


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
    """Completions for rendered prompts, in input order. Prompts are tokenized once and batched longest-first by
    token count (at batch 8 that pads less than sorting by characters: MMLU 29% -> 19% of the real tokens,
    GSM8K 9% -> 4%); each batch is decoded with the KV cache, greedy on CPU by saie_lib.greedy_decoding, else by
    one `model.generate` call. `model` may be a serving engine (saie_lib.engines.VllmEngine): it gets every
    prompt at once. A max_new_tokens beyond the model's context is refused before any decoding."""
    if is_engine(model):
        return model.generate(prompts, decoding, progress=progress, desc=desc)
    check_max_new_tokens(model, decoding.max_new_tokens)
    encoded = encode_prompts(tokenizer, prompts)
    order = sorted(range(len(prompts)), key=lambda i: (-len(encoded[i]), i))
    outputs: list[str] = [""] * len(prompts)
    batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in progress_bar(batches, desc=desc, disable=not progress or not batches, unit="batch"):
        texts = generate_batch(model, tokenizer, [encoded[i] for i in batch], decoding)
        for index, text in zip(batch, texts):
            outputs[index] = text
    return outputs


def is_engine(model: Any) -> bool:
    """A serving engine (saie_lib.engines) rather than a transformers model."""
    return getattr(model, "serving_engine", False) is True


def encode_prompts(tokenizer: Any, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of each prompt: a chat template writes its own special tokens; a plain prompt gets the
    tokenizer's (T5: a closing </s>)."""
    if not prompts:
        return []
    return tokenizer(list(prompts), add_special_tokens=not has_chat_template(tokenizer))["input_ids"]


# generation_config fields that make model.generate change logits or lengths; the greedy loop implements none
LOGITS_SHAPING_FIELDS = ("min_length", "min_new_tokens", "suppress_tokens", "begin_suppress_tokens",
                         "bad_words_ids", "forced_bos_token_id", "forced_eos_token_id", "sequence_bias",
                         "exponential_decay_length_penalty", "encoder_repetition_penalty", "guidance_scale")


def drops_finished_rows(model: Any, decoding: Decoding) -> bool:
    """Greedy decoding of a decoder-only model on CPU runs saie_lib.greedy_decoding, where a row that stopped
    leaves the batch; everything else runs `model.generate`: sampling, stop strings, GPUs, a model whose own
    generation_config shapes the logits (min_new_tokens, suppress_tokens, ...), and a process that imported
    Unsloth (it patches transformers' models for its own generate)."""
    return (model.device.type == "cpu" and not decoding.do_sample and not decoding.stop
            and decoding.max_new_tokens > 0 and not getattr(model.config, "is_encoder_decoder", False)
            and "unsloth" not in sys.modules and not shapes_logits(getattr(model, "generation_config", None)))


def shapes_logits(config: Any) -> bool:
    from transformers import GenerationConfig

    defaults = GenerationConfig()
    return config is not None and any(getattr(config, field, None) != getattr(defaults, field, None)
                                      for field in LOGITS_SHAPING_FIELDS)


def generate_batch(model: Any, tokenizer: Any, prompts: Sequence[list[int]], decoding: Decoding) -> list[str]:
    """One batch of token-id prompts, left padded. A row stops at EOS/<|im_end|> or, when `decoding.stop` is set,
    as soon as its text holds a stop string (HF's stop_strings), instead of decoding on to max_new_tokens; the
    text is cut at the first stop string either way."""
    if drops_finished_rows(model, decoding):
        tokens = decode_greedy(model, tokenizer, prompts, decoding.max_new_tokens, stop_token_ids(tokenizer))
        return [text.strip() for text in tokenizer.batch_decode(tokens, skip_special_tokens=True)]
    return hf_generate_batch(model, tokenizer, prompts, decoding)


def hf_generate_batch(model: Any, tokenizer: Any, prompts: Sequence[list[int]], decoding: Decoding) -> list[str]:
    """One `model.generate` call: every row stays in the batch until the last one stops."""
    import torch
    from transformers import GenerationConfig

    # encoder-decoder models are left padded too: padding is masked, T5's position bias is relative
    input_ids, attention_mask = left_padded(tokenizer, prompts)
    encoded = {"input_ids": input_ids.to(model.device), "attention_mask": attention_mask.to(model.device)}
    stops = {"stop_strings": list(decoding.stop)} if decoding.stop else {}
    config = GenerationConfig(**generation_settings(decoding), **stops, eos_token_id=stop_token_ids(tokenizer),
                              pad_token_id=tokenizer.pad_token_id)
    cuda = [model.device.index or 0] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), torch.inference_mode():  # sampling never moves the global RNG
        if decoding.do_sample:
            torch.manual_seed(decoding.seed)
        generated = model.generate(**encoded, generation_config=config,
                                   **({"tokenizer": tokenizer} if decoding.stop else {}))
    # encoder-decoder: the decoder's output after its decoder_start token; decoder-only: after the prompt
    start = 1 if getattr(model.config, "is_encoder_decoder", False) else encoded["input_ids"].shape[1]
    new_tokens = generated[:, start:]
    texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return [cut_at_stop(t, decoding.stop).strip() for t in texts]
