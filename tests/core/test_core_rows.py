"""The stage on token rows (herl.core.rows): the one outcome path both engines call."""

from __future__ import annotations

from typing import Any

import pytest
from core_factory import scored

from herl.core import (
    GeneratedTokens,
    HindsightConfig,
    RevisionToScore,
    TokenRow,
    apply_outcomes,
    last_token_scores,
    run_hindsight_stage,
    run_token_stage,
    slot_rng,
    spread_row_bonuses,
)
from herl.core.rows import groups_for_stage
from herl.engine.tiny import tiny_tokenizer
from herl.rewards.types import RewardResult

TOK = tiny_tokenizer()


def _rows(uid: str, scores: list[float], prompt: list[int] | None = None) -> list[TokenRow]:
    return [
        TokenRow(
            uid=uid,
            key=f"{uid}_{j}_0",
            prompt_ids=list(prompt or [7, 8, 9]),
            response_ids=[10 + j] * (3 + j),
            token_scores=last_token_scores(3 + j, s),
            result=scored(s, met=round(s * 4)),
            extra={"slot": j},
        )
        for j, s in enumerate(scores)
    ]


def _encode(text: str) -> list[int]:
    return list(TOK(text, add_special_tokens=False)["input_ids"])


def test_token_row_defaults_and_checks() -> None:
    r = TokenRow(uid="u", prompt_ids=[1], response_ids=[2, 3], token_scores=[0.0, 0.5], result=scored(0.5))
    assert r.response_mask == [1, 1] and r.reward == 0.5 and r.valid_response_ids == [2, 3]
    with pytest.raises(ValueError, match="token scores"):
        TokenRow(uid="u", prompt_ids=[1], response_ids=[2, 3], token_scores=[0.5], result=scored(0.5))
    assert last_token_scores(0, 1.0) == [] and last_token_scores(3, 1.0) == [0.0, 0.0, 1.0]


def test_spread_row_bonus_moves_the_sum_by_delta_over_masked_tokens() -> None:
    r = TokenRow(
        uid="u",
        prompt_ids=[1],
        response_ids=[2, 3, 4, 5],
        response_mask=[1, 0, 1, 1],
        token_scores=[0.0, 0.0, 0.0, 0.5],
        result=scored(0.5),
    )
    short = TokenRow(uid="v", prompt_ids=[1], response_ids=[6], token_scores=[0.25], result=scored(0.25))
    empty = TokenRow(uid="u", prompt_ids=[1], response_ids=[], token_scores=[], result=scored(0.0))
    spread_row_bonuses([(r, -0.03), (empty, 0.5), (short, 0.1)])
    assert r.reward == pytest.approx(0.47) and r.token_scores[1] == 0.0 and r.scores_changed
    assert r.token_scores[0] == pytest.approx(-0.01) and short.token_scores == [pytest.approx(0.35)]
    assert empty.token_scores == [] and not empty.scores_changed


