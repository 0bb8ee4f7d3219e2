"""The HeRL mixed-policy loss.

Per response token t:
- on-policy tokens (response_mask · (1 − he_mask)): veRL's vanilla PPO loss, i.e. clip with
  [1 − ε_low, 1 + ε_high] plus dual clip at c for negative advantages;
- HE tokens (response_mask · he_mask): −A · ρ/(ρ + γ), unclipped, with ρ = exp(clamp(logπθ − logπold,
  −20, 20)). γ = 0 means the plain ratio ρ (the released code treats γ ≤ 0 that way).
The two are summed per token and aggregated over ALL response tokens (token-mean by default), so HE
tokens share the denominator with on-policy tokens. At ρ = 1 the HE gradient is γ/(1+γ)² · A∇logπ:
0.25 for γ = 1, about 0.083 for γ = 0.1 — a strongly down-weighted, softly trust-regioned update.
"""

from __future__ import annotations

import torch

from herl.core.config import LossConfig


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / (mask.sum() + 1e-8)


def _safe_div(num: torch.Tensor, denom: float | torch.Tensor) -> torch.Tensor:
    # Denominators are token or sequence counts: 0 only when the numerator is 0 too. No host sync.
    if isinstance(denom, torch.Tensor):
        return num / denom.clamp(min=1e-8)
    return num / denom if denom > 0 else num * 0.0


def aggregate(
    loss_mat: torch.Tensor,
    mask: torch.Tensor,
    mode: str,
    *,
    dp_size: int = 1,
    batch_num_tokens: float | torch.Tensor | None = None,
    global_batch_size: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Reduce a per-token loss exactly like veRL 0.9.1's ``core_algos.agg_loss`` on one rank.

    ``batch_num_tokens`` / ``global_batch_size`` are the GLOBAL token / sequence counts of the mini-batch
    (all micro-batches, all data-parallel ranks): with them the summed micro-batch losses equal the
    full-batch loss. Every mode is then multiplied by ``dp_size``, because DDP/FSDP average the ranks'
    gradients; for ``token-sum`` that factor is all there is (no count to divide by). An empty mask
    gives 0 rather than NaN.
    """
    if dp_size > 1 and mode != "token-sum":
        needed = batch_num_tokens if mode == "token-mean" else global_batch_size
        if needed is None:
            raise ValueError(f"loss_agg_mode {mode!r} with dp_size {dp_size} needs the global count")
    if mode == "token-mean":
        denom = mask.sum() if batch_num_tokens is None else batch_num_tokens
        num = (loss_mat * mask).sum()
        return _safe_div(num, denom) * dp_size
    if mode == "token-sum":
        return (loss_mat * mask).sum() * dp_size
    if mode in ("seq-mean-token-sum", "seq-mean-token-mean"):
        per_seq_tokens = mask.sum(dim=-1)
        seq = (loss_mat * mask).sum(dim=-1)
        if mode == "seq-mean-token-mean":
            seq = seq / (per_seq_tokens + 1e-8)
        seq_mask = (per_seq_tokens > 0).to(seq.dtype)
        denom = seq_mask.sum() if global_batch_size is None else global_batch_size
        num = (seq * seq_mask).sum()
        return _safe_div(num, denom) * dp_size
    raise ValueError(f"unknown loss_agg_mode {mode!r}")


def he_weight(ratio: torch.Tensor, gamma: float) -> torch.Tensor:
    """Policy-shaping weight w(ρ) = ρ/(ρ+γ) for HE tokens (ρ itself when γ = 0)."""
    return ratio if gamma <= 0 else ratio / (ratio + gamma)


def herl_policy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    he_mask: torch.Tensor | None,
    cfg: LossConfig,
    *,
    dp_size: int = 1,
    batch_num_tokens: float | torch.Tensor | None = None,
    global_batch_size: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Return (loss, metrics) for one micro-batch; all tensors ``(batch, response_length)``.

    Metrics: ``pg_loss``, ``on_pg_loss`` (aggregated over on-policy tokens only), ``off_pg_loss``
    (over HE tokens only), ``he_frac`` (HE share of response tokens), ``ppo_kl`` and ``pg_clipfrac``
    / ``pg_clipfrac_lower`` on on-policy tokens only (HE tokens are never clipped).
    """
    mask = response_mask.to(log_prob.dtype)
    he = torch.zeros_like(mask) if he_mask is None else he_mask.to(log_prob.dtype) * mask
    on_mask = mask - he
    neg_kl = torch.clamp(log_prob - old_log_prob, min=-20.0, max=20.0)
    ratio = torch.exp(neg_kl)

    # On-policy: veRL vanilla PPO (clip + dual clip), same operations in the same order.
    loss1 = -advantages * ratio
    loss2 = -advantages * torch.clamp(ratio, 1 - cfg.low, 1 + cfg.high)
    clipped = torch.maximum(loss1, loss2)
    loss3 = -advantages * cfg.dual_clip_c
    dual = torch.minimum(loss3, clipped)
    on_losses = torch.where(advantages < 0, dual, clipped) * on_mask

    off_losses = -advantages * he_weight(ratio, cfg.gamma) * he

    pg_losses = on_losses + off_losses
    agg = {"dp_size": dp_size, "batch_num_tokens": batch_num_tokens, "global_batch_size": global_batch_size}
    loss = aggregate(pg_losses, mask, cfg.loss_agg_mode, **agg)

    with torch.no_grad():
        lower = torch.gt(clipped, loss3).to(mask.dtype) * (advantages < 0).to(mask.dtype)
        on_pg = aggregate(on_losses, on_mask, cfg.loss_agg_mode)
        off_pg = aggregate(off_losses, he, cfg.loss_agg_mode)
        metrics = {
            "pg_loss": float(loss.detach()),
            "on_pg_loss": float(on_pg),
            "off_pg_loss": float(off_pg),
            "he_frac": float(_masked_mean(he, mask)),
            "ppo_kl": float(_masked_mean(-neg_kl, on_mask)),
            "pg_clipfrac": float(_masked_mean(torch.gt(loss2, loss1).to(mask.dtype), on_mask)),
            "pg_clipfrac_lower": float(_masked_mean(lower, on_mask)),
        }
    return loss, metrics
