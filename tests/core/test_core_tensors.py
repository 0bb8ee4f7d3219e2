"""Tensor helpers: BR spreading, he_mask, HE response tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from core_factory import group, scored
from hypothesis import given, settings
from hypothesis import strategies as st

from herl.core import (
    HindsightConfig,
    RevisionSampling,
    build_he_mask,
    he_response_tokens,
    outcome_bonus_rows,
    run_hindsight_stage,
    spread_bonus,
)


def test_spread_bonus_hand_computed() -> None:
    tr = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [0, 0, 0, 0]])
    out = spread_bonus(tr, mask, [0, 1, 2], [0.2, -0.3, 0.5])
    assert torch.allclose(out[0], torch.tensor([0.05, 0.05, 0.05, 1.05]))
    assert torch.allclose(out[1], torch.tensor([-0.1, -0.1, 0.9, 0.0]))
    assert torch.equal(out[2], tr[2])  # no response tokens: unchanged
    assert torch.equal(tr[0], torch.tensor([0.0, 0.0, 0.0, 1.0]))  # input not mutated
    twice = spread_bonus(tr, mask, [0, 0], [0.2, 0.2])
    assert twice[0].sum().item() == pytest.approx(1.4)
    assert torch.equal(spread_bonus(tr, mask, [], []), tr)
    with pytest.raises(ValueError):
        spread_bonus(tr, mask, [0, 1], [0.1])


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 6), st.integers(1, 12), st.data())
def test_spread_bonus_moves_sum_by_exactly_delta(b: int, t: int, data: st.DataObject) -> None:
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 10_000)))
    lengths = data.draw(st.lists(st.integers(1, t), min_size=b, max_size=b))
    mask = (torch.arange(t).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)).long()
    tr = torch.rand(b, t, generator=gen, dtype=torch.float64) * mask
    rows = data.draw(st.lists(st.integers(0, b - 1), min_size=1, max_size=b, unique=True))
    deltas = data.draw(st.lists(st.floats(-1, 1, allow_nan=False), min_size=len(rows), max_size=len(rows)))
    out = spread_bonus(tr, mask, rows, deltas)
    want = tr.sum(-1).clone()
    for r, d in zip(rows, deltas, strict=True):
        want[r] += d
    assert torch.allclose(out.sum(-1), want, atol=1e-12)
    assert torch.equal(out * (1 - mask), tr * (1 - mask))  # nothing lands outside the response


def test_build_he_mask() -> None:
    rm = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0]])
    he = build_he_mask(rm, [1, 2])
    assert torch.equal(he, torch.tensor([[0, 0, 0], [1, 1, 1], [1, 0, 0]]))
    assert he.dtype == rm.dtype
    assert torch.equal(build_he_mask(rm, []), torch.zeros_like(rm))


def test_he_response_tokens() -> None:
    ids, m = he_response_tokens([5, 6, 7], 5, eos_id=2, pad_id=0)
    assert ids.tolist() == [5, 6, 7, 2, 0] and m.tolist() == [1, 1, 1, 1, 0]
    ids, m = he_response_tokens([5, 6, 7, 8, 9, 10], 5, eos_id=2, pad_id=0)
    assert ids.tolist() == [5, 6, 7, 8, 9] and m.tolist() == [1] * 5  # truncated: no room for EOS
    ids, m = he_response_tokens([5, 6, 7], 5, eos_id=2, pad_id=0, append_eos=False)
    assert ids.tolist() == [5, 6, 7, 0, 0] and m.tolist() == [1, 1, 1, 0, 0]
    ids, m = he_response_tokens([5, 2], 5, eos_id=2, pad_id=0)
    assert ids.tolist() == [5, 2, 0, 0, 0] and m.tolist() == [1, 1, 0, 0, 0]  # EOS not doubled
    ids, m = he_response_tokens([], 3, eos_id=2, pad_id=0)
    assert ids.tolist() == [2, 0, 0] and m.tolist() == [1, 0, 0]
    with pytest.raises(ValueError):
        he_response_tokens([1], 0, eos_id=2, pad_id=0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), min_size=1, max_size=6), min_size=1, max_size=5
    ),
    st.sampled_from(["replace", "append"]),
    st.integers(0, 2**31),
)
def test_he_mask_only_on_he_rows_response_tokens(
    score_lists: list[list[float]], incorporation: str, seed: int
) -> None:
    """Simulate an engine: lay the groups out as rows, apply outcomes, build the he_mask."""
    rnd = np.random.default_rng(seed)
    groups = [group(f"u{g}", [scored(s, int(s * 4)) for s in ss]) for g, ss in enumerate(score_lists)]
    t = 8

    def gen(prompts: list[str], sampling: RevisionSampling) -> list[str]:
        return [f"revision score={rnd.choice([0.0, 0.5, 1.0])}" for _ in prompts]

    def score(items: list) -> list:
        return [scored(float(it.text.split("=")[1])) for it in items]

    res = run_hindsight_stage(
        groups,
        gen,
        score,
        HindsightConfig(incorporation=incorporation),  # type: ignore[arg-type]
        np.random.default_rng(seed),
    )
    rows: list[list[int]] = []  # batch row of each group member (new layout)
    masks: list[torch.Tensor] = []
    he_rows: list[int] = []
    for g, oc in zip(groups, res.outcomes, strict=True):
        n = len(oc.rewards)
        idx = list(range(len(masks), len(masks) + n))
        rows.append(idx)
        for _ in range(n):
            length = int(rnd.integers(1, t + 1))
            masks.append((torch.arange(t) < length).long())
        if oc.he_index is not None:
            _, he_m = he_response_tokens(list(range(3, 3 + int(rnd.integers(0, 10)))), t, eos_id=2, pad_id=0)
            masks[idx[oc.he_index]] = he_m
            he_rows.append(idx[oc.he_index])
        assert n == len(g.rollouts) + (1 if incorporation == "append" and oc.row is not None else 0)
    rm = torch.stack(masks)
    he = build_he_mask(rm, he_rows)
    for r in range(rm.shape[0]):
        if r in he_rows:
            assert torch.equal(he[r], rm[r])
        else:
            assert he[r].sum() == 0
    assert torch.all(he <= rm)
    brow, bdel = outcome_bonus_rows(res.outcomes, rows)
    assert len(brow) == sum(len(o.bonus) for o in res.outcomes) == len(bdel)
