"""The hindsight stage as one call, shared by the veRL plugin and the local engine.

    result = run_hindsight_stage(groups, generate_fn, score_fn, cfg, rng)

``generate_fn(prompts, sampling)`` is ONE batched generation call (the engine's rollout engine with
the current weights, i.e. π_old) and must return one text per prompt, in order.
``score_fn([RevisionItem(record, text, index), ...])`` scores each non-blank revision under its
group's ORIGINAL prompt record and returns one :class:`~herl.rewards.types.RewardResult` per item;
``index`` is the revision's position in the ``generate_fn`` call.

The stage itself is pure bookkeeping on text and floats (no torch), so its cost next to generation
and scoring is negligible; engines then apply the outcomes to tensors with :mod:`herl.core.tensors`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from herl.core.config import HindsightConfig, RevisionSampling
from herl.core.diagnose import collect_revision_jobs
from herl.core.incorporate import incorporate_group, untouched
from herl.core.prompts import ChatWrap
from herl.core.types import GroupOutcome, Revision, RevisionItem, RolloutGroup, StageResult
from herl.rewards.types import RewardResult, count_errors

GenerateFn = Callable[[list[str], RevisionSampling], Sequence[str]]
ScoreFn = Callable[[list[RevisionItem]], Sequence[RewardResult]]

METRIC_KEYS = (
    "groups",
    "groups_attempted",
    "prompts_attempted",
    "revisions_generated",
    "empty_revisions",
    "revision_errors",
    "success_rate",
    "over_prev_best",
    "tie_kept",
    "kept",
    "fallbacks",
    "skipped",
    "kept_per_prompt",
    "bonus_applied",
    "bonus_mean",
    "bonus_lost",
    "draft_score_mean",
    "revision_score_mean",
    "hindsight_prompt_chars_mean",
)


def slot_rng(seed: int, step: int) -> np.random.Generator:
    """The seeded slot generator for one training step: reproducible across restarts and engines."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(step) & 0xFFFFFFFF, 0x4E52])


def _zero_metrics(n_groups: int) -> dict[str, float]:
    m = dict.fromkeys(METRIC_KEYS, 0.0)
    m["groups"] = float(n_groups)
    return m


def run_hindsight_stage(
    groups: Sequence[RolloutGroup],
    generate_fn: GenerateFn,
    score_fn: ScoreFn,
    cfg: HindsightConfig,
    rng: np.random.Generator | None = None,
    *,
    chat_wrap: ChatWrap | None = None,
) -> StageResult:
    """Diagnose, revise (one batched generation), score, shape (BR) and incorporate.

    ``rng`` draws the replaced slots when ``cfg.seeded_slots`` (required then; see :func:`slot_rng`).
    With ``seeded_slots=False`` a fresh unseeded generator is used, reproducing the released code.
    Outcomes come back in input order, one per group.
    """
    if not cfg.enabled:
        return StageResult(
            outcomes=tuple(untouched(i, g) for i, g in enumerate(groups)), metrics=_zero_metrics(len(groups))
        )
    if cfg.incorporation == "replace":
        if cfg.seeded_slots:
            if rng is None:
                raise ValueError("seeded_slots=True needs an rng; pass slot_rng(seed, step)")
        else:
            rng = np.random.default_rng()
    slot_gen = rng if rng is not None else np.random.default_rng(0)  # append never draws

    jobs = collect_revision_jobs(groups, cfg, chat_wrap=chat_wrap)
    metrics = _zero_metrics(len(groups))
    if not jobs:
        return StageResult(outcomes=tuple(untouched(i, g) for i, g in enumerate(groups)), metrics=metrics)

    k = cfg.revisions_per_candidate
    prompts = [job.prompt for job in jobs for _ in range(k)]
    texts = list(generate_fn(prompts, RevisionSampling.from_config(cfg)))
    if len(texts) != len(prompts):
        raise ValueError(f"generate_fn returned {len(texts)} texts for {len(prompts)} prompts")
    owners = [jobs[i // k] for i in range(len(prompts))]
    # As released: revisions are stripped, and empty ones are dropped before scoring — they are never
    # kept, never shape their draft's reward, and a group whose revisions are all empty stays as sampled.
    texts = [text.strip() for text in texts]
    kept_idx = [i for i, text in enumerate(texts) if text]
    empty = len(texts) - len(kept_idx)
    items = [RevisionItem(groups[owners[i].group].record, texts[i], i) for i in kept_idx]
    results = list(score_fn(items)) if items else []
    if len(results) != len(items):
        raise ValueError(f"score_fn returned {len(results)} results for {len(items)} revisions")

    by_group: dict[int, list[Revision]] = {}
    success = 0
    draft_sum = 0.0
    rev_sum = 0.0
    for i, res in zip(kept_idx, results, strict=True):
        job = owners[i]
        rev = Revision(job=job, sample=i % k, text=texts[i], reward=res, index=i)
        by_group.setdefault(job.group, []).append(rev)
        draft = groups[job.group].rollouts[job.candidate].reward.dense
        draft_sum += draft
        rev_sum += res.dense
        success += res.dense > draft

    outcomes: list[GroupOutcome] = []
    over = tie = kept = fallbacks = skipped = lost = 0
    bonus_sum = 0.0
    bonus_n = 0
    for gi, group in enumerate(groups):
        revs = by_group.get(gi)
        if revs is None:
            outcomes.append(untouched(gi, group))
            continue
        outcome, beat = incorporate_group(gi, group, revs, cfg, slot_gen)
        outcomes.append(outcome)
        over += beat
        bonus_n += len(outcome.bonus)
        bonus_sum += sum(d for _, d in outcome.bonus)
        if outcome.kind == "revision":
            kept += 1
            tie += not beat
        elif outcome.kind == "duplicate-best":
            fallbacks += 1
        elif outcome.kind == "skipped":
            skipped += 1
        if outcome.slot is not None and any(ci == outcome.slot for ci, _ in outcome.bonus):
            lost += 1

    n_rev = len(texts)
    n_scored = max(len(results), 1)
    attempted = max(len(by_group), 1)
    metrics.update(
        groups_attempted=float(len(by_group)),
        prompts_attempted=float(len(jobs)),
        revisions_generated=float(n_rev),
        empty_revisions=float(empty),
        revision_errors=float(count_errors(results)),
        success_rate=success / n_rev,
        over_prev_best=over / attempted,
        tie_kept=float(tie),
        kept=float(kept),
        fallbacks=float(fallbacks),
        skipped=float(skipped),
        kept_per_prompt=kept / len(jobs),
        bonus_applied=float(bonus_n),
        bonus_mean=bonus_sum / bonus_n if bonus_n else 0.0,
        bonus_lost=float(lost),
        draft_score_mean=draft_sum / n_scored,
        revision_score_mean=rev_sum / n_scored,
        hindsight_prompt_chars_mean=sum(len(j.prompt) for j in jobs) / len(jobs),
    )
    return StageResult(outcomes=tuple(outcomes), metrics=metrics, jobs=tuple(jobs))
