"""Read the ``herl.*`` block of a veRL config back into the core's settings (inverse of overrides)."""

from __future__ import annotations

from typing import Any

from herl.core.config import HindsightConfig

DEFAULT_REVISION_TEMPERATURE = 0.3
DEFAULT_REVISION_TOP_P = 1.0


def _get(node: Any, key: str, default: Any = None) -> Any:
    if node is None:
        return default
    getter = getattr(node, "get", None)
    value = getter(key, default) if callable(getter) else getattr(node, key, default)
    return default if value is None else value


def hindsight_config_from_verl(config: Any) -> HindsightConfig:
    """The core HindsightConfig from ``config.herl`` (written by ``job_to_verl_overrides``).

    A missing block gives the core's defaults, so ``trainer_mode=herl_sync`` also works from a
    hand-written veRL command line.
    """
    herl = _get(config, "herl")
    h = _get(herl, "hindsight")
    r = _get(herl, "revision")
    d = HindsightConfig()
    return HindsightConfig(
        enabled=bool(_get(h, "enabled", d.enabled)),
        threshold=float(_get(h, "threshold", d.threshold)),
        candidate_limit=int(_get(h, "candidate_limit", d.candidate_limit)),
        revisions_per_candidate=int(_get(h, "revisions_per_candidate", d.revisions_per_candidate)),
        train_under=str(_get(h, "train_under", d.train_under)),  # type: ignore[arg-type]
        incorporation=str(_get(h, "incorporation", d.incorporation)),  # type: ignore[arg-type]
        fallback=str(_get(h, "fallback", d.fallback)),  # type: ignore[arg-type]
        prompt_template=str(_get(h, "prompt_template", d.prompt_template)),  # type: ignore[arg-type]
        chat_template=bool(_get(h, "chat_template", d.chat_template)),
        revision_temperature=float(_get(r, "temperature", DEFAULT_REVISION_TEMPERATURE)),
        revision_top_p=float(_get(r, "top_p", DEFAULT_REVISION_TOP_P)),
        revision_max_tokens=_get(r, "max_tokens", None),
        revision_use_rollout_sampling=bool(_get(r, "use_rollout_sampling", d.revision_use_rollout_sampling)),
        gamma=float(_get(h, "gamma", d.gamma)),
        bonus_enabled=bool(_get(h, "bonus_enabled", d.bonus_enabled)),
        bonus_alpha=float(_get(h, "bonus_alpha", d.bonus_alpha)),
        seeded_slots=bool(_get(h, "seeded_slots", d.seeded_slots)),
    )


def herl_seed(config: Any) -> int:
    herl = _get(config, "herl")
    return int(_get(herl, "seed", _get(_get(config, "data"), "seed", 42)))


def metrics_settings(config: Any) -> tuple[bool, int]:
    m = _get(_get(config, "herl"), "metrics")
    return bool(_get(m, "enabled", False)), int(_get(m, "port", 9400))
