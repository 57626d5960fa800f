"""Greedy decoding on CPU in which a finished row leaves the batch.

`model.generate` keeps every row of a batch in every decoding step until the longest row stops: at batch 32 one
long answer makes 31 finished rows ride along. Here a row leaves the batch, and the KV cache, at its stop token,
so later steps compute only the rows still decoding. The prompts are padded and masked as generate pads them and
each row gets the positions generate gives it, so in float32 the tokens are generate's; in bfloat16 a smaller
batch can round differently, as any other batch size does (results/bench/drop-finished-*.json: 60 of 60
evaluation answers the same in both dtypes, CommonsenseQA evaluation at batch 30 2.2-2.5x faster; the cpu-quick
re-run: one GSM8K answer of 30 parted late). Used for greedy decoding of decoder-only models on CPU only
(generation.drops_finished_rows).
"""

from __future__ import annotations

from typing import Any, Sequence


def left_padded(tokenizer: Any, prompts: Sequence[list[int]]) -> tuple[Any, Any]:
    """Input ids and attention mask of the prompts, left padded."""
    tokenizer.padding_side = "left"
    encoded = tokenizer.pad({"input_ids": [list(p) for p in prompts]}, return_tensors="pt")
    return encoded["input_ids"], encoded["attention_mask"]


def decode_greedy(model: Any, tokenizer: Any, prompts: Sequence[list[int]], max_new_tokens: int,
                  stop_ids: Sequence[int]) -> list[list[int]]:
    """Each prompt's new tokens (its stop token last, if it stopped), in input order."""
    import torch
    from transformers import DynamicCache

    input_ids, mask = left_padded(tokenizer, prompts)
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)  # what generate gives left-padded rows
    stops, rows = torch.tensor(list(stop_ids)), torch.arange(len(prompts))
    tokens: list[list[int]] = [[] for _ in prompts]
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                       past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        for step in range(max_new_tokens):
            chosen = logits.argmax(-1)
            for row, token in zip(rows.tolist(), chosen.tolist()):
                tokens[row].append(token)
            decoding = ~torch.isin(chosen, stops)
            if step == max_new_tokens - 1 or not decoding.any():
                break
            if not decoding.all():
                keep = decoding.nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                rows, chosen, mask, positions = rows[keep], chosen[keep], mask[keep], positions[keep]
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
            positions = positions[:, -1:] + 1
            logits = model(input_ids=chosen[:, None], attention_mask=mask, position_ids=positions,
                           past_key_values=cache, use_cache=True).logits[:, -1]
    return tokens
