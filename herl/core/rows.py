"""The hindsight stage on token rows: the one implementation both engines call.

:func:`herl.core.stage.run_hindsight_stage` decides on text. Turning its outcomes back into training
rows (BR spread over the candidate's tokens, the kept revision or the duplicated best original written
at its slot, the HE row's prompt, EOS and reward) used to be written twice, once per engine; it lives
here now, on :class:`TokenRow`, so the local engine and the veRL plugin differ only in how they
generate, score and store rows.

    new_groups, result = run_token_stage(groups, tokenizer=..., generate_tokens=..., score_revisions=...,
                                         cfg=..., rng=..., eos_id=..., pad_id=...,
                                         max_prompt_length=..., max_response_length=...)

``generate_tokens(prompt_ids_list, sampling)`` is ONE batched call returning a
:class:`GeneratedTokens` per prompt; ``score_revisions([RevisionToScore, ...])`` scores revisions under
their group's ORIGINAL prompt. The tokenizer is duck-typed (``decode``, ``__call__`` and, with
``chat_template``, ``apply_chat_template``): the core does not import transformers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from herl.core.config import HindsightConfig, RevisionSampling
from herl.core.stage import run_hindsight_stage
from herl.core.tensors import he_response_tokens, spread_bonus
from herl.core.types import GroupOutcome, NewRow, RevisionItem, Rollout, RolloutGroup, StageResult
from herl.rewards.types import RewardResult

RowKind = Literal["rollout", "he", "duplicate"]


@dataclass
class TokenRow:
    """One training row, un-padded, as both engines keep it.

    ``token_scores`` are per response token (veRL's layout: the reward on the last token, BR spread
    over all of them); the row's scalar reward is their sum, which is what GRPO reads.
    ``response_mask`` defaults to all ones. ``key`` and ``extra`` are opaque engine identity and fields
    (veRL: the TransferQueue key, tags and dataset fields); a row written into a slot takes over the
    replaced row's ``key`` and ``extra``, because the engine stores it in that slot.
    """

    uid: str
    prompt_ids: list[int]
    response_ids: list[int]
    token_scores: list[float]
    result: RewardResult
    response_mask: list[int] = field(default_factory=list)
    key: str = ""
    rollout_log_probs: list[float] | None = None
    he: bool = False
    kind: RowKind = "rollout"
    changed: bool = False
    """Tokens replaced (HE row or duplicate): every per-token field must be rewritten."""
    scores_changed: bool = False
    """Only the token rewards changed (a BR-shaped candidate)."""
    appended: bool = False
    """A new row after the group (``incorporation=append``); the engine gives it a key."""
    source_key: str | None = None
    """For a duplicate or an HE row: the key of the row whose engine fields it was built from."""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.response_mask:
            self.response_mask = [1] * len(self.response_ids)
        if not (len(self.response_mask) == len(self.token_scores) == len(self.response_ids)):
            raise ValueError(
                f"row {self.key or self.uid}: {len(self.response_ids)} response ids, "
                f"{len(self.response_mask)} mask entries and {len(self.token_scores)} token scores"
            )

    @property
    def reward(self) -> float:
        """The scalar training reward: the token rewards' sum (what GRPO normalises)."""
        return float(sum(self.token_scores))

    @property
    def valid_response_ids(self) -> list[int]:
        """The response tokens under the mask (the text the policy produced)."""
        return [t for t, m in zip(self.response_ids, self.response_mask, strict=True) if m]


def last_token_scores(n: int, reward: float) -> list[float]:
    """Token rewards of a freshly scored response: ``reward`` on its last token, as veRL places it.

    A response without tokens carries no reward (there is no token to put it on).
    """
    scores = [0.0] * n
    if n:
        scores[-1] = float(reward)
    return scores


