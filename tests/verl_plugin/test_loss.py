"""The HeRL loss inside veRL: registry, parity with veRL's vanilla PPO, and the he_mask path.

Everything here runs veRL's real code (core_algos, workers/utils/losses.ppo_loss) on CPU tensors laid
out the way veRL's actor hands them to the outer loss (nested micro-batch TensorDict).
"""

from __future__ import annotations

import functools
import pickle
from importlib.metadata import entry_points

import pytest
import torch
from tensordict import TensorDict
from verl.trainer.ppo import core_algos
from verl.utils import tensordict_utils as tu
from verl.workers.config import FSDPActorConfig, PolicyLossConfig
from verl.workers.utils.losses import ppo_loss

from herl.verl_plugin.loss import (
    LOSS_MODE,
    HeRLLossParams,
    herl_mixpolicy_loss,
    herl_ppo_loss,
    padded_he_mask,
)


def test_entry_point_group_is_verl_plugins():
    eps = [ep for ep in entry_points(group="verl.plugins") if ep.name == "herl"]
    assert eps, "herl is not installed with its verl.plugins entry point (pip install -e .)"
    assert eps[0].value == "herl.verl_plugin"


def test_import_verl_registers_loss_in_fresh_process():
    """The REAL path: a new interpreter, `import verl` only, and the loss is in veRL's registry."""
    import subprocess
    import sys

    code = (
        "import verl\n"
        "from verl.trainer.ppo import core_algos\n"
        "fn = core_algos.get_policy_loss_fn('herl_mixpolicy')\n"
        "print(fn.__module__, fn.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "herl.verl_plugin.loss herl_mixpolicy_loss"


def test_loss_is_registered_here():
    assert core_algos.get_policy_loss_fn(LOSS_MODE) is herl_mixpolicy_loss


def _actor_config(loss_mode: str, **kw) -> FSDPActorConfig:
    return FSDPActorConfig(
        strategy="fsdp",
        ppo_mini_batch_size=4,
        ppo_micro_batch_size_per_gpu=2,
        rollout_n=1,
        use_kl_loss=False,
        policy_loss=PolicyLossConfig(loss_mode=loss_mode),
        **kw,
    )


def _tensors(seed: int = 0, b: int = 4, length: int = 7):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(b, length, generator=g) * 2
    new = old + (torch.rand(b, length, generator=g) - 0.5) * 0.8  # ratios spread across the clip range
    adv = torch.randn(b, 1, generator=g).expand(b, length).clone()
    mask = torch.ones(b, length)
    mask[1, 5:] = 0
    mask[3, 3:] = 0
    return old, new, adv, mask


@pytest.mark.parametrize("agg", ["token-mean", "token-sum", "seq-mean-token-mean", "seq-mean-token-sum"])
def test_on_policy_part_equals_verl_vanilla(agg):
    """he_mask = 0: herl_mixpolicy gives exactly veRL's compute_policy_loss_vanilla (value and metrics)."""
    old, new, adv, mask = _tensors()
    cfg_v = _actor_config("vanilla", loss_agg_mode=agg)
    ref_loss, ref_m = core_algos.compute_policy_loss_vanilla(
        old, new, adv, mask, loss_agg_mode=agg, config=cfg_v
    )

    cfg_h = _actor_config(LOSS_MODE, loss_agg_mode=agg)
    td = _micro_batch(old, new, adv, mask, he_rows=[])
    from herl.verl_plugin import loss as L

    token = L._CURRENT.set(L._MicroBatchContext(he_mask=padded_he_mask(td), params=HeRLLossParams(gamma=1.0)))
    try:
        got_loss, got_m = herl_mixpolicy_loss(old, new, adv, mask, loss_agg_mode=agg, config=cfg_h)
    finally:
        L._CURRENT.reset(token)
    torch.testing.assert_close(got_loss, ref_loss, rtol=1e-6, atol=1e-7)
    for k in ("actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower"):
        assert got_m[k] == pytest.approx(ref_m[k], rel=1e-6, abs=1e-7), k
    assert got_m["actor/off_pg_loss"] == 0.0 and got_m["actor/he_frac"] == 0.0


def test_registered_loss_refuses_without_outer_loss():
    old, new, adv, mask = _tensors()
    with pytest.raises(RuntimeError, match="outer loss"):
        herl_mixpolicy_loss(old, new, adv, mask, config=_actor_config(LOSS_MODE))


# ------------------------------------------------------------- the outer loss on a veRL micro-batch


def _micro_batch(old, new, adv, mask, he_rows, prompt_len: int = 3, dp_size: int = 1):
    """A micro-batch TensorDict as veRL's engine hands it to the outer loss (nested, no padding)."""
    rows = []
    for i in range(old.shape[0]):
        n = int(mask[i].sum())
        he = torch.zeros(n, dtype=torch.int64)
        if i in he_rows:
            he[:] = 1
        rows.append(
            {
                "prompts": torch.arange(1, prompt_len + 1),
                "responses": torch.arange(10, 10 + n),
                "response_mask": torch.ones(n, dtype=torch.int64),
                "old_log_probs": old[i, :n],
                "advantages": adv[i, :n],
                "he_mask": he,
            }
        )
    td = tu.list_of_dict_to_tensordict(rows) if hasattr(tu, "list_of_dict_to_tensordict") else None
    # force the jagged layout for every per-token field, like TransferQueue's variable-length rows
    for k in ("prompts", "responses", "response_mask", "old_log_probs", "advantages", "he_mask"):
        td[k] = torch.nested.as_nested_tensor([r[k] for r in rows], layout=torch.jagged)
    # veRL hands every rank the GLOBAL counts; here each of dp_size ranks holds a batch like this one
    tu.assign_non_tensor(
        td,
        dp_size=dp_size,
        batch_num_tokens=int(mask.sum()) * dp_size,
        global_batch_size=old.shape[0] * dp_size,
    )
    return td


def _model_output(new, mask, prompt_len: int = 3):
    """log_probs over whole sequences (prompt + response), nested, shifted the way veRL slices them."""
    seqs = []
    for i in range(new.shape[0]):
        n = int(mask[i].sum())
        full = torch.zeros(prompt_len + n)
        full[prompt_len - 1 : prompt_len - 1 + n] = new[i, :n]
        seqs.append(full)
    return {"log_probs": torch.nested.as_nested_tensor(seqs, layout=torch.jagged)}


def test_outer_loss_equals_verl_ppo_loss_without_he_rows():
    old, new, adv, mask = _tensors(1)
    td = _micro_batch(old, new, adv, mask, he_rows=[])
    out = _model_output(new, mask)
    ref, ref_m = ppo_loss(_actor_config("vanilla"), out, td)
    got, got_m = herl_ppo_loss(_actor_config(LOSS_MODE), out, td, params=HeRLLossParams(gamma=1.0))
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-7)
    assert _val(got_m["actor/pg_loss"]) == pytest.approx(float(ref))
    assert _val(got_m["actor/pg_clipfrac"]) == pytest.approx(_val(ref_m["actor/pg_clipfrac"]))


