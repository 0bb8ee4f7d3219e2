"""HeRLJob spec → the settings the local engine runs with.

The hindsight and loss settings come from :mod:`herl.core.config` (``hindsight_config_from_spec``,
``loss_config_from_spec``), the same mapping the veRL launcher uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from herl.core.config import HindsightConfig, LossConfig, hindsight_config_from_spec, loss_config_from_spec


@dataclass(frozen=True)
class EngineSettings:
    """Everything a training step needs, resolved from the spec once."""

    hindsight: HindsightConfig
    loss: LossConfig
    group_size: int
    batch_prompts: int
    mini_batch_prompts: int
    micro_batch_rows: int
    ppo_epochs: int
    lr: float
    weight_decay: float
    grad_clip: float
    seed: int
    temperature: float
    top_p: float
    max_prompt_length: int
    max_response_length: int
    max_instruction_length: int
    kl_coef: float
    kl_type: str
    entropy_coeff: float
    max_reward_error_fraction: float = 0.05

    @property
    def use_kl(self) -> bool:
        return self.kl_coef > 0

    @classmethod
    def from_spec(cls, spec: Any) -> EngineSettings:
        a, d, kl = spec.algorithm_, spec.data_, spec.kl_loss_
        return cls(
            hindsight=hindsight_config_from_spec(spec),
            loss=loss_config_from_spec(spec),
            group_size=a.group_size,
            batch_prompts=a.train_batch_size,
            mini_batch_prompts=min(a.mini_batch_size, a.train_batch_size),
            micro_batch_rows=a.micro_batch_size_per_gpu,
            ppo_epochs=a.ppo_epochs,
            lr=a.learning_rate,
            weight_decay=a.weight_decay,
            grad_clip=a.grad_clip,
            seed=a.seed,
            temperature=spec.rollout_.temperature,
            top_p=spec.rollout_.top_p,
            max_prompt_length=d.max_prompt_length,
            max_response_length=d.max_response_length,
            max_instruction_length=d.max_instruction_length,
            kl_coef=kl.coef if kl.enabled else 0.0,
            kl_type=kl.type,
            entropy_coeff=a.entropy_coeff,
            max_reward_error_fraction=spec.reward_.max_error_fraction,
        )