def spread_row_bonuses(items: Sequence[tuple[TokenRow, float]]) -> None:
    """Add each BR Δ to its row, spread evenly over the row's response tokens (in place).

    One :func:`spread_bonus` call for the whole step (a torch call per row costs milliseconds on a
    busy CPU, hundreds of rows per step). Rows without response tokens are left alone, as released.
    """
    todo = [(row, delta) for row, delta in items if any(row.response_mask)]
    if not todo:
        return
    index: dict[int, int] = {}
    rows: list[TokenRow] = []
    for row, _ in todo:
        if id(row) not in index:
            index[id(row)] = len(rows)
            rows.append(row)
    width = max(len(r.token_scores) for r in rows)
    scores = torch.zeros((len(rows), width), dtype=torch.float64)
    mask = torch.zeros((len(rows), width), dtype=torch.float64)
    for i, r in enumerate(rows):
        n = len(r.token_scores)
        scores[i, :n] = torch.tensor(r.token_scores, dtype=torch.float64)
        mask[i, :n] = torch.tensor(r.response_mask, dtype=torch.float64)
    shaped = spread_bonus(scores, mask, [index[id(r)] for r, _ in todo], [d for _, d in todo])
    for i, r in enumerate(rows):
        r.token_scores = shaped[i, : len(r.token_scores)].tolist()
        r.scores_changed = True


@dataclass(frozen=True)
class GeneratedTokens:
    """What the engine's generator returned for one hindsight prompt."""

    token_ids: list[int]
    log_probs: list[float] | None = None


@dataclass(frozen=True)
class RevisionToScore:
    """A revision to score under its group's ORIGINAL prompt: the group index, the revision's OWN
    generated ids (found by its generation index, so a blank revision before it cannot shift them)
    and its stripped text."""

    group: int
    token_ids: list[int]
    text: str


GenerateTokensFn = Callable[[list[list[int]], RevisionSampling], Sequence[GeneratedTokens]]
ScoreRevisionsFn = Callable[[list[RevisionToScore]], Sequence[RewardResult]]


def _he_row(
    new: NewRow,
    gen: GeneratedTokens,
    template: TokenRow,
    *,
    encode_raw: Callable[[str], list[int]],
    eos_id: int,
    pad_id: int,
    max_prompt_length: int,
    max_response_length: int,
) -> TokenRow:
    """The kept revision as a row: the hindsight prompt as raw tokens, left-truncated (or the original
    prompt under ``train_under=instruction``); the generated ids with EOS appended; the revision's
    score on the last token; rollout log-probs only when the engine keeps them."""
    if new.prompt_is_original:
        prompt_ids = list(template.prompt_ids)
    else:
        prompt_ids = encode_raw(new.prompt)[-max_prompt_length:]
    resp_t, mask_t = he_response_tokens(
        list(gen.token_ids), max_response_length, eos_id, pad_id, append_eos=new.append_eos
    )
    n = int(mask_t.sum())
    logp = None
    if template.rollout_log_probs is not None:
        # the EOS the stage appended was not sampled: it gets log-prob 0, like veRL's padding
        src = list(gen.log_probs or [])[:n]
        logp = src + [0.0] * (n - len(src))
    return TokenRow(
        key=template.key,
        uid=template.uid,
        prompt_ids=prompt_ids,
        response_ids=resp_t[:n].tolist(),
        response_mask=[1] * n,
        token_scores=last_token_scores(n, new.reward),
        result=new.result,
        rollout_log_probs=logp,
        he=bool(new.is_he),
        kind="he",
        changed=True,
        source_key=template.key,
        extra=copy.deepcopy(template.extra),
    )


def apply_outcomes(
    result: StageResult,
    groups: Sequence[Sequence[TokenRow]],
    generated: Sequence[GeneratedTokens],
    *,
    encode_raw: Callable[[str], list[int]],
    eos_id: int,
    pad_id: int,
    max_prompt_length: int,
    max_response_length: int,
) -> list[list[TokenRow]]:
    """The stage's outcomes on token rows, in the released order; inputs are not mutated.

    Per group: BR first (each Δ spread over its candidate's response tokens), then the kept row
    written at its slot (``replace``: it takes over the slot's key and engine fields; ``append``: it
    follows the group, flagged ``appended``). ``generated[i]`` are the ids of generation prompt ``i``.
    """
    out = [[copy.copy(r) for r in g] for g in groups]
    # BR before any slot is written: a shaped candidate that is then overwritten loses its bonus
    spread_row_bonuses([(out[oc.group][ci], delta) for oc in result.outcomes for ci, delta in oc.bonus])

    def build_he(new: NewRow, gen: GeneratedTokens, template: TokenRow) -> TokenRow:
        return _he_row(
            new,
            gen,
            template,
            encode_raw=encode_raw,
            eos_id=eos_id,
            pad_id=pad_id,
            max_prompt_length=max_prompt_length,
            max_response_length=max_response_length,
        )

    for oc in result.outcomes:
        _write_row(oc, out[oc.group], generated, build_he)
    return out


