"""Parity with veRL's own functions on the same tensors (the only core test that imports verl)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import verl.trainer.ppo.core_algos as verl_algos  # a declared test dependency: missing must fail, not skip
from verl.workers.config import ActorConfig

from herl.core import KL_TYPES, LossConfig, aggregate, grpo_advantages, herl_policy_loss, kl_penalty
from herl.errors import UserError


def _actor_config(cfg: LossConfig) -> object:
    return ActorConfig(
        strategy="fsdp",
        rollout_n=8,
        ppo_micro_batch_size_per_gpu=4,
        clip_ratio=cfg.clip_ratio,
        clip_ratio_low=cfg.low,
        clip_ratio_high=cfg.high,
        clip_ratio_c=cfg.dual_clip_c,
        loss_agg_mode=cfg.loss_agg_mode,
    )


def _tensors(seed: int, b: int = 16, t: int = 12) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(b, t, generator=g) * 3
    new = old + torch.randn(b, t, generator=g) * 0.4  # ratios spread across both clip edges
    adv = torch.randn(b, t, generator=g)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    rm = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).float()
    return old, new, adv, rm


@pytest.mark.parametrize(
    "cfg",
    [LossConfig(), LossConfig(clip_ratio=0.2, clip_ratio_low=0.1, clip_ratio_high=0.28, dual_clip_c=2.5)],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_on_policy_part_matches_verl_vanilla(cfg: LossConfig, seed: int) -> None:
    old, new, adv, rm = _tensors(seed)
    vcfg = _actor_config(cfg)

    # no HE rows: the whole loss is veRL's vanilla loss
    ours, m = herl_policy_loss(old, new, adv, rm, None, cfg)
    theirs, vm = verl_algos.compute_policy_loss_vanilla(
        old, new, adv, rm, loss_agg_mode="token-mean", config=vcfg
    )
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6, abs=1e-7)
    for k in ("pg_clipfrac", "ppo_kl", "pg_clipfrac_lower"):
        assert m[k] == pytest.approx(vm[f"actor/{k}"], rel=1e-6, abs=1e-7)

    # with HE rows: the on-policy part equals vanilla restricted to on-policy tokens
    he = torch.zeros_like(rm)
    he[[1, 5, 9]] = 1
    on_mask = rm * (1 - he)
    ours, m = herl_policy_loss(old, new, adv, rm, he, cfg)
    v_on, vm_on = verl_algos.compute_policy_loss_vanilla(
        old, new, adv, on_mask, loss_agg_mode="token-mean", config=vcfg
    )
    assert m["on_pg_loss"] == pytest.approx(v_on.item(), rel=1e-6, abs=1e-7)
    for k in ("pg_clipfrac", "ppo_kl", "pg_clipfrac_lower"):
        assert m[k] == pytest.approx(vm_on[f"actor/{k}"], rel=1e-6, abs=1e-7)
    ratio = torch.exp(torch.clamp(new - old, -20, 20))
    off_sum = (-adv * ratio / (ratio + cfg.gamma) * rm * he).sum()
    want = (v_on * on_mask.sum() + off_sum) / rm.sum()
    assert ours.item() == pytest.approx(want.item(), rel=1e-5)


def test_grpo_matches_verl() -> None:
    g = torch.Generator().manual_seed(3)
    b, t = 24, 6
    tr = torch.rand(b, t, generator=g)
    rm = (torch.rand(b, t, generator=g) > 0.2).float()
    index = np.array([f"u{i % 5}" for i in range(b - 1)] + ["solo"], dtype=object)
    ours, _ = grpo_advantages(tr, rm, index)
    theirs, _ = verl_algos.compute_grpo_outcome_advantage(tr, rm, index)
    assert torch.allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("mode", ["token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean"])
@pytest.mark.parametrize("dp_size", [1, 3])
def test_aggregate_matches_verl(mode: str, dp_size: int) -> None:
    _, _, lm, rm = _tensors(4)
    assert aggregate(lm, rm, mode).item() == pytest.approx(verl_algos.agg_loss(lm, rm, mode).item(), rel=1e-6)
    # with the global counts of dp_size ranks, as veRL's ppo_loss passes them
    counts = {"batch_num_tokens": float(rm.sum()) * dp_size, "global_batch_size": rm.shape[0] * dp_size}
    ours = aggregate(lm, rm, mode, dp_size=dp_size, **counts).item()
    theirs = verl_algos.agg_loss(lm, rm, mode, dp_size=dp_size, **counts).item()
    assert ours == pytest.approx(theirs, rel=1e-6)


@pytest.mark.parametrize("kind", KL_TYPES)
def test_kl_penalty_matches_verl_values_and_gradients(kind: str) -> None:
    """The local engine's KL (herl.core.kl) is veRL's kl_penalty for every type the spec allows."""
    from herl.api.model import KLLossSpec

    assert set(KL_TYPES) == set(KLLossSpec.model_fields["type"].annotation.__args__)
    g = torch.Generator().manual_seed(5)
    ref = -torch.rand(6, 9, generator=g) * 4
    logp0 = ref + torch.randn(6, 9, generator=g) * 2
    logp0[0, 0] = ref[0, 0] - 30.0  # past the ±20 clamp of low_var_kl
    ours_in = logp0.clone().requires_grad_(True)
    theirs_in = logp0.clone().requires_grad_(True)
    ours = kl_penalty(ours_in, ref, kind)
    theirs = verl_algos.kl_penalty(theirs_in, ref, kind)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    weights = torch.rand(6, 9, generator=g)
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    torch.testing.assert_close(ours_in.grad, theirs_in.grad, rtol=0, atol=0)


def test_kl_penalty_refuses_unknown_type() -> None:
    with pytest.raises(UserError, match=r"klLoss\.type"):
        kl_penalty(torch.zeros(1), torch.zeros(1), "full")
