"""Stage 1, "Sample & Diagnose": which groups to revise and which rollouts are the candidates.

A group (one prompt) is revised only if its best selection score (``RewardResult.dense``) is below
``threshold``. Its candidates are all rollouts tied at that best score, ordered by the number of
constraints met (most first; ties keep rollout order), capped at ``candidate_limit``. Released
code compares ties with a 1e-6 tolerance; so do we.
"""

from __future__ import annotations

from collections.abc import Sequence

from herl.core.config import HindsightConfig
from herl.core.prompts import ChatWrap, build_hindsight_prompt, choose_template
from herl.core.types import RevisionJob, RolloutGroup
from herl.rewards.types import RewardResult

TIE_TOL = 1e-6


def count_met(result: RewardResult) -> int:
    """Number of constraints / rubric items judged as met (the candidate ordering key)."""
    return sum(1 for c in result.constraints if c.followed is True)


def group_best(group: RolloutGroup) -> float:
    """Best selection score of a group; -inf for an empty group."""
    return max((ro.reward.dense for ro in group.rollouts), default=float("-inf"))


def ranked_best(group: RolloutGroup) -> list[int]:
    """Indices tied at the group best, most constraints met first (stable).

    The first entry is also the "best original" that the duplicate-best fallback copies: the
    released code ranks originals by (dense, #met) descending with a stable sort.
    """
    if not group.rollouts:
        return []
    dense = [ro.reward.dense for ro in group.rollouts]
    best = max(dense)
    tied = [i for i, s in enumerate(dense) if abs(s - best) < TIE_TOL]
    tied.sort(key=lambda i: count_met(group.rollouts[i].reward), reverse=True)
    return tied


def select_candidates(group: RolloutGroup, cfg: HindsightConfig) -> list[int]:
    """Candidate rollout indices of one group; empty when the group is skipped (solved or empty)."""
    if not group.rollouts or group_best(group) >= cfg.threshold:
        return []
    return ranked_best(group)[: cfg.candidate_limit]


def collect_revision_jobs(
    groups: Sequence[RolloutGroup],
    cfg: HindsightConfig,
    *,
    chat_wrap: ChatWrap | None = None,
) -> list[RevisionJob]:
    """One revision job per candidate of every failing group, in group then candidate order."""
    if cfg.chat_template and chat_wrap is None:
        raise ValueError("chat_template=True needs a chat_wrap callable (the engine's chat template)")
    wrap = chat_wrap if cfg.chat_template else None
    jobs: list[RevisionJob] = []
    for gi, group in enumerate(groups):
        candidates = select_candidates(group, cfg)
        if not candidates:
            continue
        best = group_best(group)
        for ci in candidates:
            ro = group.rollouts[ci]
            template = choose_template(cfg, ro.reward)
            prompt = build_hindsight_prompt(group.prompt, ro.response, ro.reward, template, chat_wrap=wrap)
            jobs.append(
                RevisionJob(
                    group=gi, uid=group.uid, candidate=ci, prompt=prompt, template=template, best_score=best
                )
            )
    return jobs