def _write_row(
    oc: GroupOutcome,
    group: list[TokenRow],
    generated: Sequence[GeneratedTokens],
    build_he: Callable[[NewRow, GeneratedTokens, TokenRow], TokenRow],
) -> None:
    new = oc.row
    if new is None or oc.slot is None:
        return
    if new.is_he:
        if new.revision is None or not 0 <= new.revision.index < len(generated):
            raise RuntimeError(f"group {oc.uid}: the kept revision has no generated ids")
        built = build_he(new, generated[new.revision.index], group[0])
    else:
        if new.source is None:
            raise RuntimeError(f"group {oc.uid}: a non-HE row must name the rollout it copies")
        src = group[new.source]
        built = copy.deepcopy(src)
        built.he, built.kind, built.changed, built.source_key = False, "duplicate", True, src.key
    if oc.slot < len(group):
        target = group[oc.slot]
        built.key, built.extra, built.appended = target.key, copy.deepcopy(target.extra), False
        group[oc.slot] = built
    else:
        built.appended = True
        group.append(built)


def groups_for_stage(
    groups: Sequence[Sequence[TokenRow]], decode: Callable[[Sequence[int]], str]
) -> list[RolloutGroup]:
    """Decode token rows into the core's text groups; ``record`` is the group's index."""
    return [
        RolloutGroup(
            uid=rows[0].uid,
            prompt=decode(rows[0].prompt_ids),
            rollouts=tuple(
                Rollout(response=decode(r.valid_response_ids), reward=r.result, train_reward=r.reward)
                for r in rows
            ),
            record=gi,
        )
        for gi, rows in enumerate(groups)
    ]


def run_token_stage(
    groups: Sequence[Sequence[TokenRow]],
    *,
    tokenizer: Any,
    generate_tokens: GenerateTokensFn,
    score_revisions: ScoreRevisionsFn,
    cfg: HindsightConfig,
    rng: np.random.Generator | None,
    eos_id: int,
    pad_id: int,
    max_prompt_length: int,
    max_response_length: int,
) -> tuple[list[list[TokenRow]], StageResult]:
    """Decode, run :func:`run_hindsight_stage` (one batched generation), apply the outcomes.

    Returns the new groups (input order; an appended row ends its group) and the stage result.
    Every group must hold at least one row; rows of one group share ``uid`` and prompt.
    """

    def decode(ids: Sequence[int]) -> str:
        return tokenizer.decode(list(ids), skip_special_tokens=True)

    def encode_raw(text: str) -> list[int]:
        # released: the revise prompt is raw text, no BOS and no chat template unless configured
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    generated: list[GeneratedTokens] = []

    def generate_fn(prompts: list[str], sampling: RevisionSampling) -> list[str]:
        ids = [encode_raw(p)[-max_prompt_length:] for p in prompts]
        outs = list(generate_tokens(ids, sampling))
        if len(outs) != len(ids):
            raise ValueError(f"generate_tokens returned {len(outs)} outputs for {len(ids)} prompts")
        generated.extend(outs)
        return [decode(o.token_ids) for o in outs]

    def score_fn(items: list[RevisionItem]) -> list[RewardResult]:
        return list(
            score_revisions(
                [RevisionToScore(it.record, list(generated[it.index].token_ids), it.text) for it in items]
            )
        )

    chat_wrap = None
    if cfg.chat_template:

        def chat_wrap(text: str) -> str:
            return tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )

    result = run_hindsight_stage(
        groups_for_stage(groups, decode), generate_fn, score_fn, cfg, rng, chat_wrap=chat_wrap
    )
    new_groups = apply_outcomes(
        result,
        groups,
        generated,
        encode_raw=encode_raw,
        eos_id=eos_id,
        pad_id=pad_id,
        max_prompt_length=max_prompt_length,
        max_response_length=max_response_length,
    )
    return new_groups, result
