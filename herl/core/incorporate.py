"""Stage 3, "Hindsight Experience Incorporation", plus the bonus reward (BR), at the text level.

Order per group, as released:
1. BR: each revised candidate i gets Δ_i = α(r̃_i − r_i), r̃_i the best of its revisions (training
   rewards, i.e. scores). Negative Δ is allowed.
2. Pick the revision to keep: the best one that strictly beats the group's best selection score;
   else one that ties it; else the fallback (duplicate-best: a copy of the best original with its
   prompt and its shaped reward and no he_mask; or skip).
3. Write it: ``replace`` one uniformly drawn slot (possibly the best original, possibly a shaped
   candidate whose bonus is then lost) or ``append`` it as row G.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from herl.core.config import HindsightConfig
from herl.core.diagnose import TIE_TOL, ranked_best
from herl.core.types import GroupOutcome, NewRow, Revision, RolloutGroup

BONUS_EPS = 1e-12


def bonus_deltas(group: RolloutGroup, revisions: Sequence[Revision], alpha: float) -> list[tuple[int, float]]:
    """BR Δ per revised candidate, in order of first revision; zero Δ are dropped (as released)."""
    best_by_cand: dict[int, float] = {}
    for rev in revisions:
        ci = rev.job.candidate
        prev = best_by_cand.get(ci)
        if prev is None or rev.r > prev:
            best_by_cand[ci] = rev.r
    out: list[tuple[int, float]] = []
    for ci, r_rev in best_by_cand.items():
        r = group.rollouts[ci].r
        delta = alpha * (r_rev - r)
        if abs(delta) >= BONUS_EPS:
            out.append((ci, delta))
    return out


def choose_revision(revisions: Sequence[Revision], best_score: float) -> tuple[Revision | None, bool]:
    """The revision to keep and whether it strictly beats the group best.

    Ranked by selection score (dense) descending, stable, so the earliest of equal revisions wins.
    """
    if not revisions:
        return None, False
    ranked = sorted(revisions, key=lambda rv: rv.selection, reverse=True)
    top = ranked[0]
    if top.selection > best_score + TIE_TOL:
        return top, True
    if top.selection >= best_score - TIE_TOL:
        return top, False
    return None, False


def draw_slot(rng: np.random.Generator, group_size: int) -> int:
    """A uniformly drawn slot in [0, group_size)."""
    return int(rng.integers(group_size))


def incorporate_group(
    gi: int,
    group: RolloutGroup,
    revisions: Sequence[Revision],
    cfg: HindsightConfig,
    rng: np.random.Generator,
) -> tuple[GroupOutcome, bool]:
    """Decide one attempted group's outcome. Returns (outcome, kept revision strictly beat best)."""
    rewards = [ro.r for ro in group.rollouts]
    bonus = bonus_deltas(group, revisions, cfg.bonus_alpha) if cfg.bonus_active else []
    for ci, delta in bonus:
        rewards[ci] += delta

    best = max(ro.reward.dense for ro in group.rollouts)
    chosen, over = choose_revision(revisions, best)
    row: NewRow | None
    if chosen is not None:
        kind = "revision"
        if cfg.train_under == "hindsight":
            prompt, original = chosen.job.prompt, False
        else:
            prompt, original = group.prompt, True
        row = NewRow(
            prompt=prompt,
            response=chosen.text,
            reward=chosen.r,
            result=chosen.reward,
            is_he=True,
            prompt_is_original=original,
            source=None,
            append_eos=cfg.append_eos,
            revision=chosen,
        )
    elif cfg.fallback == "duplicate-best":
        kind = "duplicate-best"
        src = ranked_best(group)[0]
        ro = group.rollouts[src]
        row = NewRow(
            prompt=group.prompt,
            response=ro.response,
            reward=rewards[src],
            result=ro.reward,
            is_he=False,
            prompt_is_original=True,
            source=src,
            append_eos=False,
        )
    else:
        kind, row = "skipped", None

    slot: int | None = None
    if row is not None:
        if cfg.incorporation == "append":
            slot = len(rewards)
            rewards.append(row.reward)
        else:
            slot = draw_slot(rng, len(rewards))
            rewards[slot] = row.reward
    outcome = GroupOutcome(
        group=gi,
        uid=group.uid,
        kind=kind,
        slot=slot,
        row=row,
        bonus=tuple(bonus),
        rewards=tuple(rewards),
        revisions=tuple(revisions),
    )
    return outcome, over


def untouched(gi: int, group: RolloutGroup) -> GroupOutcome:
    """Outcome of a group the stage did not attempt (solved, empty or stage disabled)."""
    return GroupOutcome(
        group=gi,
        uid=group.uid,
        kind="not-attempted",
        slot=None,
        row=None,
        bonus=(),
        rewards=tuple(ro.r for ro in group.rollouts),
    )
