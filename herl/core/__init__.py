"""Backend-neutral HeRL algorithm core: plain Python + torch, no veRL, no Kubernetes.

Both the veRL plugin and the local engine call these functions; see docs/algorithm.md.

Text level (one call per training step): :func:`run_hindsight_stage`.
Token rows (both engines' outcome application): :func:`run_token_stage`, :func:`apply_outcomes`.
Tensor level: :func:`spread_bonus`, :func:`build_he_mask`, :func:`he_response_tokens`,
:func:`grpo_advantages`, :func:`herl_policy_loss`.
"""

from herl.core.advantage import grpo_advantages
from herl.core.config import (
    HindsightConfig,
    LossConfig,
    RevisionSampling,
    hindsight_config_from_spec,
    loss_config_from_spec,
    released_hindsight_config,
    released_loss_config,
)
from herl.core.diagnose import collect_revision_jobs, count_met, group_best, ranked_best, select_candidates
from herl.core.incorporate import bonus_deltas, choose_revision, incorporate_group
from herl.core.kl import KL_TYPES, kl_penalty
from herl.core.loss import aggregate, he_weight, herl_policy_loss
from herl.core.prompts import (
    build_constraint_prompt,
    build_hindsight_prompt,
    build_rubric_prompt,
    choose_template,
    is_rubric_reward,
)
from herl.core.rows import (
    GeneratedTokens,
    RevisionToScore,
    TokenRow,
    apply_outcomes,
    last_token_scores,
    run_token_stage,
    spread_row_bonuses,
)
from herl.core.stage import METRIC_KEYS, GenerateFn, ScoreFn, run_hindsight_stage, slot_rng
from herl.core.tensors import build_he_mask, he_response_tokens, outcome_bonus_rows, spread_bonus
from herl.core.types import (
    GroupOutcome,
    NewRow,
    Revision,
    RevisionItem,
    RevisionJob,
    Rollout,
    RolloutGroup,
    StageResult,
)

__all__ = [
    "KL_TYPES",
    "METRIC_KEYS",
    "GenerateFn",
    "GeneratedTokens",
    "GroupOutcome",
    "HindsightConfig",
    "LossConfig",
    "NewRow",
    "Revision",
    "RevisionItem",
    "RevisionJob",
    "RevisionSampling",
    "RevisionToScore",
    "Rollout",
    "RolloutGroup",
    "ScoreFn",
    "StageResult",
    "TokenRow",
    "aggregate",
    "apply_outcomes",
    "bonus_deltas",
    "build_constraint_prompt",
    "build_he_mask",
    "build_hindsight_prompt",
    "build_rubric_prompt",
    "choose_revision",
    "choose_template",
    "collect_revision_jobs",
    "count_met",
    "group_best",
    "grpo_advantages",
    "he_response_tokens",
    "he_weight",
    "herl_policy_loss",
    "hindsight_config_from_spec",
    "incorporate_group",
    "is_rubric_reward",
    "kl_penalty",
    "last_token_scores",
    "loss_config_from_spec",
    "outcome_bonus_rows",
    "ranked_best",
    "released_hindsight_config",
    "released_loss_config",
    "run_hindsight_stage",
    "run_token_stage",
    "select_candidates",
    "slot_rng",
    "spread_bonus",
    "spread_row_bonuses",
]
