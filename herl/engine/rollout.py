"""Rollout for the local engine: which prompts a step sees, sampling G responses each, scoring them.

Mixed into :class:`herl.engine.trainer.LocalTrainer`, which owns the state named in
:class:`RolloutMixin`'s annotations (set by ``prepare``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from herl.core import TokenRow, last_token_scores
from herl.engine import policy
from herl.engine.inputs import user_text
from herl.engine.settings import EngineSettings
from herl.errors import UserError
from herl.rewards.types import RewardResult, count_errors


def derive_seed(seed: int, step: int, phase: int) -> int:
    """Per-step, per-phase seed: a resumed run samples exactly what an uninterrupted one would."""
    return int(np.random.SeedSequence([seed, step, phase, 0x4845]).generate_state(1)[0] & 0x7FFFFFFF)


def check_reward_errors(results: Sequence[RewardResult], *, step: int, limit: float) -> int:
    """The number of failed rewards among a step's scored responses; past ``limit`` (a fraction), stop.

    A failed reward scores 0 without judging the response (a checker that cannot load, a judge that
    cannot be reached). Training on those zeros would quietly teach the policy noise, so the step is
    refused before its update and the message names the most common reasons.
    """
    n = count_errors(results)
    if results and n / len(results) > limit:
        reasons = Counter(r.error for r in results if r.error is not None)
        top = "; ".join(f"{reason} (×{k})" for reason, k in reasons.most_common(3))
        raise UserError(
            f"step {step}: {n} of {len(results)} rewards failed ({n / len(results):.0%}, above "
            f"spec.reward.maxErrorFraction {limit:g}); most common: {top}. Stopped without training on "
            f"them: fix the reward (checker packages and data, judge endpoint and key) or raise "
            f"spec.reward.maxErrorFraction. Checkpoints of earlier steps are kept.",
            exit_code=3,
            reason="RewardErrors",
        )
    return n


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class RolloutMixin:
    """Data order, generation and scoring of the local engine."""

    settings: EngineSettings
    spec: Any
    model: Any
    tokenizer: Any
    records: list[dict[str, Any]]
    prompt_ids: list[list[int]]
    eos_ids: set[int]
    pad_id: int
    device: torch.device
    autocast: torch.dtype | None
    last_rollouts: list[str]

    def batch_indices(self, cursor: int) -> list[int]:
        """Dataset indices for the ``batch_prompts`` prompts starting at stream position ``cursor``.

        The stream is the dataset reshuffled each epoch with a seeded permutation, so the cursor alone
        (saved in checkpoints) says where a resumed run continues."""
        n = len(self.records)
        out = []
        for c in range(cursor, cursor + self.settings.batch_prompts):
            epoch, pos = divmod(c, n)
            order = np.random.default_rng([self.settings.seed, epoch, 0xDA7A]).permutation(n)
            out.append(int(order[pos]))
        return out

    def planned_steps(self, override: int | None) -> int:
        """Total training steps: the override, else ``algorithm.totalSteps``, else whole batches × epochs."""
        if override is not None:
            return override
        a = self.spec.algorithm_
        if a.total_steps is not None:
            return a.total_steps
        return max(1, len(self.records) // self.settings.batch_prompts) * a.epochs

    def score(self, items: Sequence[tuple[dict[str, Any], str]]) -> list[RewardResult]:
        """Score (record, response text) pairs with the spec's reward, in order."""
        if not items:
            return []
        if self.spec.reward_.type == "rubric-judge":
            from herl.rewards.judge import JudgeConfig, JudgeItem, score_batch_judge

            cfg = JudgeConfig.from_spec(self.spec.reward_.judge)
            jitems = [
                JudgeItem(
                    question=str((rec.get("extra_info") or {}).get("question") or user_text(rec["prompt"])),
                    response=text,
                    rubric=tuple((rec.get("extra_info") or {}).get("rubric") or ()),
                    data_source=str(rec.get("data_source", "")),
                )
                for rec, text in items
            ]
            return score_batch_judge(jitems, cfg)
        from herl.rewards.batch import ScoreItem, resolve_workers, score_batch

        sitems = [
            ScoreItem(
                response=text,
                ground_truth=rec["reward_model"]["ground_truth"],
                data_source=rec["data_source"],
                prompt=user_text(rec["prompt"]),
            )
            for rec, text in items
        ]
        ifs = self.spec.reward_.instruction_following
        workers = resolve_workers(ifs.workers if ifs is not None else 0)
        # A pool pays IPC per chunk; small batches are faster in this process.
        if len(sitems) < 32:
            workers = 1
        return score_batch(sitems, workers=workers)

    def _generate(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        seed: int,
    ) -> list[list[int]]:
        ctx = torch.autocast(self.device.type, dtype=self.autocast) if self.autocast else _null()
        with ctx:
            return policy.generate(
                self.model,
                prompts,
                temperature=temperature,
                top_p=top_p,
                max_new_tokens=max_new_tokens,
                eos_ids=self.eos_ids,
                pad_id=self.pad_id,
                seed=seed,
            )

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def sample(self, step: int, idx: list[int], timing: dict[str, float]) -> list[list[int]]:
        """G responses for each of the step's prompts: one batched, seeded call."""
        s = self.settings
        t = time.perf_counter()
        prompts = [self.prompt_ids[i] for i in idx for _ in range(s.group_size)]
        responses = self._generate(
            prompts,
            temperature=s.temperature,
            top_p=s.top_p,
            max_new_tokens=s.max_response_length,
            seed=derive_seed(s.seed, step, 0),
        )
        timing["gen"] = time.perf_counter() - t
        return responses

    def score_groups(
        self, step: int, idx: list[int], responses: list[list[int]], timing: dict[str, float]
    ) -> list[list[TokenRow]]:
        """Score the responses and lay them out as one group of token rows per prompt (veRL's layout:
        the reward on each response's last token)."""
        s = self.settings
        t = time.perf_counter()
        records = [self.records[i] for i in idx]
        texts = [self.decode(r) for r in responses]
        self.last_rollouts = texts
        results = self.score([(records[k // s.group_size], text) for k, text in enumerate(texts)])
        timing["reward"] = time.perf_counter() - t
        groups: list[list[TokenRow]] = []
        for g, i in enumerate(idx):
            rows = []
            for j in range(s.group_size):
                k = g * s.group_size + j
                rows.append(
                    TokenRow(
                        uid=f"{step}-{g}",
                        prompt_ids=self.prompt_ids[i],
                        response_ids=responses[k],
                        token_scores=last_token_scores(len(responses[k]), results[k].score),
                        result=results[k],
                    )
                )
            groups.append(rows)
        return groups
