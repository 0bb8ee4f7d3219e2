"""Builders of small reward results and groups for the core tests."""

from __future__ import annotations

from collections.abc import Sequence

from herl.core import Rollout, RolloutGroup
from herl.rewards.types import ConstraintVerdict, RewardResult


def result(
    flags: Sequence[bool | None],
    *,
    dense: float | None = None,
    weights: Sequence[float] | None = None,
    data_source: str = "ifeval",
    descs: Sequence[str] | None = None,
) -> RewardResult:
    """An IF-style result: score = fraction of True flags (weighted when weights are given)."""
    ws = list(weights) if weights is not None else [1.0] * len(flags)
    cons = tuple(
        ConstraintVerdict(
            id=f"c{i}", description=(descs[i] if descs else f"rule {i + 1}"), followed=f, weight=ws[i]
        )
        for i, f in enumerate(flags)
    )
    tot = sum(max(w, 0.0) for w in ws)
    score = sum(max(w, 0.0) for w, f in zip(ws, flags, strict=True) if f is True) / tot if tot else 0.0
    return RewardResult(
        score=score,
        dense=score if dense is None else dense,
        all_met=all(f is True for f in flags),
        constraints=cons,
        data_source=data_source,
    )


def scored(score: float, met: int = 0, n: int = 4, *, dense: float | None = None) -> RewardResult:
    """A result with an explicit score and `met` of `n` constraints met (flags don't drive score)."""
    flags = [i < met for i in range(n)]
    cons = tuple(
        ConstraintVerdict(id=f"c{i}", description=f"rule {i + 1}", followed=f) for i, f in enumerate(flags)
    )
    return RewardResult(
        score=score,
        dense=score if dense is None else dense,
        all_met=score >= 1.0,
        constraints=cons,
        data_source="ifeval",
    )


def group(uid: str, results: Sequence[RewardResult], prompt: str = "Write a poem.") -> RolloutGroup:
    return RolloutGroup(
        uid=uid,
        prompt=prompt,
        rollouts=tuple(Rollout(response=f"{uid}-draft-{i}", reward=r) for i, r in enumerate(results)),
        record={"uid": uid},
    )
