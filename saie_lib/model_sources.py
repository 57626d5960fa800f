"""Which weights a run uses: decided before any weights load, as part of its identity (`weights_identity`, by
the rules saie_lib.models.resolve_model loads them by), and said in words from its records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .models import MODEL_ALIASES
from .weight_digests import file_sha256, folder_sha256, hub_revision, installed_file


def weights_identity(name: str, source: str = "auto") -> str | None:
    """The weights `name` loads under `source`, as 'hub:<repo>@<revision>', 'gguf:<package> sha256:<digest>' or
    'local sha256:<digest>'; None for the reference weights the committed runs used (the pinned GGUF) and the
    tiny test models (built from TINY_VERSION), whose runs keep the identity they had, and where nothing is
    found (loading then fails and names what is missing)."""
    if Path(name).expanduser().is_dir():
        return f"local sha256:{folder_sha256(name)}"
    spec = MODEL_ALIASES.get(name)
    if spec is None:
        return _hub_weights(name) if "/" in name else None
    if spec.tiny_from:
        return None
    if source in ("auto", "hub") and spec.hub_id and (hub_revision(spec.hub_id) or source == "hub"):
        return _hub_weights(spec.hub_id)
    if source in ("auto", "gguf") and spec.gguf_package and spec.gguf_module and spec.gguf_file:
        path = installed_file(spec.gguf_module, spec.gguf_file)
        digest = file_sha256(path) if path else None
        return f"gguf:{spec.gguf_package} sha256:{digest}" if digest and digest != spec.gguf_sha256 else None
    return None


def _hub_weights(repo_id: str) -> str | None:
    revision = hub_revision(repo_id)
    return f"hub:{repo_id}@{revision}" if revision else None


def weights_fields(model: str, source: str) -> dict[str, Any]:
    """{'weights': ...} for a run identity or record, or {} for the reference weights (the identity as before)."""
    weights = weights_identity(model, source)
    return {"weights": weights} if weights else {}


def partner_weights_fields(partner: str) -> dict[str, Any]:
    """{'partner_weights': ...} for a training partner that is a model of its own (alias, Hub id, directory,
    vllm:<model>; loaded with `auto`), or {} (self, scripted, api:, or the reference weights)."""
    if partner in ("self", "scripted") or partner.startswith("api:"):
        return {}
    weights = weights_identity(partner.removeprefix("vllm:"), "auto")
    return {"partner_weights": weights} if weights else {}


def weights_description(name: str, source: str, weights: str | None = None) -> str:
    """The weights a run used, in words, from its recorded `model_source` (and `weights`, where the run records
    a digest or revision: runs on the reference weights record none): an embedded GGUF build is a
    4-bit-rounded copy whose numbers are not the Hub model's, so it is always named as such."""
    spec = MODEL_ALIASES.get(name)
    pinned = f", sha256 {weights.rsplit(':', 1)[-1][:12]}" if weights and " sha256:" in weights else ""
    if source.startswith("gguf:") and spec and spec.gguf_file:
        quant = spec.gguf_file.rsplit(".", 2)[-2]
        return f"{(spec.hub_id or name).split('/')[-1]} dequantised from its {quant} GGUF ({source[5:]}{pinned})"
    revision = f", revision {weights.rsplit('@', 1)[-1][:12]}" if weights and weights.startswith("hub:") else ""
    if source == "hub" and spec and spec.hub_id:
        return f"{spec.hub_id} (original weights, Hugging Face Hub{revision})"
    return f"{name} ({source}{revision}{pinned})"
