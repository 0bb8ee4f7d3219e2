"""GRPO advantage (HE row included) and the mixed-policy loss, by hand and by autograd."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from herl.core import LossConfig, aggregate, grpo_advantages, he_weight, herl_policy_loss


def _outcome(rewards: list[float], t: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    tr = torch.zeros(len(rewards), t)
    tr[:, -1] = torch.tensor(rewards)
    return tr, torch.ones(len(rewards), t)


# ---------------------------------------------------------------- advantage


def test_grpo_hand_computed() -> None:
    tr, m = _outcome([1.0, 0.0, 0.0, 1.0])
    m[1, 2] = 0
    adv, ret = grpo_advantages(tr, m, ["a", "a", "a", "a"])
    a = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    assert torch.allclose(adv[:, 0], torch.tensor([a, -a, -a, a]))
    assert adv[1, 2] == 0  # broadcast only over response tokens
    assert torch.equal(adv, ret)


def test_grpo_includes_he_row_and_spread_bonus() -> None:
    # 3 rollouts + HE row with reward 1; one rollout carries a BR delta spread over its tokens
    tr = torch.tensor([[0.0, 0.5], [0.0, 0.25], [0.0, 0.25], [0.0, 1.0]])
    tr[0] += 0.0125 / 2
    adv, _ = grpo_advantages(tr, torch.ones(4, 2), [7, 7, 7, 7])
    s = torch.tensor([0.5125, 0.25, 0.25, 1.0], dtype=torch.float64)
    want = (s - s.mean()) / (s.std() + 1e-6)
    assert torch.allclose(adv[:, 0].double(), want, atol=1e-6)


def test_grpo_groups_interleaved_and_singletons() -> None:
    tr, m = _outcome([1.0, 0.2, 0.0, 0.7])
    adv, _ = grpo_advantages(tr, m, torch.tensor([0, 1, 0, 2]))
    a = 0.5 / (math.sqrt(0.5) + 1e-6)
    assert adv[0, 0].item() == pytest.approx(a) and adv[2, 0].item() == pytest.approx(-a)
    assert adv[1, 0].item() == pytest.approx(0.2 / (1 + 1e-6))  # group of one: mean 0, std 1
    adv_nostd, _ = grpo_advantages(tr, m, ["x", "y", "x", "z"], norm_by_std=False)
    assert adv_nostd[0, 0].item() == pytest.approx(0.5)
    tied, _ = grpo_advantages(*_outcome([0.5, 0.5]), ["u", "u"])
    assert torch.equal(tied, torch.zeros_like(tied))
    with pytest.raises(ValueError):
        grpo_advantages(tr, m, ["a"])


# ---------------------------------------------------------------- loss


def _one(val: float) -> torch.Tensor:
    return torch.tensor([[val]])


def test_loss_hand_computed_mixed() -> None:
    lr = math.log(1.5)
    old = torch.zeros(2, 1)
    new = torch.full((2, 1), lr)
    adv = torch.ones(2, 1)
    rm = torch.ones(2, 1)
    he = torch.tensor([[0.0], [1.0]])
    loss, m = herl_policy_loss(old, new, adv, rm, he, LossConfig())
    # on-policy: max(-1.5, -1.2) = -1.2 ; HE: -1 * 1.5/2.5 = -0.6 ; token-mean over both tokens
    assert loss.item() == pytest.approx(-0.9)
    assert m["on_pg_loss"] == pytest.approx(-1.2) and m["off_pg_loss"] == pytest.approx(-0.6)
    assert m["he_frac"] == pytest.approx(0.5)
    assert m["pg_clipfrac"] == pytest.approx(1.0) and m["ppo_kl"] == pytest.approx(-lr)
    assert m["pg_loss"] == pytest.approx(-0.9)


def test_loss_dual_clip_and_asymmetric_clip() -> None:
    loss, m = herl_policy_loss(_one(0.0), _one(math.log(5.0)), _one(-1.0), _one(1.0), None, LossConfig())
    assert loss.item() == pytest.approx(3.0)  # min(3, max(5, 1.2))
    assert m["pg_clipfrac_lower"] == pytest.approx(1.0)
    loss, _ = herl_policy_loss(
        _one(0.0), _one(math.log(2.0)), _one(1.0), _one(1.0), None, LossConfig(clip_ratio_high=0.28)
    )
    assert loss.item() == pytest.approx(-1.28)
    loss, _ = herl_policy_loss(
        _one(0.0), _one(math.log(0.5)), _one(-1.0), _one(1.0), None, LossConfig(clip_ratio_low=0.1)
    )
    assert loss.item() == pytest.approx(0.9)


def test_he_tokens_are_never_clipped_and_ratio_clamped() -> None:
    loss, m = herl_policy_loss(_one(0.0), _one(math.log(10.0)), _one(1.0), _one(1.0), _one(1.0), LossConfig())
    assert loss.item() == pytest.approx(-10 / 11)
    assert m["pg_clipfrac"] == 0 and m["he_frac"] == 1 and m["on_pg_loss"] == 0
    loss, _ = herl_policy_loss(_one(0.0), _one(100.0), _one(1.0), _one(1.0), _one(1.0), LossConfig(gamma=0.0))
    assert loss.item() == pytest.approx(-math.exp(20.0), rel=1e-5)  # γ=0: plain ratio, clamp at 20


def test_he_mask_outside_response_is_ignored_and_padding_not_counted() -> None:
    old = torch.zeros(1, 3)
    new = torch.zeros(1, 3)
    adv = torch.ones(1, 3)
    rm = torch.tensor([[1.0, 1.0, 0.0]])
    he = torch.tensor([[0.0, 1.0, 1.0]])
    loss, m = herl_policy_loss(old, new, adv, rm, he, LossConfig())
    assert loss.item() == pytest.approx((-1.0 - 0.5) / 2)
    assert m["he_frac"] == pytest.approx(0.5)


@pytest.mark.parametrize("gamma", [1.0, 0.1, 0.5])
def test_he_gradient_at_rho_one(gamma: float) -> None:
    """∂/∂θ of the HE term at ρ=1 is −A·γ/(1+γ)²·∇logπ (0.25 for γ=1)."""
    torch.manual_seed(0)
    theta = torch.randn(5, requires_grad=True)
    action = 3
    logp = torch.log_softmax(theta, -1)[action].reshape(1, 1)
    adv = 2.0
    loss, _ = herl_policy_loss(logp.detach(), logp, _one(adv), _one(1.0), _one(1.0), LossConfig(gamma=gamma))
    (g_loss,) = torch.autograd.grad(loss, theta)
    (g_logp,) = torch.autograd.grad(torch.log_softmax(theta, -1)[action], theta)
    coef = gamma / (1 + gamma) ** 2
    assert torch.allclose(g_loss, -adv * coef * g_logp, atol=1e-6)
    if gamma == 1.0:
        assert coef == 0.25


def test_on_policy_gradient_is_full_weight_at_rho_one() -> None:
    logp = torch.zeros(1, 1, requires_grad=True)
    loss, _ = herl_policy_loss(torch.zeros(1, 1), logp, _one(1.0), _one(1.0), None, LossConfig())
    (g,) = torch.autograd.grad(loss, logp)
    assert g.item() == pytest.approx(-1.0)


@settings(max_examples=30, deadline=None)
@given(st.floats(0.01, 20), st.floats(0.0, 5))
def test_he_weight_gradient_formula(rho: float, gamma: float) -> None:
    lr = torch.tensor(math.log(rho), dtype=torch.float64, requires_grad=True)
    w = he_weight(torch.exp(lr), gamma)
    (g,) = torch.autograd.grad(w, lr)
    want = rho if gamma == 0 else gamma * rho / (rho + gamma) ** 2
    assert g.item() == pytest.approx(want, rel=1e-9)


def test_micro_batches_with_global_token_count_sum_to_full_batch() -> None:
    torch.manual_seed(1)
    b, t = 6, 5
    old, new, adv = torch.randn(b, t), torch.randn(b, t), torch.randn(b, t)
    rm = (torch.rand(b, t) > 0.3).float()
    he = torch.zeros(b, t)
    he[2] = 1
    cfg = LossConfig()
    full, _ = herl_policy_loss(old, new, adv, rm, he, cfg)
    n = rm.sum()
    parts = [
        herl_policy_loss(old[s], new[s], adv[s], rm[s], he[s], cfg, batch_num_tokens=n)[0]
        for s in (slice(0, 3), slice(3, 6))
    ]
    assert (parts[0] + parts[1]).item() == pytest.approx(full.item(), rel=1e-6)


def test_aggregate_modes_and_empty_mask() -> None:
    lm = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mk = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert aggregate(lm, mk, "token-mean").item() == pytest.approx(2.5)
    assert aggregate(lm, mk, "token-sum").item() == pytest.approx(10.0)
    assert aggregate(lm, mk, "seq-mean-token-sum").item() == pytest.approx(5.0)
    assert aggregate(lm, mk, "seq-mean-token-mean").item() == pytest.approx(3.0)
    assert aggregate(lm, torch.zeros_like(mk), "token-mean").item() == 0.0
    with pytest.raises(ValueError):
        aggregate(lm, mk, "bogus")
    _, m = herl_policy_loss(
        torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2), None, LossConfig()
    )
    assert m["off_pg_loss"] == 0.0 and m["he_frac"] == 0.0
