"""Rewards: instruction-following checkers (IFEval / IFBench / MulDimIF) and the rubric LLM judge."""

from herl.rewards.types import ConstraintVerdict, RewardResult

__all__ = ["ConstraintVerdict", "RewardResult"]
