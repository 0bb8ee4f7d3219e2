"""Offline reward for the GPU smoke: two checkable constraints per prompt, in HeRL's reward format.

Loaded by veRL from its file path (``reward.custom_reward_function.path``). It returns the same dict
layout as :func:`herl.verl_plugin.reward.compute_score` (flat numbers + the JSON RewardResult), so the
hindsight stage gets real met/unmet verdicts without the IF checker packages on the GPU machine.
"""

from __future__ import annotations

import json
from typing import Any

from herl.rewards.types import ConstraintVerdict, RewardResult
from herl.verl_plugin.reward import to_extra_info


def compute_score(
    data_source: str, solution_str: str, ground_truth: Any = None, extra_info: Any = None, **_: Any
) -> dict[str, Any]:
    gt = json.loads(ground_truth) if isinstance(ground_truth, str) else dict(ground_truth or {})
    word, limit = str(gt.get("word", "")), int(gt.get("max_words", 30))
    text = solution_str or ""
    verdicts = (
        ConstraintVerdict(
            id="keyword", description=f"Use the word {word}.", followed=word.lower() in text.lower()
        ),
        ConstraintVerdict(
            id="length", description=f"Keep it under {limit} words.", followed=0 < len(text.split()) < limit
        ),
    )
    met = sum(bool(v.followed) for v in verdicts)
    score = met / len(verdicts)
    return to_extra_info(
        RewardResult(
            score=score,
            dense=score,
            all_met=met == len(verdicts),
            constraints=verdicts,
            data_source=str(data_source or ""),
        )
    )
