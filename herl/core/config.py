"""Typed settings of the HeRL algorithm core.

Two frozen dataclasses: :class:`HindsightConfig` drives the hindsight stage (sample & diagnose,
revise, bonus reward, incorporation) and :class:`LossConfig` drives the mixed-policy loss. Field
names are the snake_case forms of ``spec.algorithm.hindsight.*`` and ``spec.algorithm.*`` so that
both engines map the spec one-to-one. Defaults are OURS; :func:`released_hindsight_config` and
:func:`released_loss_config` give the values of the released code (the ``official-*`` presets).

Validation raises :class:`herl.errors.UserError` naming the spec field, because every value here
comes from a user's spec and the CLI prints such errors as one actionable line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from herl.errors import UserError

TrainUnder = Literal["hindsight", "instruction"]
Incorporation = Literal["replace", "append"]
Fallback = Literal["duplicate-best", "skip"]
PromptTemplate = Literal["auto", "constraint", "rubric"]
LossAggMode = Literal["token-mean", "token-sum", "seq-mean-token-mean", "seq-mean-token-sum"]

_HS = "spec.algorithm.hindsight"


def _finite(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UserError(f"{name} must be a finite number, got {value!r}")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _positive_int(name: str, value: int, upper: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{name} must be an integer >= 1, got {value!r}")
    if upper is not None and value > upper:
        raise UserError(f"{name} must be <= {upper}, got {value}")


@dataclass(frozen=True)
class HindsightConfig:
    """Settings of the hindsight stage (``spec.algorithm.hindsight``).

    - ``threshold``: a group is revised only when its best selection score (``RewardResult.dense``)
      is below it; 1.0 means "no rollout met every constraint". Values above 1 revise every group.
    - ``candidate_limit``: at most this many tied-best rollouts are revised per group.
    - ``revisions_per_candidate``: revisions sampled per candidate (released: 1).
    - ``train_under``: ``hindsight`` trains the kept revision under the hindsight prompt (HE);
      ``instruction`` places it under the original prompt (our reading of NaiveHE).
    - ``incorporation``: ``replace`` overwrites one random slot (group size unchanged, released);
      ``append`` adds the HE row (group grows by one, as the paper's figure draws it).
    - ``fallback``: when no revision ties the group best, ``duplicate-best`` overwrites the slot with
      a copy of the best original (released); ``skip`` leaves the group unchanged.
    - ``prompt_template``: ``auto`` picks the rubric template for rubric rewards, the constraint one
      otherwise; the released code always used the constraint template.
    - ``chat_template``: wrap the hindsight prompt in the model's chat template (released: raw text).
    - ``revision_*``: sampling of revisions. ``revision_use_rollout_sampling`` reproduces the
      released sync-mode behaviour, where the revision temperature/top_p/max_tokens were ignored
      and the rollout's own settings applied. ``revision_max_tokens=None`` means the rollout's
      response length.
    - ``gamma``: the HE shaping constant γ in ρ/(ρ+γ); 0 means the plain ratio ρ (as released).
    - ``bonus_enabled`` / ``bonus_alpha``: the bonus reward r ← r + α(r̃ − r) for revised drafts.
    - ``seeded_slots``: draw the replaced slot from the engine's seeded generator (reproducible);
      False reproduces the released unseeded draw.
    - ``append_eos``: end the HE response with EOS so the model learns to stop.
    """

    enabled: bool = True
    threshold: float = 1.0
    candidate_limit: int = 16
    revisions_per_candidate: int = 1
    train_under: TrainUnder = "hindsight"
    incorporation: Incorporation = "replace"
    fallback: Fallback = "duplicate-best"
    prompt_template: PromptTemplate = "auto"
    chat_template: bool = False
    revision_temperature: float = 0.3
    revision_top_p: float = 1.0
    revision_max_tokens: int | None = None
    revision_use_rollout_sampling: bool = False
    gamma: float = 1.0
    bonus_enabled: bool = True
    bonus_alpha: float = 0.05
    seeded_slots: bool = True
    append_eos: bool = True

    def __post_init__(self) -> None:
        _finite(f"{_HS}.threshold", self.threshold)
        if self.threshold <= 0:
            raise UserError(
                f"{_HS}.threshold must be > 0 (1.0 = revise groups without a perfect rollout), "
                f"got {self.threshold}"
            )
        _positive_int(f"{_HS}.candidateLimit", self.candidate_limit, upper=4096)
        _positive_int(f"{_HS}.revisionsPerCandidate", self.revisions_per_candidate, upper=64)
        _choice(f"{_HS}.trainUnder", self.train_under, ("hindsight", "instruction"))
        _choice(f"{_HS}.incorporation", self.incorporation, ("replace", "append"))
        _choice(f"{_HS}.fallback", self.fallback, ("duplicate-best", "skip"))
        _choice(f"{_HS}.promptTemplate", self.prompt_template, ("auto", "constraint", "rubric"))
        _finite(f"{_HS}.revision.temperature", self.revision_temperature)
        if self.revision_temperature < 0:
            raise UserError(
                f"{_HS}.revision.temperature must be >= 0 (0 = greedy), got {self.revision_temperature}"
            )
        _finite(f"{_HS}.revision.topP", self.revision_top_p)
        if not 0 < self.revision_top_p <= 1:
            raise UserError(f"{_HS}.revision.topP must be in (0, 1], got {self.revision_top_p}")
        if self.revision_max_tokens is not None:
            _positive_int(f"{_HS}.revision.maxTokens", self.revision_max_tokens)
        _finite(f"{_HS}.gamma", self.gamma)
        if self.gamma < 0:
            raise UserError(f"{_HS}.gamma must be >= 0 (0 = unshaped ratio), got {self.gamma}")
        _finite(f"{_HS}.bonus.alpha", self.bonus_alpha)
        if not 0 <= self.bonus_alpha <= 1:
            raise UserError(f"{_HS}.bonus.alpha must be in [0, 1], got {self.bonus_alpha}")

    @property
    def bonus_active(self) -> bool:
        """BR changes rewards only when enabled with a non-zero α (the released code checks both)."""
        return self.bonus_enabled and self.bonus_alpha > 0


@dataclass(frozen=True)
class LossConfig:
    """Settings of :func:`herl.core.loss.herl_policy_loss` (``spec.algorithm``).

    ``clip_ratio_low`` / ``clip_ratio_high`` default to ``clip_ratio`` when None, as in veRL.
    ``dual_clip_c`` is veRL's ``clip_ratio_c`` (lower bound of the ratio for negative advantages).
    ``gamma`` is the HE shaping constant (0 = plain ratio).
    """

    clip_ratio: float = 0.2
    clip_ratio_low: float | None = None
    clip_ratio_high: float | None = None
    dual_clip_c: float = 3.0
    gamma: float = 1.0
    loss_agg_mode: LossAggMode = "token-mean"

    def __post_init__(self) -> None:
        _finite("spec.algorithm.clipRatio", self.clip_ratio)
        if not 0 < self.clip_ratio < 1:
            raise UserError(f"spec.algorithm.clipRatio must be in (0, 1), got {self.clip_ratio}")
        if self.clip_ratio_low is not None:
            _finite("spec.algorithm.clipRatioLow", self.clip_ratio_low)
            if not 0 <= self.clip_ratio_low < 1:
                raise UserError(f"spec.algorithm.clipRatioLow must be in [0, 1), got {self.clip_ratio_low}")
        if self.clip_ratio_high is not None:
            _finite("spec.algorithm.clipRatioHigh", self.clip_ratio_high)
            if self.clip_ratio_high < 0:
                raise UserError(f"spec.algorithm.clipRatioHigh must be >= 0, got {self.clip_ratio_high}")
        _finite("spec.algorithm.dualClipC", self.dual_clip_c)
        if self.dual_clip_c <= 1:
            raise UserError(f"spec.algorithm.dualClipC must be > 1 (dual-clip bound), got {self.dual_clip_c}")
        _finite(f"{_HS}.gamma", self.gamma)
        if self.gamma < 0:
            raise UserError(f"{_HS}.gamma must be >= 0 (0 = unshaped ratio), got {self.gamma}")
        _choice(
            "spec.algorithm.lossAggMode",
            self.loss_agg_mode,
            ("token-mean", "token-sum", "seq-mean-token-mean", "seq-mean-token-sum"),
        )

    @property
    def low(self) -> float:
        return self.clip_ratio if self.clip_ratio_low is None else self.clip_ratio_low

    @property
    def high(self) -> float:
        return self.clip_ratio if self.clip_ratio_high is None else self.clip_ratio_high


@dataclass(frozen=True)
class RevisionSampling:
    """Sampling settings for the ONE batched revision call.

    A field set to None means "use the rollout's own setting" (temperature, top_p, response length).
    ``use_rollout_sampling`` True sets all three to None: the released sync-mode behaviour.
    """

    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    use_rollout_sampling: bool = False
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: HindsightConfig) -> RevisionSampling:
        if cfg.revision_use_rollout_sampling:
            return cls(temperature=None, top_p=None, max_tokens=None, use_rollout_sampling=True)
        return cls(
            temperature=cfg.revision_temperature, top_p=cfg.revision_top_p, max_tokens=cfg.revision_max_tokens
        )


Domain = Literal["if", "medical"]


def released_hindsight_config(domain: Domain = "if") -> HindsightConfig:
    """The stage as the released launch scripts actually ran it (``official-*`` presets).

    Differences from our defaults: the rollout's sampling is used for revisions (the 0.3 setting was
    ignored in sync mode), the constraint template is forced (the rubric one was unreachable), the
    slot draw is unseeded, and γ is 1 for instruction following but 0.1 for medicine.
    """
    _choice("domain", domain, ("if", "medical"))
    return HindsightConfig(
        enabled=True,
        threshold=1.0,
        candidate_limit=16,
        revisions_per_candidate=1,
        train_under="hindsight",
        incorporation="replace",
        fallback="duplicate-best",
        prompt_template="constraint",
        chat_template=False,
        revision_temperature=0.3,
        revision_top_p=1.0,
        revision_max_tokens=None,
        revision_use_rollout_sampling=True,
        gamma=1.0 if domain == "if" else 0.1,
        bonus_enabled=True,
        bonus_alpha=0.05,
        seeded_slots=False,
        append_eos=True,
    )


def released_loss_config(domain: Domain = "if") -> LossConfig:
    """veRL defaults plus the released ``he_shaping_gamma`` (1 for IF, 0.1 for medicine)."""
    _choice("domain", domain, ("if", "medical"))
    return LossConfig(
        clip_ratio=0.2, dual_clip_c=3.0, gamma=1.0 if domain == "if" else 0.1, loss_agg_mode="token-mean"
    )


def hindsight_config_from_spec(spec: Any) -> HindsightConfig:
    """The one mapping from a HeRLJob spec to :class:`HindsightConfig`, used by both engines.

    ``spec`` is a ``herl.api.model.HeRLJobSpec`` (duck-typed: the core never imports the API layer).
    ``promptTemplate: auto`` is resolved here, by reward type (rubric template for the rubric judge), so
    the local engine and veRL pick the same template for the same job.
    """
    h, rev, bonus = spec.hindsight_, spec.revision_, spec.bonus_
    template = h.prompt_template
    if template == "auto":
        template = "rubric" if spec.reward_.type == "rubric-judge" else "constraint"
    return HindsightConfig(
        enabled=h.enabled,
        threshold=h.threshold,
        candidate_limit=h.candidate_limit,
        revisions_per_candidate=h.revisions_per_candidate,
        train_under=h.train_under,
        incorporation=h.incorporation,
        fallback=h.fallback,
        prompt_template=template,
        chat_template=h.chat_template,
        revision_temperature=rev.temperature,
        revision_top_p=rev.top_p,
        revision_max_tokens=spec.revision_max_tokens,
        revision_use_rollout_sampling=rev.use_rollout_sampling,
        gamma=h.gamma,
        bonus_enabled=bonus.enabled,
        bonus_alpha=bonus.alpha,
        seeded_slots=h.seeded_slots,
    )


def loss_config_from_spec(spec: Any) -> LossConfig:
    """``spec.algorithm`` clip / dual-clip / aggregation, plus the hindsight shaping gamma."""
    a = spec.algorithm_
    return LossConfig(
        clip_ratio=a.clip_ratio,
        dual_clip_c=a.dual_clip_c,
        gamma=spec.hindsight_.gamma,
        loss_agg_mode=a.loss_agg_mode,
    )
