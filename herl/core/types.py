"""Text-level records passed between the engines and the hindsight stage.

The stage never sees tokens: engines decode their rollouts into :class:`RolloutGroup` objects, call
:func:`herl.core.stage.run_hindsight_stage`, and turn the returned :class:`GroupOutcome` back into
tensors with the helpers in :mod:`herl.core.tensors`. Keeping this boundary textual is what lets the
veRL plugin and the local engine share one implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from herl.rewards.types import RewardResult

TemplateKind = Literal["constraint", "rubric"]
OutcomeKind = Literal["not-attempted", "revision", "duplicate-best", "skipped"]


@dataclass(frozen=True)
class Rollout:
    """One sampled response of a group.

    ``train_reward`` is the scalar training reward currently on the row (veRL: the summed token
    reward). None means ``reward.score``. Candidate selection reads ``reward.dense`` instead, as
    released, so a repetitive response can be skipped as a candidate while keeping its reward.
    """

    response: str
    reward: RewardResult
    train_reward: float | None = None

    @property
    def r(self) -> float:
        return self.reward.score if self.train_reward is None else self.train_reward


@dataclass(frozen=True)
class RolloutGroup:
    """The rollouts that share one prompt (one veRL ``uid``).

    ``prompt`` is the text shown as the hindsight prompt's instruction and, for NaiveHE and the
    duplicate fallback, the training prompt. The released code used the decoded chat-formatted
    prompt (role words kept, special tokens dropped); engines choose what to pass.
    ``record`` is opaque to the core and handed back to ``score_fn`` with each revision.
    """

    uid: str
    prompt: str
    rollouts: tuple[Rollout, ...]
    record: Any = None


@dataclass(frozen=True)
class RevisionJob:
    """One hindsight prompt to generate from: a tied-best candidate of a failing group."""

    group: int
    uid: str
    candidate: int
    prompt: str
    template: TemplateKind
    best_score: float


class RevisionItem(NamedTuple):
    """One revision handed to ``score_fn``: its group's ``record``, the stripped text, and ``index``,
    the position of its prompt in the ``generate_fn`` call. Blank revisions are never scored, so the
    items are a subset of the generated list; ``index`` is what lets an engine find the revision's own
    token ids rather than those of whichever revision happens to sit at the item's position."""

    record: Any
    text: str
    index: int


@dataclass(frozen=True)
class Revision:
    """A generated revision, scored under the ORIGINAL prompt.

    ``index`` is the position of its prompt in the one batched ``generate_fn`` call (engines keep the
    generated token ids in that order); ``sample`` is which of the job's ``revisions_per_candidate``.
    """

    job: RevisionJob
    sample: int
    text: str
    reward: RewardResult
    index: int = -1

    @property
    def r(self) -> float:
        """Training reward of the revision (the score; this is what the HE row carries)."""
        return self.reward.score

    @property
    def selection(self) -> float:
        """Selection score of the revision (dense), compared with the group best."""
        return self.reward.dense


@dataclass(frozen=True)
class NewRow:
    """The row an outcome writes into the group (the HE row, or the duplicated best original).

    - ``prompt``: training prompt text. HE under ``train_under=hindsight``: the hindsight prompt, to
      be tokenised as raw text without special tokens (it is already chat-wrapped when configured).
      Otherwise the group's original prompt; ``prompt_is_original`` then tells engines they may
      reuse the original prompt tokens unchanged.
    - ``source``: for ``duplicate-best``, the index of the copied rollout; engines copy its token
      tensors and its (BR-shaped) token rewards.
    - ``is_he``: he_mask is 1 on this row's response tokens.
    - ``append_eos``: end the response with EOS (HE rows only; a duplicate keeps its own tokens).
    - ``revision``: the kept revision (HE rows), so engines can find its generated token ids.
    """

    prompt: str
    response: str
    reward: float
    result: RewardResult
    is_he: bool
    prompt_is_original: bool
    source: int | None = None
    append_eos: bool = False
    revision: Revision | None = None


@dataclass(frozen=True)
class GroupOutcome:
    """What the stage decided for one group.

    ``bonus`` lists (rollout index, Δ) for every BR-shaped candidate, in the order applied. Engines
    spread each Δ over that row's response tokens BEFORE writing ``row`` at ``slot`` (released
    order), so a shaped candidate that gets overwritten loses its bonus. ``rewards`` is the final
    scalar reward of every row of the group after both steps (length G, or G+1 when appended).
    ``slot`` equals G for an appended row.
    """

    group: int
    uid: str
    kind: OutcomeKind
    slot: int | None
    row: NewRow | None
    bonus: tuple[tuple[int, float], ...]
    rewards: tuple[float, ...]
    revisions: tuple[Revision, ...] = ()

    @property
    def he_index(self) -> int | None:
        """Index of the HE row within the (new) group, or None when there is none."""
        return self.slot if self.row is not None and self.row.is_he else None


@dataclass(frozen=True)
class StageResult:
    """Per-group outcomes (same order as the input groups) and cheap scalar metrics."""

    outcomes: tuple[GroupOutcome, ...]
    metrics: dict[str, float] = field(default_factory=dict)
    jobs: tuple[RevisionJob, ...] = ()
