"""The one mapping from step-dict keys (what both engines log) to catalogue metrics.

Both engines produce the same flat per-step dict veRL's ``Tracking.log`` receives: veRL's own keys
(``critic/score/mean``, ``actor/entropy``, ``timing_s/gen``, ``perf/throughput`` ...) plus herl's
(``herl/<stage metric>`` from :func:`herl.core.stage.run_hindsight_stage`, ``herl/all_met_rate``,
``herl/reward/<data_source>/mean``, ``judge/calls``, ``judge/errors/<reason>``). Engines should use
the constants below rather than spelling keys again.

A rule either SETs a gauge to the value or INCrements a counter by it (per-step counts become
monotonic counters so ``rate()``/``increase()`` work across scrapes). Named regex groups become labels;
their patterns are bounded so a malformed key cannot create unbounded series.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from herl.metrics.catalogue import BY_NAME, MetricType

# --- herl's own keys (the veRL plugin and the local engine emit these) --------------------------
HE_PREFIX = "herl/"
HE_GROUPS_ATTEMPTED = "herl/groups_attempted"
HE_REVISIONS_GENERATED = "herl/revisions_generated"
HE_KEPT = "herl/kept"
HE_FALLBACKS = "herl/fallbacks"
HE_SUCCESS_RATE = "herl/success_rate"
HE_OVER_PREV_BEST = "herl/over_prev_best"
HE_BONUS_MEAN = "herl/bonus_mean"
HE_TOKEN_FRACTION = "actor/he_frac"
ALL_MET_RATE = "herl/all_met_rate"
REWARD_ERRORS = "herl/reward_errors"  # rollouts + revisions whose RewardResult carries an error
SCORE_STD = "critic/score/std"
TOTAL_STEPS = "training/total_steps"
CHECKPOINT_STEP = "herl/checkpoint_step"  # set in the step dict of a step that saved a checkpoint
JUDGE_CALLS = "judge/calls"
JUDGE_ERRORS_PREFIX = "judge/errors/"  # + reason, e.g. judge/errors/timeout


def source_mean_key(data_source: str) -> str:
    """Step key of the mean score of one data_source."""
    return f"herl/reward/{data_source}/mean"


def source_all_met_key(data_source: str) -> str:
    """Step key of the all-met rate of one data_source."""
    return f"herl/reward/{data_source}/all_met_rate"


class Action(StrEnum):
    """What a rule does with the value."""

    SET = "set"
    INC = "inc"


#: A label value pattern: short, lower-case identifiers (data sources may carry dots and dashes).
_ID = r"[A-Za-z0-9_.\-]{1,64}"
_STAGE = r"[a-z0-9_]{1,40}"
_REASON = r"[a-z0-9_]{1,32}"


@dataclass(frozen=True)
class KeyRule:
    """``pattern`` (full match on the key) → ``metric``; named groups become labels."""

    pattern: str
    metric: str
    action: Action = Action.SET
    #: The literal key when the rule has no pattern (fast dict lookup).
    exact: str | None = None

    @property
    def regex(self) -> re.Pattern[str]:
        return _compiled(self.pattern)


_CACHE: dict[str, re.Pattern[str]] = {}


def _compiled(p: str) -> re.Pattern[str]:
    if p not in _CACHE:
        _CACHE[p] = re.compile(p)
    return _CACHE[p]


S, INC = Action.SET, Action.INC


def _k(key: str, metric: str, action: Action = S) -> KeyRule:
    """A rule for one literal key."""
    return KeyRule(re.escape(key), metric, action, exact=key)


RULES: tuple[KeyRule, ...] = (
    # reward
    _k("critic/score/mean", "herl_reward_score_mean"),
    _k("critic/score/max", "herl_reward_score_max"),
    _k("critic/score/min", "herl_reward_score_min"),
    _k(SCORE_STD, "herl_reward_score_std"),
    _k(ALL_MET_RATE, "herl_reward_all_met_ratio"),
    _k(REWARD_ERRORS, "herl_reward_errors_total", INC),
    KeyRule(rf"herl/reward/(?P<data_source>{_ID})/mean", "herl_reward_source_score_mean"),
    KeyRule(rf"herl/reward/(?P<data_source>{_ID})/all_met_rate", "herl_reward_source_all_met_ratio"),
    KeyRule(rf"val-core/(?P<data_source>{_ID})/reward/mean@\d+", "herl_validation_score_mean"),
    # hindsight exploration
    _k(HE_GROUPS_ATTEMPTED, "herl_hindsight_groups_attempted_total", INC),
    _k(HE_REVISIONS_GENERATED, "herl_hindsight_revisions_generated_total", INC),
    _k(HE_KEPT, "herl_hindsight_revisions_kept_total", INC),
    _k(HE_FALLBACKS, "herl_hindsight_fallbacks_total", INC),
    _k(HE_SUCCESS_RATE, "herl_hindsight_revision_success_ratio"),
    _k(HE_OVER_PREV_BEST, "herl_hindsight_over_previous_best_ratio"),
    _k(HE_BONUS_MEAN, "herl_hindsight_bonus_mean"),
    _k(HE_TOKEN_FRACTION, "herl_hindsight_token_ratio"),
    # policy
    _k("actor/pg_loss", "herl_policy_loss"),
    _k("actor/on_pg_loss", "herl_policy_on_policy_loss"),
    _k("actor/off_pg_loss", "herl_policy_off_policy_loss"),
    _k("actor/entropy", "herl_policy_entropy"),
    _k("actor/ppo_kl", "herl_policy_kl"),
    _k("actor/kl_loss", "herl_policy_kl_loss"),
    _k("actor/pg_clipfrac", "herl_policy_clip_ratio"),
    _k("actor/grad_norm", "herl_policy_grad_norm"),
    # lengths
    _k("response_length/mean", "herl_response_length_mean_tokens"),
    _k("response_length/max", "herl_response_length_max_tokens"),
    _k("response_length/clip_ratio", "herl_response_clip_ratio"),
    # progress (training/global_step is handled by the publisher together with the step argument)
    _k("training/epoch", "herl_training_epoch"),
    _k(TOTAL_STEPS, "herl_training_total_steps"),
    _k(CHECKPOINT_STEP, "herl_checkpoint_last_step"),
    # timing / throughput
    KeyRule(rf"timing_s/(?P<stage>{_STAGE})", "herl_stage_duration_seconds"),
    _k("perf/throughput", "herl_throughput_tokens_per_second"),
    _k("perf/total_num_tokens", "herl_tokens_total", INC),
    # judge
    _k(JUDGE_CALLS, "herl_judge_calls_total", INC),
    KeyRule(rf"{re.escape(JUDGE_ERRORS_PREFIX)}(?P<reason>{_REASON})", "herl_judge_errors_total", INC),
)

#: Exact-key fast path; the patterned rules are tried in order.
EXACT: dict[str, KeyRule] = {r.exact: r for r in RULES if r.exact is not None}
PATTERNED: tuple[KeyRule, ...] = tuple(r for r in RULES if r.exact is None)


def match(key: str) -> tuple[KeyRule, dict[str, str]] | None:
    """The rule for ``key`` and its extracted labels, or None when the key is not exported."""
    rule = EXACT.get(key)
    if rule is not None:
        return rule, {}
    for rule in PATTERNED:
        m = rule.regex.fullmatch(key)
        if m:
            return rule, m.groupdict()
    return None


def check_rules() -> list[str]:
    """Consistency problems between RULES and the catalogue (empty when fine; a test asserts it)."""
    problems = []
    for r in RULES:
        m = BY_NAME.get(r.metric)
        if m is None:
            problems.append(f"{r.pattern}: unknown metric {r.metric}")
            continue
        groups = set(re.compile(r.pattern).groupindex)
        extra = set(m.labels) - {"herl_job", "namespace"}
        if groups != extra:
            problems.append(f"{r.pattern}: groups {sorted(groups)} != labels {sorted(extra)}")
        if (r.action is Action.INC) != (m.type is MetricType.COUNTER):
            problems.append(f"{r.pattern}: action {r.action} does not fit {m.type}")
    return problems
