"""A run's weights in words, from the `model_source` its records keep (saie_lib.models resolves it)."""

from __future__ import annotations

from .models import MODEL_ALIASES


def weights_description(name: str, source: str) -> str:
    """The weights a run used, in words, from its recorded `model_source`: an embedded GGUF build is a
    4-bit-rounded copy whose numbers are not the Hub model's, so it is always named as such."""
    spec = MODEL_ALIASES.get(name)
    if source.startswith("gguf:") and spec and spec.gguf_file:
        quant = spec.gguf_file.rsplit(".", 2)[-2]
        return f"{(spec.hub_id or name).split('/')[-1]} dequantised from its {quant} GGUF ({source[5:]})"
    if source == "hub" and spec and spec.hub_id:
        return f"{spec.hub_id} (original weights, Hugging Face Hub)"
    return f"{name} ({source})"
