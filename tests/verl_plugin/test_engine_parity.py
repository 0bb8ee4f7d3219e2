"""Both engines' hindsight adapters on one set of groups: the same rows, rewards, masks and advantages.

The local engine goes through ``herl.engine.hindsight.engine_hindsight`` and its GRPO path
(``herl.engine.update.row_advantages``); the cluster engine through ``herl.verl_plugin.stage.run_stage_on_rows``
and veRL's own ``compute_grpo_outcome_advantage`` on the padded batch it would train on. Generation and
scoring are the same deterministic stand-ins on both sides (different ids per prompt, one blank).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest
import torch
from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

from herl.core import HindsightConfig, LossConfig, TokenRow, last_token_scores, slot_rng
from herl.engine.hindsight import engine_hindsight
from herl.engine.settings import EngineSettings
from herl.engine.update import row_advantages
from herl.rewards.types import ConstraintVerdict, RewardResult
from herl.verl_plugin.stage import RolloutSampling, TokenRevision, rows_to_dataproto, run_stage_on_rows

SEED, STEP, MAX_PROMPT, MAX_RESP = 11, 4, 512, 24
PROMPTS = ["Write a short poem about the sea.", "The answer must contain the word ocean.", "Say hello."]
DRAFTS = ["hello world", "the sea lines", "ocean words", "three lines"]
SCORES = [[0.5, 0.5, 0.0, 0.0], [1.0, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.0]]
# what the "policy" answers per hindsight prompt, keyed by the draft it revises ("" = a blank revision)
ANSWERS = {"hello world": "", "the sea lines": "ocean words final", "ocean words": "revised answer"}


def _result(score: float) -> RewardResult:
    met = round(score * 4)
    cons = tuple(ConstraintVerdict(id=f"c{i}", description=f"rule {i}", followed=i < met) for i in range(4))
    return RewardResult(score=score, dense=score, all_met=met == 4, constraints=cons, data_source="ifeval")


def _score_text(text: str) -> RewardResult:
    return _result(1.0 if "ocean" in text else 0.25 if "revised" in text else 0.0)


def _groups(tok: Any) -> list[list[TokenRow]]:
    groups = []
    for g, (prompt, scores) in enumerate(zip(PROMPTS, SCORES, strict=True)):
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        rows = []
        for j, s in enumerate(scores):
            r = [*tok(DRAFTS[j], add_special_tokens=False)["input_ids"], tok.eos_token_id]
            rows.append(
                TokenRow(
                    uid=f"uid{g}",
                    key=f"uid{g}_{j}_0",
                    prompt_ids=p,
                    response_ids=r,
                    token_scores=last_token_scores(len(r), s),
                    result=_result(s),
                    rollout_log_probs=[-0.5] * len(r),
                )
            )
        groups.append(rows)
    return groups


def _answer_ids(tok: Any, prompt_ids: Sequence[int]) -> list[int]:
    text = tok.decode(list(prompt_ids))
    draft = next(d for d in ANSWERS if d in text)
    ans = ANSWERS[draft]
    return [*tok(ans, add_special_tokens=False)["input_ids"], tok.eos_token_id] if ans else []


def _settings(cfg: HindsightConfig) -> EngineSettings:
    return EngineSettings(
        hindsight=cfg,
        loss=LossConfig(),
        group_size=4,
        batch_prompts=3,
        mini_batch_prompts=3,
        micro_batch_rows=4,
        ppo_epochs=1,
        lr=1e-6,
        weight_decay=0.0,
        grad_clip=1.0,
        seed=SEED,
        temperature=1.0,
        top_p=1.0,
        max_prompt_length=MAX_PROMPT,
        max_response_length=MAX_RESP,
        max_instruction_length=MAX_PROMPT,
        kl_coef=0.0,
        kl_type="low_var_kl",
        entropy_coeff=0.0,
    )


def _local(tok: Any, cfg: HindsightConfig) -> list[TokenRow]:
    groups = _groups(tok)
    for g in groups:  # the local engine keeps no rollout log-probs
        for r in g:
            r.rollout_log_probs = None

    def generate(prompts, *, temperature, top_p, max_new_tokens, seed):
        return [_answer_ids(tok, p) for p in prompts]

    new, metrics = engine_hindsight(
        groups,
        [{"uid": f"uid{g}"} for g in range(len(groups))],
        step=STEP,
        settings=_settings(cfg),
        tokenizer=tok,
        generate=generate,
        score=lambda items: [_score_text(text) for _, text in items],
        eos_id=tok.eos_token_id,
        pad_id=tok.pad_token_id,
        timing={},
    )
    assert metrics["herl/empty_revisions"] == 2  # draft "hello world" of groups 0 and 2
    return [r for g in new for r in g]


def _cluster(tok: Any, cfg: HindsightConfig) -> list[TokenRow]:
    rows = [r for g in _groups(tok) for r in g]

    def generate_tokens(prompt_ids, params):
        return [TokenRevision(token_ids=_answer_ids(tok, p), log_probs=None) for p in prompt_ids]

    out, report = run_stage_on_rows(
        rows,
        tokenizer=tok,
        generate_tokens=generate_tokens,
        score_revisions=lambda items: [
            _score_text(tok.decode(ids, skip_special_tokens=True)) for _, ids, _ in items
        ],
        cfg=cfg,
        rng=slot_rng(SEED, STEP),
        rollout=RolloutSampling(response_length=MAX_RESP),
        max_prompt_length=MAX_PROMPT,
        max_response_length=MAX_RESP,
    )
    assert report.metrics["herl/empty_revisions"] == 2
    return out


@pytest.mark.parametrize(
    "cfg",
    [
        HindsightConfig(),
        HindsightConfig(incorporation="append"),
        HindsightConfig(train_under="instruction", fallback="skip"),
        dataclasses.replace(HindsightConfig(), bonus_alpha=0.2),
    ],
    ids=["replace", "append", "naive-he-skip", "alpha-0.2"],
)
def test_local_and_cluster_adapters_agree(tokenizer: Any, cfg: HindsightConfig) -> None:
    local, cluster = _local(tokenizer, cfg), _cluster(tokenizer, cfg)
    fields = ("uid", "prompt_ids", "response_ids", "response_mask", "token_scores", "he", "kind", "appended")
    assert [tuple(getattr(r, f) for f in fields) for r in local] == [
        tuple(getattr(r, f) for f in fields) for r in cluster
    ]
    assert any(r.he for r in local)  # the stand-ins do produce an HE row and BR-shaped rows
    assert any(r.scores_changed and not r.changed for r in local)
    # the cluster trains on veRL's advantage over the padded batch; the local engine on its own path
    batch = rows_to_dataproto(cluster, tokenizer.pad_token_id)
    theirs, _ = compute_grpo_outcome_advantage(
        batch.batch["token_level_scores"], batch.batch["response_mask"], batch.non_tensor_batch["uid"]
    )
    ours = torch.tensor(row_advantages(local))
    # equal to a float32 ulp: the core normalises in float64 and rounds once, veRL works in float32
    torch.testing.assert_close(ours, theirs[:, 0], rtol=0, atol=2.5e-7)
    assert torch.equal(batch.batch["he_mask"].sum(-1) > 0, torch.tensor([r.he for r in local]))
