"""Rewards: instruction-following checkers (IFEval / IFBench / MulDimIF) and the rubric LLM judge.

The IF entry points are importable from here and cheap to import: the checkers themselves (nltk,
langdetect, the upstream registries) load on first use. The judge lives in ``herl.rewards.judge``.
"""

from herl.rewards.batch import ScoreItem, score_batch
from herl.rewards.instruction_following import score_if, verl_compute_score
from herl.rewards.types import ConstraintVerdict, RewardResult

__all__ = ["ConstraintVerdict", "RewardResult", "ScoreItem", "score_batch", "score_if", "verl_compute_score"]
