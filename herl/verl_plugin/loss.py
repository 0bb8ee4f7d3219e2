"""The HeRL policy loss inside veRL 0.9.1, without touching veRL's code.

veRL's actor calls an *outer* loss, ``verl.workers.utils.losses.ppo_loss(config, model_output, data,
dp_group)``, with the whole micro-batch ``data`` (a TensorDict of nested tensors). It picks the
*policy* loss by name from ``core_algos.POLICY_LOSS_REGISTRY`` and calls it with a fixed signature
(old/new log-probs, advantages, response mask, agg mode, config, IS weights): a registered loss never
sees extra per-token fields such as ``he_mask``.

So the plugin has two halves:

- :func:`herl_mixpolicy_loss`, registered as ``loss_mode=herl_mixpolicy``: it calls
  :func:`herl.core.loss.herl_policy_loss` (the algorithm lives in the core, not here) with the
  he_mask of the current micro-batch, taken from a context variable;
- :func:`herl_ppo_loss`, the replacement outer loss the trainer installs on the actor workers with
  the worker RPC ``set_loss_fn``: it pads the micro-batch's ``he_mask`` to the response width, puts it
  in the context variable and then calls veRL's own ``ppo_loss`` unchanged, so entropy, KL, global
  batch normalisation and metric aggregation stay veRL's.

The context variable is set and reset around one call in one worker thread, so concurrent micro-batches
cannot see each other's masks.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

import torch

from herl.core.loss import herl_policy_loss

LOSS_MODE = "herl_mixpolicy"
"""The ``actor_rollout_ref.actor.policy_loss.loss_mode`` value that selects the HeRL loss."""

HE_MASK_KEY = "he_mask"
"""Per-token field the hindsight stage writes for every row (1 on HE response tokens)."""


@dataclass(frozen=True)
class HeRLLossParams:
    """The HeRL-only loss settings (everything else comes from veRL's ActorConfig).

    ``gamma`` is γ of the HE weight ρ/(ρ+γ); ``off_policy`` False trains HE rows as plain PPO rows
    (the he_mask is then ignored: a variant the released code once had).
    """

    gamma: float = 1.0
    off_policy: bool = True


@dataclass(frozen=True)
class _MicroBatchContext:
    he_mask: torch.Tensor
    params: HeRLLossParams


_CURRENT: contextvars.ContextVar[_MicroBatchContext | None] = contextvars.ContextVar(
    "herl_micro_batch", default=None
)


def _cfg_get(config: Any, key: str, default: Any = None) -> Any:
    """Read a key from veRL's ActorConfig (a BaseConfig dataclass with ``get``) or a plain mapping."""
    getter = getattr(config, "get", None)
    value = getter(key, default) if callable(getter) else getattr(config, key, default)
    return default if value is None else value


def loss_config_from_actor(config: Any, params: HeRLLossParams, loss_agg_mode: str) -> Any:
    """Build the core's LossConfig from veRL's actor config, so the clip values are veRL's own."""
    from herl.core.config import LossConfig

    clip = float(_cfg_get(config, "clip_ratio", 0.2))
    return LossConfig(
        clip_ratio=clip,
        clip_ratio_low=float(_cfg_get(config, "clip_ratio_low", clip)),
        clip_ratio_high=float(_cfg_get(config, "clip_ratio_high", clip)),
        dual_clip_c=float(_cfg_get(config, "clip_ratio_c", 3.0)),
        gamma=float(params.gamma),
        loss_agg_mode=loss_agg_mode,
    )


def herl_mixpolicy_loss(
    old_log_prob: torch.Tensor,
    log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str = "token-mean",
    config: Any = None,
    rollout_is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """veRL PolicyLossFn for ``loss_mode=herl_mixpolicy``: PPO clip on rollout tokens, ρ/(ρ+γ) on HE tokens.

    Must run inside :func:`herl_ppo_loss` (which supplies the micro-batch's he_mask); called directly
    it refuses, because silently treating HE rows as on-policy would train the wrong objective.
    """
    if config is None:
        raise ValueError("herl_mixpolicy needs veRL's actor config")
    ctx = _CURRENT.get()
    if ctx is None:
        raise RuntimeError(
            "loss_mode=herl_mixpolicy was called without the HeRL outer loss: the actor workers still run "
            "veRL's ppo_loss. Use trainer.v1.trainer_mode=herl_sync (it installs herl_ppo_loss with "
            "set_loss_fn), or python -m herl.train, which sets it."
        )
    if rollout_is_weights is not None:
        raise NotImplementedError(
            "algorithm.rollout_correction importance weights are not supported with herl_mixpolicy"
        )
    cfg = loss_config_from_actor(config, ctx.params, loss_agg_mode)
    # The global counts and dp_size veRL's ppo_loss put on the config for this micro-batch: the core's
    # aggregate scales exactly like veRL's agg_loss (÷ global count, × dp_size; token-sum × dp_size).
    info = getattr(config, "global_batch_info", None) or {}
    he_mask = ctx.he_mask if ctx.params.off_policy else None
    if he_mask is not None:
        he_mask = _fit_width(he_mask, response_mask.shape[-1]).to(response_mask.device)
    loss, metrics = herl_policy_loss(
        old_log_prob,
        log_prob,
        advantages,
        response_mask,
        he_mask,
        cfg,
        dp_size=int(info.get("dp_size") or 1),
        batch_num_tokens=info.get("batch_num_tokens"),
        global_batch_size=info.get("global_batch_size"),
    )
    out = {
        "actor/pg_clipfrac": metrics["pg_clipfrac"],
        "actor/ppo_kl": metrics["ppo_kl"],
        "actor/pg_clipfrac_lower": metrics["pg_clipfrac_lower"],
        "actor/on_pg_loss": metrics["on_pg_loss"],
        "actor/off_pg_loss": metrics["off_pg_loss"],
        "actor/he_frac": metrics["he_frac"],
    }
    return loss, out


def _fit_width(mask: torch.Tensor, width: int) -> torch.Tensor:
    """Crop or zero-pad a padded (batch, L) mask to ``width`` columns.

    veRL's synthetic padding rows copy every field of the first real row, so their he_mask may be
    longer than their one-token response; their response_mask is 0, so cropping is harmless.
    """
    if mask.shape[-1] == width:
        return mask
    if mask.shape[-1] > width:
        return mask[..., :width]
    pad = torch.zeros(*mask.shape[:-1], width - mask.shape[-1], dtype=mask.dtype, device=mask.device)
    return torch.cat([mask, pad], dim=-1)


def padded_he_mask(data: Any, width: int | None = None) -> torch.Tensor:
    """The micro-batch's he_mask as a dense ``(batch, response_width)`` tensor (zeros when absent).

    ``data`` is the TensorDict veRL hands the outer loss; ``he_mask`` is nested (jagged) there, like
    ``response_mask``. A batch without the field (validation, or a step where the stage did not run)
    gets zeros, which makes the loss exactly veRL's vanilla PPO.
    """
    response_mask = data["response_mask"]
    if isinstance(response_mask, torch.Tensor) and response_mask.is_nested:
        response_mask = response_mask.to_padded_tensor(0)
    w = response_mask.shape[-1] if width is None else width
    if HE_MASK_KEY not in data.keys():  # noqa: SIM118  (TensorDict: iteration yields rows)
        return torch.zeros(response_mask.shape[0], w, dtype=torch.float32, device=response_mask.device)
    he = data[HE_MASK_KEY]
    if isinstance(he, torch.Tensor) and he.is_nested:
        he = he.to_padded_tensor(0)
    he = torch.as_tensor(he).to(torch.float32)
    if he.dim() == 1:  # a per-row flag
        he = he.unsqueeze(-1).expand(-1, w)
    return _fit_width(he, w) * (response_mask[..., :w] > 0).to(torch.float32)


def herl_ppo_loss(
    config: Any,
    model_output: Any,
    data: Any,
    dp_group: Any = None,
    *,
    params: HeRLLossParams | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Outer loss for the actor workers: veRL's ``ppo_loss`` with the micro-batch he_mask in context.

    Installed with ``actor_rollout_ref_wg.set_loss_fn(functools.partial(herl_ppo_loss, config=...,
    params=...))``; the partial pickles (module-level function, dataclasses), so it crosses Ray.
    """
    from verl.workers.utils.losses import ppo_loss

    token = _CURRENT.set(_MicroBatchContext(he_mask=padded_he_mask(data), params=params or HeRLLossParams()))
    try:
        return ppo_loss(config, model_output, data, dp_group)
    finally:
        _CURRENT.reset(token)


def register() -> None:
    """Register ``herl_mixpolicy`` in veRL's policy-loss registry (idempotent)."""
    from verl.trainer.ppo import core_algos

    if core_algos.POLICY_LOSS_REGISTRY.get(LOSS_MODE) is not herl_mixpolicy_loss:
        core_algos.register_policy_loss(LOSS_MODE)(herl_mixpolicy_loss)
