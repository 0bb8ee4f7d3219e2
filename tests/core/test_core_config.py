"""HindsightConfig / LossConfig defaults, validation and the released presets."""

from __future__ import annotations

import dataclasses

import pytest

from herl.core import (
    HindsightConfig,
    LossConfig,
    RevisionSampling,
    released_hindsight_config,
    released_loss_config,
)
from herl.errors import UserError


def test_our_defaults() -> None:
    c = HindsightConfig()
    assert (c.enabled, c.threshold, c.candidate_limit, c.revisions_per_candidate) == (True, 1.0, 16, 1)
    assert (c.train_under, c.incorporation, c.fallback, c.prompt_template) == (
        "hindsight",
        "replace",
        "duplicate-best",
        "auto",
    )
    assert c.chat_template is False
    assert (c.revision_temperature, c.revision_top_p, c.revision_max_tokens) == (0.3, 1.0, None)
    assert c.revision_use_rollout_sampling is False
    assert (c.gamma, c.bonus_enabled, c.bonus_alpha, c.seeded_slots, c.append_eos) == (
        1.0,
        True,
        0.05,
        True,
        True,
    )
    lc = LossConfig()
    assert (lc.clip_ratio, lc.low, lc.high, lc.dual_clip_c, lc.gamma, lc.loss_agg_mode) == (
        0.2,
        0.2,
        0.2,
        3.0,
        1.0,
        "token-mean",
    )


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        HindsightConfig().threshold = 0.5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"candidate_limit": 0}, "candidateLimit"),
        ({"candidate_limit": True}, "candidateLimit"),
        ({"revisions_per_candidate": 0}, "revisionsPerCandidate"),
        ({"train_under": "x"}, "trainUnder"),
        ({"incorporation": "insert"}, "incorporation"),
        ({"fallback": "none"}, "fallback"),
        ({"prompt_template": "medical"}, "promptTemplate"),
        ({"revision_temperature": -0.1}, "revision.temperature"),
        ({"revision_top_p": 0.0}, "revision.topP"),
        ({"revision_top_p": 1.5}, "revision.topP"),
        ({"revision_max_tokens": 0}, "revision.maxTokens"),
        ({"gamma": -1.0}, "gamma"),
        ({"bonus_alpha": 1.5}, "bonus.alpha"),
        ({"bonus_alpha": -0.1}, "bonus.alpha"),
    ],
)
def test_hindsight_validation_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(UserError, match=field.replace(".", r"\.")):
        HindsightConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"clip_ratio": 0.0}, "clipRatio"),
        ({"clip_ratio": 1.0}, "clipRatio"),
        ({"clip_ratio_low": 1.0}, "clipRatioLow"),
        ({"clip_ratio_high": -0.1}, "clipRatioHigh"),
        ({"dual_clip_c": 1.0}, "dualClipC"),
        ({"gamma": -0.5}, "gamma"),
        ({"loss_agg_mode": "mean"}, "lossAggMode"),
    ],
)
def test_loss_validation(kwargs: dict, field: str) -> None:
    with pytest.raises(UserError, match=field):
        LossConfig(**kwargs)


def test_asymmetric_clip() -> None:
    lc = LossConfig(clip_ratio=0.2, clip_ratio_high=0.28)
    assert (lc.low, lc.high) == (0.2, 0.28)


def test_revision_sampling() -> None:
    ours = RevisionSampling.from_config(HindsightConfig(revision_max_tokens=512))
    assert (ours.temperature, ours.top_p, ours.max_tokens, ours.use_rollout_sampling) == (
        0.3,
        1.0,
        512,
        False,
    )
    rel = RevisionSampling.from_config(released_hindsight_config("if"))
    assert (rel.temperature, rel.top_p, rel.max_tokens, rel.use_rollout_sampling) == (None, None, None, True)


def test_released_presets() -> None:
    if_cfg = released_hindsight_config("if")
    med = released_hindsight_config("medical")
    for c in (if_cfg, med):
        assert c.prompt_template == "constraint"
        assert c.seeded_slots is False
        assert c.revision_use_rollout_sampling is True
        assert (c.incorporation, c.fallback, c.train_under, c.chat_template) == (
            "replace",
            "duplicate-best",
            "hindsight",
            False,
        )
        assert (c.bonus_alpha, c.threshold, c.candidate_limit) == (0.05, 1.0, 16)
    assert (if_cfg.gamma, med.gamma) == (1.0, 0.1)
    assert (released_loss_config("if").gamma, released_loss_config("medical").gamma) == (1.0, 0.1)
    with pytest.raises(UserError):
        released_hindsight_config("math")  # type: ignore[arg-type]


def test_bonus_active() -> None:
    assert HindsightConfig().bonus_active
    assert not HindsightConfig(bonus_enabled=False).bonus_active
    assert not HindsightConfig(bonus_alpha=0.0).bonus_active


def test_one_spec_mapping_serves_both_engines() -> None:
    """The local engine and the veRL launcher read the same HindsightConfig from a spec."""
    from herl.api.model import HeRLJobSpec
    from herl.core import hindsight_config_from_spec, loss_config_from_spec

    spec = HeRLJobSpec.model_validate(
        {
            "model": {"path": "/m"},
            "data": {"train": "/d"},
            "algorithm": {
                "clipRatio": 0.25,
                "hindsight": {"incorporation": "append", "gamma": 0.5, "revision": {"temperature": 0.7}},
            },
        }
    )
    cfg = hindsight_config_from_spec(spec)
    assert (cfg.incorporation, cfg.gamma, cfg.revision_temperature) == ("append", 0.5, 0.7)
    assert cfg.prompt_template == "constraint"  # auto, resolved by reward type
    assert cfg.revision_max_tokens == spec.data_.max_response_length
    assert loss_config_from_spec(spec).gamma == 0.5 and loss_config_from_spec(spec).clip_ratio == 0.25
    judged = HeRLJobSpec.model_validate(
        {
            "model": {"path": "/m"},
            "data": {"train": "/d"},
            "reward": {"type": "rubric-judge", "judge": {"endpoint": "https://j/v1"}},
        }
    )
    assert hindsight_config_from_spec(judged).prompt_template == "rubric"
