"""veRL custom reward function for HeRL, and the round trip of a RewardResult through veRL.

veRL's reward loop calls ``compute_score(data_source, solution_str, ground_truth, extra_info, **kwargs)``
per response (``reward.custom_reward_function.path`` = this file, ``name`` = ``compute_score``) and
stores every key of the returned dict in ``extra_fields["reward_extra_info"]`` of the trajectory. The
hindsight stage needs the per-constraint verdicts to write the hindsight prompt, so besides flat
numeric keys (which veRL's validation metrics average) the dict carries the whole
:class:`~herl.rewards.types.RewardResult` as one JSON string under :data:`RESULT_KEY` (veRL's metric
code skips string values).

The scoring itself is the rewards package's (IF checkers, rubric judge); nothing is re-implemented.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from herl.rewards.types import ConstraintVerdict, RewardResult

RESULT_KEY = "herl_result"
"""reward_extra_info key holding the JSON-encoded RewardResult."""

JUDGE_KWARGS = ("base_url", "model", "temperature", "max_tokens", "concurrency", "timeout_s", "max_retries",
                "backoff_base_s", "pitfall_policy", "api_key_env")  # fmt: skip


def result_to_json(result: RewardResult) -> str:
    """Encode a RewardResult losslessly (kwargs that are not JSON become their ``repr``)."""
    return json.dumps(dataclasses.asdict(result), default=repr, sort_keys=True)


def result_from_json(text: str) -> RewardResult:
    """Inverse of :func:`result_to_json`."""
    data = json.loads(text)
    constraints = tuple(ConstraintVerdict(**c) for c in data.pop("constraints", ()) or ())
    return RewardResult(constraints=constraints, **data)


def result_from_extra_info(info: Mapping[str, Any] | None, score: float) -> RewardResult:
    """Rebuild the RewardResult of one trajectory from its ``reward_extra_info``.

    Falls back, for reward functions that are not ours, to the released dict layout
    (``dense``/``sparse``/``constraint_results``) and finally to the bare score (no constraints: the
    hindsight prompt then lists none, which still lets the model revise its draft).
    """
    info = dict(info or {})
    raw = info.get(RESULT_KEY)
    if isinstance(raw, RewardResult):
        return raw
    if isinstance(raw, str) and raw:
        try:
            return result_from_json(raw)
        except (ValueError, TypeError):
            pass
    constraints: list[ConstraintVerdict] = []
    for i, c in enumerate(info.get("constraint_results") or ()):
        if not isinstance(c, Mapping):
            continue
        followed = c.get("is_following", c.get("followed"))
        constraints.append(
            ConstraintVerdict(
                id=str(c.get("instruction_id", c.get("id", i))),
                description=str(c.get("description", "")),
                followed=None if followed is None else bool(followed),
                weight=float(c.get("weight", 1.0) or 1.0),
            )
        )
    dense = info.get("dense", score)
    all_met = info.get("sparse", info.get("all_met", score >= 1.0))
    return RewardResult(
        score=float(score),
        dense=float(dense if dense is not None else score),
        all_met=bool(all_met),
        constraints=tuple(constraints),
        data_source=str(info.get("data_source", "")),
    )


def to_extra_info(result: RewardResult) -> dict[str, Any]:
    """The dict veRL receives: ``score`` (the training reward), flat numbers, and the JSON result."""
    return {
        "score": float(result.score),
        "dense": float(result.dense),
        "all_met": float(result.all_met),
        "n_constraints": float(len(result.constraints)),
        "n_met": float(len(result.met)),
        "reward_error": float(result.error is not None),
        RESULT_KEY: result_to_json(result),
    }


def _judge_config(kwargs: Mapping[str, Any]) -> Any:
    from herl.rewards.judge import JudgeConfig

    return JudgeConfig.from_mapping({k: v for k, v in kwargs.items() if k in JUDGE_KWARGS})


async def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any = None,
    extra_info: Mapping[str, Any] | None = None,
    reward_type: str = "instruction-following",
    **kwargs: Any,
) -> dict[str, Any]:
    """veRL entry point (async, so the naive reward manager awaits it and judge calls overlap).

    ``reward_type`` and the judge settings arrive as ``reward.custom_reward_function.reward_kwargs``
    (written by :func:`herl.verl_plugin.overrides.job_to_verl_overrides`). Never raises: a failure
    scores 0 with ``reward_error`` = 1, as the rewards package does.
    """
    extra = dict(extra_info or {})
    if reward_type == "rubric-judge":
        from herl.rewards.judge import JudgeItem, score_batch_judge_async

        item = JudgeItem.from_extra_info(extra, solution_str, str(data_source or ""))
        (result,) = await score_batch_judge_async([item], _judge_config(kwargs))
    else:
        import asyncio

        from herl.rewards.instruction_following import score_if

        prompt = str(extra.get("question") or extra.get("prompt_text") or "")
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            None, lambda: score_if(solution_str, ground_truth, str(data_source or ""), prompt=prompt)
        )
    return to_extra_info(result)
