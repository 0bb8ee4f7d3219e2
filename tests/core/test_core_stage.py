"""Sample & diagnose, bonus reward, incorporation and the stage orchestration."""

from __future__ import annotations

import numpy as np
import pytest
from core_factory import group, scored
from hypothesis import given, settings
from hypothesis import strategies as st

from herl.core import (
    HindsightConfig,
    RevisionSampling,
    RolloutGroup,
    collect_revision_jobs,
    ranked_best,
    run_hindsight_stage,
    select_candidates,
    slot_rng,
)
from herl.core.types import RevisionItem, Rollout
from herl.rewards.types import RewardResult


class FakeEngine:
    """generate_fn answers each prompt from a queue of scores; score_fn reads the score back."""

    def __init__(self, plan: dict[str, list[float]] | None = None, default: float = 0.0) -> None:
        self.plan = {k: list(v) for k, v in (plan or {}).items()}
        self.default = default
        self.calls: list[tuple[list[str], RevisionSampling]] = []
        self.scored: list[RevisionItem] = []

    def generate(self, prompts: list[str], sampling: RevisionSampling) -> list[str]:
        self.calls.append((list(prompts), sampling))
        out = []
        for p in prompts:
            key = next((k for k in self.plan if k in p), None)
            s = self.plan[key].pop(0) if key is not None else self.default
            out.append(f"revision score={s}")
        return out

    def score(self, items: list[RevisionItem]) -> list[RewardResult]:
        self.scored.extend(items)
        return [
            scored(float(it.text.split("=")[1]), met=int(float(it.text.split("=")[1]) * 4)) for it in items
        ]


def _rng(seed: int = 7) -> np.random.Generator:
    return slot_rng(seed, 3)


# ---------------------------------------------------------------- diagnose


def test_candidates_tied_best_ordered_by_met_then_index() -> None:
    g = group("g", [scored(0.5, 2), scored(0.75, 2), scored(0.75, 3), scored(0.25, 1), scored(0.75, 2)])
    assert ranked_best(g) == [2, 1, 4]
    assert select_candidates(g, HindsightConfig()) == [2, 1, 4]
    assert select_candidates(g, HindsightConfig(candidate_limit=2)) == [2, 1]


def test_threshold_and_dense_drive_selection() -> None:
    solved = group("s", [scored(1.0, 4), scored(0.5, 2)])
    assert select_candidates(solved, HindsightConfig()) == []
    g = group("g", [scored(0.75, 3), scored(0.5, 2)])
    assert select_candidates(g, HindsightConfig(threshold=0.75)) == []
    assert select_candidates(g, HindsightConfig(threshold=0.8)) == [0]
    # a repetitive rollout keeps score 0.8 but dense 0: it is not a candidate
    rep = group("r", [scored(0.8, 3, dense=0.0), scored(0.5, 2)])
    assert select_candidates(rep, HindsightConfig()) == [1]
    assert select_candidates(RolloutGroup(uid="e", prompt="p", rollouts=()), HindsightConfig()) == []


def test_jobs_carry_prompt_and_template() -> None:
    g = group("g", [scored(0.5, 2), scored(0.5, 1)], prompt="Say hi.")
    jobs = collect_revision_jobs([g], HindsightConfig())
    assert [(j.group, j.candidate, j.template, j.best_score) for j in jobs] == [
        (0, 0, "constraint", 0.5),
        (0, 1, "constraint", 0.5),
    ]
    assert "Say hi." in jobs[0].prompt and "g-draft-0" in jobs[0].prompt
    with pytest.raises(ValueError, match="chat_wrap"):
        collect_revision_jobs([g], HindsightConfig(chat_template=True))


# ---------------------------------------------------------------- hand-computed stage


def _batch() -> list[RolloutGroup]:
    g0 = group("g0", [scored(0.5, 2), scored(0.75, 2), scored(0.75, 3), scored(0.25, 1)])
    g1 = group("g1", [scored(1.0, 4), scored(0.5, 2)])
    g2 = group("g2", [scored(0.5, 1), scored(0.5, 2)])
    return [g0, g1, g2]


def _plan() -> dict[str, list[float]]:
    return {"g0-draft-2": [1.0], "g0-draft-1": [0.5], "g2-draft-1": [0.25], "g2-draft-0": [0.25]}