@pytest.mark.parametrize(
    ("incorporation", "rev_score", "kind"),
    [("replace", 1.0, "he"), ("append", 1.0, "he"), ("replace", 0.0, "duplicate")],
)
def test_apply_outcomes_matches_core_rewards(incorporation: str, rev_score: float, kind: str) -> None:
    rows = [_rows("g0", [0.5, 0.0, 0.5, 0.0])]
    cfg = HindsightConfig(incorporation=incorporation)  # type: ignore[arg-type]
    gen = [GeneratedTokens([20, 21, 22]), GeneratedTokens([30, 31])]

    def generate_fn(prompts: list[str], sampling: Any) -> list[str]:
        return ["revised one", "revised two"][: len(prompts)]

    res = run_hindsight_stage(
        groups_for_stage(rows, TOK.decode),
        generate_fn,
        lambda items: [scored(rev_score, met=round(rev_score * 4))] * len(items),
        cfg,
        slot_rng(0, 1),
    )
    new = apply_outcomes(
        res,
        rows,
        gen,
        encode_raw=_encode,
        eos_id=TOK.eos_token_id,
        pad_id=TOK.pad_token_id,
        max_prompt_length=400,
        max_response_length=8,
    )
    oc = res.outcomes[0]
    assert len(new[0]) == (5 if incorporation == "append" else 4)
    # per-row rewards (BR spread over tokens, then the slot written) equal the core's scalars
    assert [r.reward for r in new[0]] == pytest.approx(list(oc.rewards), abs=1e-12)
    assert oc.bonus  # the two tied-best drafts were revised: BR moved their rewards
    written = new[0][oc.slot]
    assert written.kind == kind and written.changed
    if kind == "he":
        assert oc.row is not None and oc.row.revision is not None
        # the kept revision's OWN generated ids, EOS appended; the hindsight prompt as raw tokens
        assert written.response_ids == [*gen[oc.row.revision.index].token_ids, TOK.eos_token_id]
        assert written.he and written.response_mask == [1] * len(written.response_ids)
        assert written.prompt_ids == _encode(oc.row.prompt)
        assert "revision assistant" in TOK.decode(written.prompt_ids)
        assert written.token_scores[-1] == rev_score and sum(written.token_scores) == rev_score
    else:
        src = rows[0][oc.row.source]
        assert not written.he and written.response_ids == src.response_ids and written.prompt_ids == [7, 8, 9]
        assert written.source_key == src.key
    if incorporation == "append":
        assert written.appended
    else:  # the written row takes over the slot's engine identity
        assert written.key == f"g0_{oc.slot}_0" and written.extra == {"slot": oc.slot}
    assert rows[0][0].reward == 0.5 and not rows[0][0].scores_changed  # inputs are not mutated


def test_blank_revision_does_not_shift_ids_or_scores() -> None:
    """Three jobs; the first answers blank. Each scored revision must arrive with its own ids."""
    groups = [_rows("a", [0.5, 0.5, 0.0]), _rows("b", [0.5, 0.0, 0.0])]
    answers = [[], [*_encode("ocean words"), TOK.eos_token_id], _encode("hello world")]
    seen: list[RevisionToScore] = []

    def generate_tokens(ids: list[list[int]], sampling: Any) -> list[GeneratedTokens]:
        assert len(ids) == 3
        return [GeneratedTokens(a) for a in answers]

    def score_revisions(items: list[RevisionToScore]) -> list[RewardResult]:
        seen.extend(items)
        return [scored(1.0, 4) if "ocean" in TOK.decode(it.token_ids) else scored(0.25, 1) for it in items]

    new, res = run_token_stage(
        groups,
        tokenizer=TOK,
        generate_tokens=generate_tokens,
        score_revisions=score_revisions,
        cfg=HindsightConfig(),
        rng=slot_rng(1, 1),
        eos_id=TOK.eos_token_id,
        pad_id=TOK.pad_token_id,
        max_prompt_length=400,
        max_response_length=16,
    )
    assert [(it.group, it.token_ids) for it in seen] == [(0, answers[1]), (1, answers[2])]
    a, b = res.outcomes
    assert a.kind == "revision" and b.kind == "duplicate-best"
    assert new[0][a.slot].response_ids == answers[1]  # EOS already there: not doubled
    assert a.bonus == (pytest.approx((1, 0.025)),) and b.bonus == (pytest.approx((0, -0.0125)),)


def test_core_and_local_engine_import_without_verl() -> None:
    """The shared outcome code must not drag veRL (seconds, Ray) into the local engine."""
    import subprocess
    import sys

    code = (
        "import sys, herl.core, herl.core.rows, herl.engine.trainer\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('verl', 'ray', 'transfer_queue'))\n"
        "assert not bad, bad\n"
    )
    core_only = (
        "import sys, herl.core\nassert 'transformers' not in sys.modules and 'verl' not in sys.modules\n"
    )
    for src in (code, core_only):
        proc = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
