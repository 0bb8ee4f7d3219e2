"""Pure judge parts: tolerant parsing, verdict coercion, weighted aggregation, the judge prompt."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herl.rewards.judge_parse import (
    JudgeParseError,
    RubricItem,
    aggregate,
    build_judge_messages,
    coerce_rubric,
    coerce_verdict,
    parse_judge_output,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"results": [1, 0, 1]}', [True, False, True]),
        ('```json\n{"results": [0, 0, 1]}\n```', [False, False, True]),
        ("Sure! Here you go:\n```\n[1, 1, 0]\n```\nHope it helps", [True, True, False]),
        ('Verdicts: {"results": ["yes", "no", "TRUE"]} end.', [True, False, True]),
        ("The answer is [true, false, 1] as you asked", [True, False, True]),
        ('{"scores": [{"met": "yes"}, {"met": false}, {"met": 1}]}', [True, False, True]),
        (
            '{"results": [{"index": 3, "result": 0}, {"index": 1, "result": 1}, {"index": 2, "result": 1}]}',
            [True, True, False],
        ),
        ('{"1": 1, "2": "no", "3": "unclear"}', [True, False, None]),
        ('{"results": [1, "n/a", 0.9]}', [True, None, True]),
    ],
)
def test_parse_tolerant(text: str, expected: list[bool | None]) -> None:
    assert parse_judge_output(text, 3) == expected


@pytest.mark.parametrize("text", ["", "   ", "I cannot evaluate this.", "{not json}", '{"foo": "bar"}'])
def test_parse_garbage(text: str) -> None:
    with pytest.raises(JudgeParseError) as info:
        parse_judge_output(text, 2)
    assert info.value.reason == "garbage"


def test_parse_count_mismatch() -> None:
    with pytest.raises(JudgeParseError) as info:
        parse_judge_output('{"results": [1, 0]}', 3)
    assert info.value.reason == "count_mismatch"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (0, False),
        (1, True),
        ("Yes.", True),
        ("no", False),
        ("Not met", False),
        ("unclear", None),
        (None, None),
        (math.nan, None),
        ("0.2", False),
        ({"verdict": "pass"}, True),
        ([1], None),
    ],
)
def test_coerce_verdict(value: object, expected: bool | None) -> None:
    assert coerce_verdict(value) is expected


def test_coerce_rubric_forms_and_errors() -> None:
    items = coerce_rubric([{"description": " a ", "title": "T", "weight": 5}, "plain", {"description": "b"}])
    assert items == (RubricItem("a", 5.0, "T"), RubricItem("plain", 1.0, ""), RubricItem("b", 1.0, ""))
    for bad in ({"title": "no description"}, {"description": "x", "weight": "heavy"}, 3, ""):
        with pytest.raises(ValueError):
            coerce_rubric([bad])


RUBRIC = (RubricItem("a", 5), RubricItem("b", 3), RubricItem("pitfall", -2), RubricItem("c", 2))


def test_aggregate_clamp_ignores_pitfalls() -> None:
    assert aggregate(RUBRIC, [True, False, True, True], "clamp") == pytest.approx(7 / 10)
    assert aggregate(RUBRIC, [True, True, True, True], "clamp") == 1.0
    # unclear counts as not met
    assert aggregate(RUBRIC, [None, True, False, True], "clamp") == pytest.approx(5 / 10)


def test_aggregate_subtract_pitfalls() -> None:
    assert aggregate(RUBRIC, [True, False, True, True], "subtract") == pytest.approx((7 - 2) / 10)
    assert aggregate(RUBRIC, [True, True, False, True], "subtract") == 1.0
    assert aggregate(RUBRIC, [True, True, True, True], "subtract") == pytest.approx(8 / 10)
    assert aggregate(RUBRIC, [False, False, True, False], "subtract") == 0.0  # clamped at 0


def test_aggregate_no_positive_weight_is_zero() -> None:
    assert aggregate((RubricItem("p", -1),), [False], "clamp") == 0.0
    assert aggregate((), [], "subtract") == 0.0
    with pytest.raises(ValueError):
        aggregate(RUBRIC, [True], "clamp")


@given(
    st.lists(st.tuples(st.integers(-3, 5), st.sampled_from([True, False, None])), min_size=1, max_size=12),
    st.sampled_from(["clamp", "subtract"]),
)
def test_aggregate_in_unit_interval_and_subtract_never_above_clamp(pairs, policy) -> None:
    rubric = [RubricItem(f"i{k}", float(w)) for k, (w, _) in enumerate(pairs)]
    verdicts = [v for _, v in pairs]
    s = aggregate(rubric, verdicts, policy)
    assert 0.0 <= s <= 1.0
    assert aggregate(rubric, verdicts, "subtract") <= aggregate(rubric, verdicts, "clamp") + 1e-12


def test_judge_messages_number_items_with_weights() -> None:
    msgs = build_judge_messages("Q?", "A.", coerce_rubric([{"description": "x  y", "weight": 5}, "z"]))
    assert [m["role"] for m in msgs] == ["system", "user"]
    user = msgs[1]["content"]
    assert "<prompt>\nQ?\n</prompt>" in user and "<response>\nA.\n</response>" in user
    assert "1. x y (weight: 5)\n2. z (weight: 1)" in user
    assert "2 entries" in user
    no_w = build_judge_messages("Q", "A", coerce_rubric(["z"]), show_weights=False)[1]["content"]
    assert "weight" not in no_w
