"""Hindsight prompt builders ("rubric-guided revising").

The prompt shows the policy its own failed draft together with a diagnosis: which constraints
(or rubric items) the draft met and which it missed. Two templates, in our own wording:

- constraint: numbered met / unmet lists (unclear items count as unmet). The released code used
  this one for every domain, rubric descriptions included, without weights.
- rubric: Satisfied / Not satisfied / Unclear lists with each item's weight. The released code
  has such a template but it was unreachable; ``prompt_template=auto`` uses it for rubric rewards.

The result is raw text; when ``chat_template`` is on, a caller-provided ``chat_wrap`` (the engine's
``tokenizer.apply_chat_template`` on a single user turn, with the generation prompt) wraps it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from herl.core.config import HindsightConfig
from herl.core.types import TemplateKind
from herl.rewards.types import ConstraintVerdict, RewardResult

ChatWrap = Callable[[str], str]

_RUBRIC_SOURCE_WORDS = frozenset({"medical", "medicine", "rar", "rubric", "rubrics", "healthbench"})
_SPLIT = re.compile(r"[^a-z0-9]+")

CONSTRAINT_ROLE = (
    "You act as a revision assistant. Preserve every constraint the draft already meets, repair each "
    "constraint it misses, and introduce no new facts."
)
CONSTRAINT_CLOSING = (
    "Reply with the revised answer and nothing else: it must now meet the unmet constraints while still "
    "meeting the satisfied ones."
)
RUBRIC_ROLE = (
    "You act as a rewrite assistant. Keep what the draft does well on the rubric, correct the items it "
    "fails or leaves unclear, and introduce no new facts."
)
RUBRIC_CLOSING = "Reply with the rewritten answer and nothing else, written to satisfy the rubric."


def is_rubric_reward(result: RewardResult) -> bool:
    """True for rubric-judged rewards: a rubric-like data_source, or any non-unit item weight.

    Checked per candidate because one batch may mix IF and rubric data.
    """
    if result.data_source and not _RUBRIC_SOURCE_WORDS.isdisjoint(_SPLIT.split(result.data_source.lower())):
        return True
    return any(c.weight != 1.0 for c in result.constraints)


def choose_template(cfg: HindsightConfig, result: RewardResult) -> TemplateKind:
    """Resolve ``prompt_template`` for one candidate (``auto`` looks at its reward)."""
    if cfg.prompt_template == "constraint":
        return "constraint"
    if cfg.prompt_template == "rubric":
        return "rubric"
    return "rubric" if is_rubric_reward(result) else "constraint"


def _describe(c: ConstraintVerdict, number: int) -> str:
    text = " ".join(c.description.split()) if c.description else ""
    return text or c.id or f"Constraint #{number}"


def build_constraint_prompt(instruction: str, draft: str, constraints: Sequence[ConstraintVerdict]) -> str:
    """The constraint template. Items keep their 1-based position in the full list, so the
    numbers stay stable between the Satisfied and Unmet lists."""
    met: list[str] = []
    unmet: list[str] = []
    for number, c in enumerate(constraints, start=1):
        (met if c.followed is True else unmet).append(f"{number}. {_describe(c, number)}")
    parts = [
        CONSTRAINT_ROLE,
        "",
        "[Instruction]",
        instruction.strip(),
        "",
        "[Candidate]",
        "Satisfied:",
        *(met or ["none"]),
        "Unmet:",
        *(unmet or ["none"]),
        "Draft:",
        draft.strip(),
        "",
        CONSTRAINT_CLOSING,
    ]
    return "\n".join(parts)


def _weight(w: float) -> str:
    return f"{w:g}"


def build_rubric_prompt(instruction: str, draft: str, rubric: Sequence[ConstraintVerdict]) -> str:
    """The rubric template: status lists with weights, then the draft."""
    sat: list[str] = []
    not_sat: list[str] = []
    unclear: list[str] = []
    for number, c in enumerate(rubric, start=1):
        line = f"- {_describe(c, number)} (weight {_weight(c.weight)})"
        if c.followed is True:
            sat.append(line)
        elif c.followed is False:
            not_sat.append(line)
        else:
            unclear.append(line)
    parts = [
        RUBRIC_ROLE,
        "",
        "[Instruction]",
        instruction.strip(),
        "",
        "[Rubric Status]",
        "Satisfied:",
        *(sat or ["none"]),
        "Not satisfied:",
        *(not_sat or ["none"]),
        "Unclear:",
        *(unclear or ["none"]),
        "",
        "[Candidate]",
        "Draft:",
        draft.strip(),
        "",
        RUBRIC_CLOSING,
    ]
    return "\n".join(parts)


def build_hindsight_prompt(
    instruction: str,
    draft: str,
    result: RewardResult,
    template: TemplateKind,
    *,
    chat_wrap: ChatWrap | None = None,
) -> str:
    """Build the hindsight prompt for one candidate, optionally chat-wrapped."""
    if template == "rubric":
        text = build_rubric_prompt(instruction, draft, result.constraints)
    else:
        text = build_constraint_prompt(instruction, draft, result.constraints)
    return chat_wrap(text) if chat_wrap is not None else text
