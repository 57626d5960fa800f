"""The partner of a training run: built from the config (the learner's base, a local model or an API), its
remarks cut to the remark budget (saie_lib.remark_budget), answered through the remark cache; and what the run's
metrics say about it."""

from __future__ import annotations

from typing import Any

from .conditions import PLACEBO
from .partners.local import build_partner
from .partners.scripted import is_scripted
from .remark_budget import RemarkBudget, budget_tokens
from .remark_cache import CachedPartner, RemarkCache


def partner_patience(cfg: Any) -> dict[str, Any]:
    """The API partner's timeout, retries, concurrency and outage wait, where the config sets them."""
    chosen = {"timeout_s": cfg.partner_timeout_s, "max_retries": cfg.partner_max_retries,
              "concurrency": cfg.partner_concurrency, "outage_wait_s": cfg.partner_outage_wait_s}
    return {name: value for name, value in chosen.items() if value is not None}


def open_partner(cfg: Any, learner: Any, cache: RemarkCache) -> Any:
    """The configured partner, every remark cut to the remark budget in the learner's tokenizer, cached; a
    scripted partner as it is (it calls nothing and writes within any budget)."""
    budget = RemarkBudget(learner.tokenizer, budget_tokens(cfg))
    partner = build_partner(cfg.partner, learner, batch_size=cfg.eval_batch_size, base_url=cfg.partner_base_url,
                            api_key_env=cfg.partner_api_key_env, device=cfg.device, budget=budget, seed=cfg.seed,
                            **partner_patience(cfg))
    return partner if is_scripted(partner) else CachedPartner(partner, cache)


def partner_summary(cfg: Any, partner: CachedPartner, rows: list[dict]) -> dict[str, Any]:
    """The partner's remarks in the transcript `rows` (placebo turns are not the partner's), their tokens over every
    try, cost, the remarks cut to the budget, and this session's calls, cache hits and cache repairs."""
    with_remark = [r for r in rows if r["remark"] is not None and r["stance"] != PLACEBO]
    costs = [r.get("partner_cost_usd") for r in with_remark]
    tokens = [sum(t["partner_tokens"] for t in r["stance_tries"]) if r.get("stance_tries") else r["partner_tokens"]
              for r in with_remark]
    cache = getattr(partner, "cache", None)  # a scripted partner has none
    return {"model_id": partner.model_id, "remarks": len(with_remark),
            "calls_this_session": partner.calls_made, "cache_hits_this_session": partner.hits,
            "tokens": sum(tokens),  # cost: None unless every remark has a price (local partners have none)
            "cost_usd": sum(costs) if costs and None not in costs else None,
            "remark_budget": budget_tokens(cfg),
            "remarks_cut": sum(bool(r.get("remark_cut_chars")) for r in with_remark),
            "cache_entries_rejected_this_session": cache.rejected if cache else 0,  # checksum mismatches: re-asked
            "cache_moved_aside": cache.moved_aside.name if cache and cache.moved_aside else None}