def test_stage_hand_computed_replace() -> None:
    groups = _batch()
    eng = FakeEngine(_plan())
    res = run_hindsight_stage(groups, eng.generate, eng.score, HindsightConfig(), _rng())

    assert len(eng.calls) == 1  # ONE batched call
    prompts, sampling = eng.calls[0]
    assert len(prompts) == 4
    assert (sampling.temperature, sampling.top_p, sampling.max_tokens) == (0.3, 1.0, None)
    assert [it.record["uid"] for it in eng.scored] == ["g0", "g0", "g2", "g2"]  # scored under the original

    o0, o1, o2 = res.outcomes
    expected_slots = slot_rng(7, 3)
    s0 = int(expected_slots.integers(4))
    s2 = int(expected_slots.integers(2))

    assert o0.kind == "revision" and o0.slot == s0
    assert o0.bonus == (pytest.approx((2, 0.0125)), pytest.approx((1, -0.0125)))
    shaped = [0.5, 0.7375, 0.7625, 0.25]
    shaped[s0] = 1.0
    assert o0.rewards == pytest.approx(tuple(shaped))
    assert o0.row is not None and o0.row.is_he and o0.row.reward == 1.0
    assert o0.row.prompt == res.jobs[0].prompt and "g0-draft-2" in o0.row.prompt
    assert not o0.row.prompt_is_original and o0.row.append_eos and o0.he_index == s0

    assert o1.kind == "not-attempted" and o1.row is None and o1.rewards == (1.0, 0.5)

    assert o2.kind == "duplicate-best" and o2.slot == s2
    assert o2.row is not None and not o2.row.is_he and o2.row.source == 1
    assert o2.row.prompt == "Write a poem." and o2.row.prompt_is_original
    assert o2.row.reward == pytest.approx(0.4875)  # keeps the shaped reward
    assert o2.rewards == pytest.approx((0.4875, 0.4875))
    assert o2.he_index is None

    m = res.metrics
    assert (m["groups"], m["groups_attempted"], m["prompts_attempted"], m["revisions_generated"]) == (
        3,
        2,
        4,
        4,
    )
    assert m["success_rate"] == pytest.approx(0.25)
    assert m["over_prev_best"] == pytest.approx(0.5)
    assert (m["kept"], m["fallbacks"], m["skipped"], m["tie_kept"]) == (1, 1, 0, 0)
    assert m["kept_per_prompt"] == pytest.approx(0.25)
    assert m["bonus_applied"] == 4 and m["bonus_mean"] == pytest.approx(-0.00625)
    assert m["draft_score_mean"] == pytest.approx(0.625) and m["revision_score_mean"] == pytest.approx(0.5)


def test_tie_is_kept_and_skip_fallback() -> None:
    g = group("g", [scored(0.5, 2), scored(0.25, 1)])
    eng = FakeEngine({"g-draft-0": [0.5]})
    res = run_hindsight_stage([g], eng.generate, eng.score, HindsightConfig(), _rng())
    assert (
        res.outcomes[0].kind == "revision"
        and res.metrics["tie_kept"] == 1
        and res.metrics["over_prev_best"] == 0
    )

    eng = FakeEngine({"g-draft-0": [0.25]})
    res = run_hindsight_stage([g], eng.generate, eng.score, HindsightConfig(fallback="skip"), _rng())
    oc = res.outcomes[0]
    assert oc.kind == "skipped" and oc.slot is None and oc.row is None
    assert oc.rewards == pytest.approx((0.5 + 0.05 * (0.25 - 0.5), 0.25))  # BR still applies
    assert res.metrics["skipped"] == 1


def test_append_grows_group_and_needs_no_rng() -> None:
    groups = _batch()
    eng = FakeEngine(_plan())
    res = run_hindsight_stage(groups, eng.generate, eng.score, HindsightConfig(incorporation="append"), None)
    o0, _, o2 = res.outcomes
    assert o0.slot == 4 and o0.rewards == pytest.approx((0.5, 0.7375, 0.7625, 0.25, 1.0))
    assert o2.slot == 2 and o2.rewards == pytest.approx((0.4875, 0.4875, 0.4875))


def test_naive_he_trains_under_instruction() -> None:
    eng = FakeEngine(_plan())
    res = run_hindsight_stage(
        _batch(), eng.generate, eng.score, HindsightConfig(train_under="instruction"), _rng()
    )
    row = res.outcomes[0].row
    assert row is not None and row.is_he and row.prompt == "Write a poem." and row.prompt_is_original


def test_bonus_disabled_and_best_of_k_revisions() -> None:
    eng = FakeEngine(_plan())
    res = run_hindsight_stage(_batch(), eng.generate, eng.score, HindsightConfig(bonus_enabled=False), _rng())
    assert all(o.bonus == () for o in res.outcomes) and res.metrics["bonus_mean"] == 0

    g = group("g", [scored(0.5, 2), scored(0.25, 1)])
    eng = FakeEngine({"g-draft-0": [0.25, 0.75, 0.0]})
    res = run_hindsight_stage(
        [g], eng.generate, eng.score, HindsightConfig(revisions_per_candidate=3), _rng()
    )
    assert len(eng.calls[0][0]) == 3 and len(set(eng.calls[0][0])) == 1
    oc = res.outcomes[0]
    assert oc.bonus == (pytest.approx((0, 0.05 * (0.75 - 0.5))),)
    assert oc.row is not None and oc.row.reward == 0.75
    assert [r.sample for r in oc.revisions] == [0, 1, 2]


