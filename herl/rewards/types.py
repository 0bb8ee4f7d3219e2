"""The reward contract shared by every reward function, the HeRL core and both engines."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ConstraintVerdict:
    """One constraint (IF checker) or rubric item, judged on one response.

    ``followed`` is ``None`` when the item could not be judged (a judge's "unclear", or a checker
    that cannot run here, such as IFBench's ``words:start_verb`` without a POS tagger); such items
    count as not met in the score and are listed separately in the rubric hindsight prompt.
    """

    id: str
    description: str
    followed: bool | None
    weight: float = 1.0
    kwargs: dict[str, Any] = field(default_factory=dict)
    note: str | None = None


@dataclass(frozen=True)
class RewardResult:
    """The score of one response, with everything the hindsight stage needs to diagnose it.

    - ``score``: the training reward in [0, 1] (IF: fraction of constraints met; rubric: weighted).
    - ``dense``: the score used to pick hindsight candidates; equals ``score`` except that a
      repetitive response (last 160 chars repeated >= 3 times) gets 0, as released.
    - ``all_met``: every constraint met (IF "sparse").
    - ``error``: a short machine-readable reason when scoring failed (then score 0); never raised.
    """

    score: float
    dense: float
    all_met: bool
    constraints: tuple[ConstraintVerdict, ...] = ()
    repetitive: bool = False
    error: str | None = None
    data_source: str = ""

    @property
    def met(self) -> tuple[ConstraintVerdict, ...]:
        return tuple(c for c in self.constraints if c.followed is True)

    @property
    def unmet(self) -> tuple[ConstraintVerdict, ...]:
        return tuple(c for c in self.constraints if c.followed is False)

    @property
    def unclear(self) -> tuple[ConstraintVerdict, ...]:
        return tuple(c for c in self.constraints if c.followed is None)


def count_errors(results: Iterable[RewardResult]) -> int:
    """How many results carry an ``error`` (their score 0 is not a judgement of the response)."""
    return sum(1 for r in results if r.error is not None)