@pytest.mark.parametrize("agg", ["token-mean", "token-sum", "seq-mean-token-mean", "seq-mean-token-sum"])
@pytest.mark.parametrize("dp_size", [1, 2, 4])
def test_outer_loss_scales_like_verl_under_data_parallel(agg, dp_size):
    """veRL's agg_loss multiplies every mode by dp_size (DDP/FSDP then AVERAGE the ranks' gradients);
    token-sum has no global count to divide by, so the factor must be applied as such."""
    old, new, adv, mask = _tensors(5)
    td = _micro_batch(old, new, adv, mask, he_rows=[], dp_size=dp_size)
    out = _model_output(new, mask)
    ref, _ = ppo_loss(_actor_config("vanilla", loss_agg_mode=agg), out, td)
    got, _ = herl_ppo_loss(_actor_config(LOSS_MODE, loss_agg_mode=agg), out, td, params=HeRLLossParams())
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-7)
    # and with HE rows: the same dp factor on the mixed loss
    td_he = _micro_batch(old, new, adv, mask, he_rows=[1], dp_size=dp_size)
    td_one = _micro_batch(old, new, adv, mask, he_rows=[1], dp_size=1)
    cfg = _actor_config(LOSS_MODE, loss_agg_mode=agg)
    got_he, _ = herl_ppo_loss(cfg, out, td_he, params=HeRLLossParams())
    one, _ = herl_ppo_loss(_actor_config(LOSS_MODE, loss_agg_mode=agg), out, td_one, params=HeRLLossParams())
    # the global counts are dp × the local ones: the means come out as on one rank, token-sum dp × it
    scale = dp_size if agg == "token-sum" else 1.0
    torch.testing.assert_close(got_he, one * scale, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("gamma", [1.0, 0.1])
def test_outer_loss_applies_shaped_loss_on_he_rows(gamma):
    """Rows with he_mask get −A·ρ/(ρ+γ) (no clip); the others keep PPO clip; one token-mean over all."""
    old, new, adv, mask = _tensors(2)
    he_rows = [0, 2]
    td = _micro_batch(old, new, adv, mask, he_rows=he_rows)
    got, metrics = herl_ppo_loss(
        _actor_config(LOSS_MODE), _model_output(new, mask), td, params=HeRLLossParams(gamma=gamma)
    )

    ratio = torch.exp(torch.clamp(new - old, -20, 20))
    clipped = torch.maximum(-adv * ratio, -adv * torch.clamp(ratio, 0.8, 1.2))
    ppo = torch.where(adv < 0, torch.minimum(-adv * 3.0, clipped), clipped)
    shaped = -adv * ratio / (ratio + gamma)
    he = torch.zeros_like(mask)
    he[he_rows] = 1
    per_tok = torch.where(he.bool(), shaped, ppo) * mask
    expected = per_tok.sum() / mask.sum()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    he_frac = (he * mask).sum() / mask.sum()
    assert _val(metrics["actor/he_frac"]) == pytest.approx(float(he_frac), rel=1e-5)
    assert _val(metrics["actor/off_pg_loss"]) != 0.0


def _val(m):
    """A veRL Metric (or a plain number) as a float."""
    return float(m.aggregate()) if hasattr(m, "aggregate") else float(m)


def test_padding_row_with_copied_he_mask_is_harmless():
    """veRL's synthetic padding rows copy row 0's fields: a longer he_mask on a masked-out row changes nothing."""
    old, new, adv, mask = _tensors(3)
    td = _micro_batch(old, new, adv, mask, he_rows=[])
    # row 3 has 3 response tokens; give it a 7-long he_mask of ones (as a copied template would)
    rows_he = [torch.zeros(int(mask[i].sum()), dtype=torch.int64) for i in range(4)]
    rows_he[3] = torch.ones(7, dtype=torch.int64)
    td["he_mask"] = torch.nested.as_nested_tensor(rows_he, layout=torch.jagged)
    he = padded_he_mask(td)
    assert he.shape == (4, 7)
    assert he[3, 3:].sum() == 0  # cropped to the row's real response tokens
    assert he[:3].sum() == 0


def test_outer_loss_partial_pickles_for_ray():
    fn = functools.partial(herl_ppo_loss, config=_actor_config(LOSS_MODE), params=HeRLLossParams(gamma=0.1))
    back = pickle.loads(pickle.dumps(fn))
    assert back.keywords["params"].gamma == 0.1
    assert back.func is herl_ppo_loss


def test_context_is_reset_after_outer_loss():
    from herl.verl_plugin import loss as L

    old, new, adv, mask = _tensors(4)
    td = _micro_batch(old, new, adv, mask, he_rows=[1])
    herl_ppo_loss(_actor_config(LOSS_MODE), _model_output(new, mask), td)
    assert L._CURRENT.get() is None


def test_micro_batch_helper_shapes():
    old, new, adv, mask = _tensors()
    td = _micro_batch(old, new, adv, mask, he_rows=[0])
    assert isinstance(td, TensorDict)
    assert td["he_mask"].is_nested
    he = padded_he_mask(td)
    assert he.shape == (4, 7) and he[0].sum() == mask[0].sum() and he[1:].sum() == 0
