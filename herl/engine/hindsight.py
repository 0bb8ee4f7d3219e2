"""The local engine's side of the hindsight stage: how it generates and scores revisions.

Everything else (diagnosis, prompts, BR, keep/fallback, the HE row) is :func:`herl.core.run_token_stage`,
the same call the veRL plugin makes. This adapter only says: revisions come from the engine's own
model (π_old) in one batched call seeded per step, sampling settings left as None fall back to the
rollout's, and each revision is scored under its group's ORIGINAL record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from herl.core import GeneratedTokens, RevisionToScore, StageResult, TokenRow, run_token_stage, slot_rng
from herl.core.config import RevisionSampling
from herl.engine.rollout import derive_seed
from herl.engine.settings import EngineSettings
from herl.rewards.types import RewardResult


class Generate(Protocol):
    """The engine's batched generation (``LocalTrainer._generate``)."""

    def __call__(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        seed: int,
    ) -> list[list[int]]: ...


Score = Callable[[Sequence[tuple[dict[str, Any], str]]], list[RewardResult]]


def engine_hindsight(
    groups: list[list[TokenRow]],
    records: Sequence[dict[str, Any]],
    *,
    step: int,
    settings: EngineSettings,
    tokenizer: Any,
    generate: Generate,
    score: Score,
    eos_id: int,
    pad_id: int,
    timing: dict[str, float],
    on_result: Callable[[StageResult], None] | None = None,
) -> tuple[list[list[TokenRow]], dict[str, float]]:
    """Run the stage on one step's groups (``records[g]`` is group g's data row).

    Returns the new groups and the stage metrics as ``herl/<name>`` step keys; adds
    ``gen_revision`` and ``reward_revision`` to ``timing``. ``on_result`` receives the stage's full
    result (outcomes with every revision), for the run's hindsight examples.
    """
    s = settings

    def generate_tokens(ids: list[list[int]], sampling: RevisionSampling) -> list[GeneratedTokens]:
        t = time.perf_counter()
        outs = generate(
            ids,
            temperature=s.temperature if sampling.temperature is None else float(sampling.temperature),
            top_p=s.top_p if sampling.top_p is None else float(sampling.top_p),
            max_new_tokens=s.max_response_length if sampling.max_tokens is None else int(sampling.max_tokens),
            seed=derive_seed(s.seed, step, 1),
        )
        timing["gen_revision"] = timing.get("gen_revision", 0.0) + time.perf_counter() - t
        return [GeneratedTokens(token_ids=list(o)) for o in outs]

    def score_revisions(items: list[RevisionToScore]) -> list[RewardResult]:
        t = time.perf_counter()
        out = score([(records[it.group], it.text) for it in items])
        timing["reward_revision"] = timing.get("reward_revision", 0.0) + time.perf_counter() - t
        return out

    new_groups, result = run_token_stage(
        groups,
        tokenizer=tokenizer,
        generate_tokens=generate_tokens,
        score_revisions=score_revisions,
        cfg=s.hindsight,
        rng=slot_rng(s.seed, step),
        eos_id=eos_id,
        pad_id=pad_id,
        max_prompt_length=s.max_prompt_length,
        max_response_length=s.max_response_length,
    )
    if on_result is not None:
        on_result(result)
    return new_groups, {f"herl/{k}": float(v) for k, v in result.metrics.items()}