def test_lost_bonus_when_slot_hits_shaped_candidate() -> None:
    g = group("g", [scored(0.5, 2)])
    eng = FakeEngine({"g-draft-0": [1.0]})
    res = run_hindsight_stage([g], eng.generate, eng.score, HindsightConfig(), _rng())
    assert res.outcomes[0].slot == 0 and res.outcomes[0].rewards == (1.0,)
    assert res.metrics["bonus_lost"] == 1


def test_train_reward_overrides_score_for_bonus() -> None:
    g = RolloutGroup(uid="g", prompt="p", rollouts=(Rollout("d", scored(0.5, 2), train_reward=0.3),))
    eng = FakeEngine({"d": [0.7]})
    res = run_hindsight_stage([g], eng.generate, eng.score, HindsightConfig(incorporation="append"), None)
    assert res.outcomes[0].bonus == (pytest.approx((0, 0.05 * (0.7 - 0.3))),)


def test_disabled_or_nothing_to_do_never_generates() -> None:
    eng = FakeEngine()
    res = run_hindsight_stage(_batch(), eng.generate, eng.score, HindsightConfig(enabled=False), None)
    assert eng.calls == [] and all(o.kind == "not-attempted" for o in res.outcomes)
    solved = [group("s", [scored(1.0, 4)])]
    res = run_hindsight_stage(solved, eng.generate, eng.score, HindsightConfig(), _rng())
    assert eng.calls == [] and res.metrics["prompts_attempted"] == 0


def test_contract_errors() -> None:
    with pytest.raises(ValueError, match="rng"):
        run_hindsight_stage(_batch(), FakeEngine().generate, FakeEngine().score, HindsightConfig(), None)

    def short_gen(prompts: list[str], sampling: RevisionSampling) -> list[str]:
        return prompts[:-1]

    with pytest.raises(ValueError, match="generate_fn"):
        run_hindsight_stage(_batch(), short_gen, FakeEngine().score, HindsightConfig(), _rng())


def test_chat_wrap_reaches_generation_and_he_row() -> None:
    eng = FakeEngine(_plan())
    cfg = HindsightConfig(chat_template=True)
    res = run_hindsight_stage(
        _batch(), eng.generate, eng.score, cfg, _rng(), chat_wrap=lambda s: f"<u>{s}</u>"
    )
    assert all(p.startswith("<u>") and p.endswith("</u>") for p in eng.calls[0][0])
    row = res.outcomes[0].row
    assert row is not None and row.prompt.startswith("<u>")


def test_released_sampling_passes_none() -> None:
    eng = FakeEngine(_plan())
    cfg = HindsightConfig(revision_use_rollout_sampling=True, seeded_slots=False)
    run_hindsight_stage(_batch(), eng.generate, eng.score, cfg, None)
    s = eng.calls[0][1]
    assert (s.temperature, s.top_p, s.max_tokens, s.use_rollout_sampling) == (None, None, None, True)


# ---------------------------------------------------------------- slots


def _many_groups(n: int) -> list[RolloutGroup]:
    return [group(f"u{i}", [scored(0.5, 2)] + [scored(0.25, 1)] * 7) for i in range(n)]


def test_seeded_slots_are_deterministic_and_spread() -> None:
    groups = _many_groups(64)

    def slots(seed: int) -> list[int | None]:
        eng = FakeEngine(default=0.75)
        res = run_hindsight_stage(groups, eng.generate, eng.score, HindsightConfig(), slot_rng(seed, 1))
        return [o.slot for o in res.outcomes]

    a, b, c = slots(1), slots(1), slots(2)
    assert a == b
    assert a != c
    assert len(set(a)) > 4  # uniform over 8 slots, not a constant


def test_unseeded_slots_stay_in_range() -> None:
    eng = FakeEngine(default=0.75)
    cfg = HindsightConfig(seeded_slots=False)
    res = run_hindsight_stage(_many_groups(16), eng.generate, eng.score, cfg, None)
    assert all(o.slot is not None and 0 <= o.slot < 8 for o in res.outcomes)


# ---------------------------------------------------------------- properties

LEVELS = [0.0, 0.25, 0.5, 0.75, 1.0]


