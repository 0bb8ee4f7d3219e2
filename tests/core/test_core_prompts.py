"""Hindsight prompt templates and template selection."""

from __future__ import annotations

import pytest
from core_factory import result

from herl.core import (
    HindsightConfig,
    build_constraint_prompt,
    build_hindsight_prompt,
    build_rubric_prompt,
    choose_template,
    is_rubric_reward,
)
from herl.core.prompts import CONSTRAINT_CLOSING, CONSTRAINT_ROLE, RUBRIC_CLOSING, RUBRIC_ROLE
from herl.rewards.types import ConstraintVerdict


def test_constraint_prompt_exact() -> None:
    r = result([True, False, None], descs=["Use  no commas.", "End with 'Bye'.", "Write 3 paragraphs."])
    text = build_constraint_prompt("user\nWrite a poem.\nassistant\n", "  Hello, world.  ", r.constraints)
    assert text == "\n".join(
        [
            CONSTRAINT_ROLE,
            "",
            "[Instruction]",
            "user\nWrite a poem.\nassistant",
            "",
            "[Candidate]",
            "Satisfied:",
            "1. Use no commas.",
            "Unmet:",
            "2. End with 'Bye'.",
            "3. Write 3 paragraphs.",
            "Draft:",
            "Hello, world.",
            "",
            CONSTRAINT_CLOSING,
        ]
    )


def test_constraint_prompt_none_lists_and_fallback_descriptions() -> None:
    cons = (
        ConstraintVerdict(id="length_words", description="", followed=False),
        ConstraintVerdict(id="", description="", followed=False),
    )
    text = build_constraint_prompt("Q", "D", cons)
    assert "Satisfied:\nnone\nUnmet:\n1. length_words\n2. Constraint #2\nDraft:" in text


def test_rubric_prompt_exact_with_weights() -> None:
    r = result(
        [True, False, None, True],
        weights=[5, 3, 1.5, -2],
        data_source="medical_rar",
        descs=["Names the drug.", "Gives the dose.", "Mentions risks.", "Pitfall: claims cure."],
    )
    text = build_rubric_prompt("What treats X?", "Use Y.", r.constraints)
    assert text == "\n".join(
        [
            RUBRIC_ROLE,
            "",
            "[Instruction]",
            "What treats X?",
            "",
            "[Rubric Status]",
            "Satisfied:",
            "- Names the drug. (weight 5)",
            "- Pitfall: claims cure. (weight -2)",
            "Not satisfied:",
            "- Gives the dose. (weight 3)",
            "Unclear:",
            "- Mentions risks. (weight 1.5)",
            "",
            "[Candidate]",
            "Draft:",
            "Use Y.",
            "",
            RUBRIC_CLOSING,
        ]
    )


def test_rubric_prompt_empty_lists_say_none() -> None:
    r = result([True], weights=[2])
    text = build_rubric_prompt("Q", "D", r.constraints)
    assert "Not satisfied:\nnone\nUnclear:\nnone" in text


@pytest.mark.parametrize(
    ("data_source", "weights", "expected"),
    [
        ("ifeval", None, False),
        ("muldimif", None, False),
        ("medical_rar", None, True),
        ("RaR-Medicine", None, True),
        ("healthbench", None, True),
        ("library", None, False),  # "rar" only as a whole word
        ("ifbench", [1.0, 2.0], True),  # non-unit weights mean a rubric
    ],
)
def test_is_rubric_reward(data_source: str, weights: list[float] | None, expected: bool) -> None:
    assert is_rubric_reward(result([True, False], weights=weights, data_source=data_source)) is expected


def test_choose_template() -> None:
    med = result([True, False], data_source="medical_rar")
    ifr = result([True, False])
    auto = HindsightConfig()
    assert choose_template(auto, med) == "rubric"
    assert choose_template(auto, ifr) == "constraint"
    assert choose_template(HindsightConfig(prompt_template="constraint"), med) == "constraint"
    assert choose_template(HindsightConfig(prompt_template="rubric"), ifr) == "rubric"


def test_chat_wrap_is_applied_last() -> None:
    r = result([False])
    raw = build_hindsight_prompt("Q", "D", r, "constraint")
    wrapped = build_hindsight_prompt("Q", "D", r, "constraint", chat_wrap=lambda s: f"<u>{s}</u><a>")
    assert wrapped == f"<u>{raw}</u><a>"
    assert build_hindsight_prompt("Q", "D", r, "rubric").startswith(RUBRIC_ROLE)