@st.composite
def stage_case(draw: st.DrawFn) -> tuple[list[RolloutGroup], list[float], HindsightConfig]:
    n_groups = draw(st.integers(1, 5))
    groups = []
    for gi in range(n_groups):
        size = draw(st.integers(1, 6))
        scores = draw(st.lists(st.sampled_from(LEVELS), min_size=size, max_size=size))
        groups.append(group(f"u{gi}", [scored(s, int(s * 4)) for s in scores]))
    rev = draw(st.lists(st.sampled_from(LEVELS), min_size=200, max_size=200))
    cfg = HindsightConfig(
        incorporation=draw(st.sampled_from(["replace", "append"])),
        fallback=draw(st.sampled_from(["duplicate-best", "skip"])),
        revisions_per_candidate=draw(st.integers(1, 2)),
        candidate_limit=draw(st.integers(1, 4)),
        bonus_alpha=draw(st.sampled_from([0.0, 0.05, 0.5])),
    )
    return groups, rev, cfg


@settings(max_examples=60, deadline=None)
@given(stage_case(), st.integers(0, 2**31))
def test_stage_invariants(case: tuple[list[RolloutGroup], list[float], HindsightConfig], seed: int) -> None:
    groups, rev_scores, cfg = case
    queue = iter(rev_scores)

    def gen(prompts: list[str], sampling: RevisionSampling) -> list[str]:
        return [f"revision score={next(queue)}" for _ in prompts]

    res = run_hindsight_stage(groups, gen, FakeEngine().score, cfg, np.random.default_rng(seed))
    assert len(res.outcomes) == len(groups)
    for g, oc in zip(groups, res.outcomes, strict=True):
        size = len(g.rollouts)
        best = max(ro.reward.dense for ro in g.rollouts)
        grows = cfg.incorporation == "append" and oc.row is not None
        assert len(oc.rewards) == size + (1 if grows else 0)
        if best >= cfg.threshold:
            assert oc.kind == "not-attempted"
            continue
        kept = [r for r in oc.revisions if r.selection >= best - 1e-9]
        assert (oc.kind == "revision") == bool(kept)
        if oc.kind == "revision":
            assert oc.row is not None and oc.row.is_he
            assert oc.row.reward == max(r.selection for r in oc.revisions)
        if oc.kind == "duplicate-best":
            assert cfg.fallback == "duplicate-best" and oc.row is not None and not oc.row.is_he
        if oc.kind == "skipped":
            assert cfg.fallback == "skip" and oc.slot is None
        if oc.row is not None:
            assert oc.slot is not None
            assert (oc.slot == size) if cfg.incorporation == "append" else (0 <= oc.slot < size)
            assert oc.rewards[oc.slot] == pytest.approx(oc.row.reward)
        # every other row carries its reward plus exactly its BR delta
        deltas = dict(oc.bonus)
        for i, ro in enumerate(g.rollouts):
            if i != oc.slot:
                assert oc.rewards[i] == pytest.approx(ro.r + deltas.get(i, 0.0))
        for ci, d in oc.bonus:
            best_rev = max(r.r for r in oc.revisions if r.job.candidate == ci)
            assert d == pytest.approx(cfg.bonus_alpha * (best_rev - g.rollouts[ci].r))


def test_empty_revisions_are_dropped_before_scoring_as_released() -> None:
    """Blank revisions are never scored, kept or used for the bonus; an all-blank group stays as sampled."""
    groups = [group("g0", [scored(0.5, 2), scored(0.25, 1)]), group("g1", [scored(0.5, 2), scored(0.5, 2)])]

    def generate(prompts: list[str], sampling: RevisionSampling) -> list[str]:
        # g0's only candidate answers with whitespace; g1's two candidates: one blank, one real.
        return ["   \n", "", "  revision score=1.0  "]

    scored_items: list[RevisionItem] = []

    def score(items: list[RevisionItem]) -> list[RewardResult]:
        scored_items.extend(items)
        return [scored(1.0, 4) for _ in items]

    res = run_hindsight_stage(groups, generate, score, HindsightConfig(), _rng())
    # stripped, blanks never scored; the index still points at the revision's own generation slot
    assert [(it.text, it.index) for it in scored_items] == [("revision score=1.0", 2)]
    g0, g1 = res.outcomes
    assert g0.kind == "not-attempted" and g0.bonus == () and g0.row is None
    assert g1.kind == "revision" and g1.row is not None and g1.row.response == "revision score=1.0"
    assert len(g1.bonus) == 1  # only the candidate whose revision was real is shaped
    assert res.metrics["empty_revisions"] == 2 and res.metrics["revisions_generated"] == 3
    assert res.metrics["groups_attempted"] == 1
