"""The hindsight stage on veRL rows: tokens in, tokens out, the algorithm from :mod:`herl.core`.

veRL 0.9.1's v1 trainer keeps each trajectory as one un-padded row in TransferQueue (``prompts``,
``responses``, ``response_mask``, ``rm_scores``... as 1-D tensors). This module groups those rows by
``uid`` and hands them to :func:`herl.core.rows.run_token_stage`, the same code the local engine
calls: it decodes the rows, runs the stage with one batched generation call, and applies the outcomes
(BR spread over the candidate's tokens; the kept revision as an HE row under the hindsight prompt with
EOS appended; ``duplicate-best`` copying the best original). What is veRL's here: the vLLM sampling
parameters, the ``(row, ids, text)`` scoring contract of the reward loop, and the row order and keys
TransferQueue expects (an appended row follows its group under ``{uid}_{G}_0``).

:func:`apply_hindsight_to_dataproto` runs the same code on a padded :class:`verl.DataProto` (left-padded
prompts, right-padded responses, the layout veRL's legacy trainer and most tools use); the tests use it
with a fake generator in place of vLLM.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from herl.core import HindsightConfig, StageResult
from herl.core.config import RevisionSampling
from herl.core.rows import GeneratedTokens, RevisionToScore, TokenRow, run_token_stage
from herl.metrics.keys import REWARD_ERRORS
from herl.rewards.types import RewardResult, count_errors

Row = TokenRow
"""One trajectory, un-padded: the core's :class:`~herl.core.rows.TokenRow` (``key`` is the TransferQueue
key; ``extra`` holds the tags, ``extra_fields`` and dataset fields, copied along with the row)."""

TokenRevision = GeneratedTokens
"""What the rollout engine returned for one hindsight prompt (ids, and log-probs when requested)."""

TokenGenerateFn = Callable[[list[list[int]], dict[str, Any]], Sequence[TokenRevision]]
"""``(prompt_ids_list, sampling_params) -> one TokenRevision per prompt``: ONE batched call."""

ScoreRevisionsFn = Callable[[list[tuple[Row, list[int], str]]], Sequence[RewardResult]]
"""``[(row of the group (original prompt), revision ids, revision text)] -> results`` under the ORIGINAL prompt."""


@dataclass(frozen=True)
class RolloutSampling:
    """The rollout's own sampling settings (what None in :class:`RevisionSampling` falls back to)."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    response_length: int = 2048
    logprobs: bool = False


def revision_sampling_params(rev: RevisionSampling, rollout: RolloutSampling) -> dict[str, Any]:
    """vLLM sampling params for the revision call: the revision's values, else the rollout's.

    ``max_tokens`` is always explicit, so the server's default (the rollout response length) never
    silently replaces the revision length.
    """
    return {
        "temperature": rollout.temperature if rev.temperature is None else float(rev.temperature),
        "top_p": rollout.top_p if rev.top_p is None else float(rev.top_p),
        "top_k": rollout.top_k,
        "repetition_penalty": 1.0,
        "logprobs": rollout.logprobs,
        "max_tokens": int(rollout.response_length if rev.max_tokens is None else rev.max_tokens),
    }


@dataclass
class StageReport:
    """The core's StageResult plus the step metrics the plugin logs (``herl/*``)."""

    result: StageResult
    metrics: dict[str, float]
    sampling: dict[str, Any]


def group_rows(rows: Sequence[Row]) -> list[list[int]]:
    """Batch positions of each group (rows sharing a ``uid``), groups in order of first appearance."""
    members: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        members.setdefault(r.uid, []).append(i)
    return list(members.values())


def run_stage_on_rows(
    rows: list[Row],
    *,
    tokenizer: Any,
    generate_tokens: TokenGenerateFn,
    score_revisions: ScoreRevisionsFn,
    cfg: HindsightConfig,
    rng: np.random.Generator | None,
    rollout: RolloutSampling,
    max_prompt_length: int,
    max_response_length: int,
) -> tuple[list[Row], StageReport]:
    """Run the stage on ``rows`` (one step's batch); returns (new rows, report). Input rows are not mutated.

    New rows: same order as the input, with appended HE rows (``incorporation=append``) placed right
    after the last row of their group, under the new key ``{uid}_{G}_0``.
    """
    layout = group_rows(rows)
    groups = [[rows[i] for i in idx] for idx in layout]
    used_sampling: dict[str, Any] = {}

    def generate(prompt_ids: list[list[int]], sampling: RevisionSampling) -> Sequence[TokenRevision]:
        params = revision_sampling_params(sampling, rollout)
        used_sampling.update(params)
        return generate_tokens(prompt_ids, dict(params))

    def score(items: list[RevisionToScore]) -> Sequence[RewardResult]:
        return score_revisions([(groups[it.group][0], it.token_ids, it.text) for it in items])

    eos = tokenizer.eos_token_id
    new_groups, result = run_token_stage(
        groups,
        tokenizer=tokenizer,
        generate_tokens=generate,
        score_revisions=score,
        cfg=cfg,
        rng=rng,
        eos_id=eos,
        pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
        max_prompt_length=max_prompt_length,
        max_response_length=max_response_length,
    )

    placed: list[Row] = list(rows)
    after: dict[int, list[Row]] = {}
    for idx, new in zip(layout, new_groups, strict=True):
        for j, row in enumerate(new):
            if j < len(idx):
                placed[idx[j]] = row
            else:
                row.key = f"{row.uid}_{j}_0"  # veRL's key layout {uid}_{session}_{index}
                after.setdefault(idx[-1], []).append(row)
    out: list[Row] = []
    for i, r in enumerate(placed):
        out.append(r)
        out.extend(after.get(i, []))

    metrics = {f"herl/{k_}": float(v) for k_, v in result.metrics.items()}
    total = sum(sum(r.response_mask) for r in out)
    he_tok = sum(sum(r.response_mask) for r in out if r.he)
    metrics["herl/he_token_frac"] = he_tok / total if total else 0.0
    metrics["herl/he_rows"] = float(sum(r.he for r in out))
    originals = [r.result for r in rows]
    metrics["herl/all_met_rate"] = float(np.mean([res.all_met for res in originals])) if originals else 0.0
    # failed rewards of the step's rollouts (read back from reward_extra_info) and of the revisions
    metrics[REWARD_ERRORS] = float(count_errors(originals)) + result.metrics.get("revision_errors", 0.0)
    return out, StageReport(result=result, metrics=metrics, sampling=used_sampling)


# ----------------------------------------------------------------------------- DataProto adapter


RESULT_FIELD = "herl_reward_result"
"""non_tensor_batch key holding each row's RewardResult (object array) in the DataProto adapter."""


def rows_from_dataproto(batch: Any) -> list[Row]:
    """Split a padded DataProto (left-padded ``prompts``, right-padded ``responses``) into rows."""
    b = batch.batch
    prompts, responses = b["prompts"], b["responses"]
    p_len = prompts.shape[1]
    attn = b["attention_mask"]
    resp_mask = b["response_mask"] if "response_mask" in b.keys() else attn[:, p_len:]  # noqa: SIM118  (TensorDict: iteration yields rows)
    scores = b["token_level_scores"] if "token_level_scores" in b.keys() else b["rm_scores"]  # noqa: SIM118  (TensorDict: iteration yields rows)
    logp = b["rollout_log_probs"] if "rollout_log_probs" in b.keys() else None  # noqa: SIM118  (TensorDict: iteration yields rows)
    nt = batch.non_tensor_batch
    rows = []
    for i in range(prompts.shape[0]):
        pm = attn[i, :p_len].bool()
        n = int(attn[i, p_len:].sum())
        rows.append(
            Row(
                key=str(nt["key"][i]) if "key" in nt else f"{nt['uid'][i]}_{i}_0",
                uid=str(nt["uid"][i]),
                prompt_ids=prompts[i][pm].tolist(),
                response_ids=responses[i, :n].tolist(),
                response_mask=resp_mask[i, :n].long().tolist(),
                token_scores=scores[i, :n].float().tolist(),
                result=nt[RESULT_FIELD][i],
                rollout_log_probs=None if logp is None else logp[i, :n].float().tolist(),
                extra={k: nt[k][i] for k in nt if k not in (RESULT_FIELD, "uid", "key")},
            )
        )
    return rows


def rows_to_dataproto(
    rows: Sequence[Row],
    pad_token_id: int,
    meta_info: dict[str, Any] | None = None,
    *,
    min_prompt_width: int = 0,
    min_response_width: int = 0,
) -> Any:
    """Pad rows back into a DataProto: prompts left-padded, responses right-padded, plus ``he_mask``.

    Widths are the longest row, at least the given minimums (pass the input batch's widths to keep
    veRL's fixed response width; an HE row's longer hindsight prompt widens the prompt block).
    """
    from tensordict import TensorDict
    from verl import DataProto

    n = len(rows)
    p_len = max(max((len(r.prompt_ids) for r in rows), default=0), min_prompt_width)
    r_len = max(max((len(r.response_ids) for r in rows), default=0), min_response_width)
    prompts = torch.full((n, p_len), pad_token_id, dtype=torch.long)
    responses = torch.full((n, r_len), pad_token_id, dtype=torch.long)
    attn = torch.zeros((n, p_len + r_len), dtype=torch.long)
    resp_mask = torch.zeros((n, r_len), dtype=torch.long)
    scores = torch.zeros((n, r_len), dtype=torch.float32)
    he_mask = torch.zeros((n, r_len), dtype=torch.long)
    has_logp = any(r.rollout_log_probs is not None for r in rows)
    logp = torch.zeros((n, r_len), dtype=torch.float32)
    for i, r in enumerate(rows):
        lp, lr = len(r.prompt_ids), len(r.response_ids)
        if lp:
            prompts[i, p_len - lp :] = torch.tensor(r.prompt_ids, dtype=torch.long)
            attn[i, p_len - lp : p_len] = 1
        if lr:
            responses[i, :lr] = torch.tensor(r.response_ids, dtype=torch.long)
            attn[i, p_len : p_len + lr] = 1
            resp_mask[i, :lr] = torch.tensor(r.response_mask, dtype=torch.long)
            scores[i, :lr] = torch.tensor(r.token_scores, dtype=torch.float32)
            if r.he:
                he_mask[i, :lr] = resp_mask[i, :lr]
            if r.rollout_log_probs is not None:
                logp[i, :lr] = torch.tensor(r.rollout_log_probs, dtype=torch.float32)
    input_ids = torch.cat([prompts, responses], dim=1)
    position_ids = torch.clamp(torch.cumsum(attn, dim=1) - 1, min=0)
    tensors = {
        "prompts": prompts, "responses": responses, "input_ids": input_ids, "attention_mask": attn,
        "position_ids": position_ids, "response_mask": resp_mask, "token_level_scores": scores,
        "he_mask": he_mask,
    }  # fmt: skip
    if has_logp:
        tensors["rollout_log_probs"] = logp
    non_tensor: dict[str, np.ndarray] = {
        "uid": np.array([r.uid for r in rows], dtype=object),
        "key": np.array([r.key for r in rows], dtype=object),
        RESULT_FIELD: np.array([r.result for r in rows] + [None], dtype=object)[:-1],
    }
    for k in rows[0].extra.keys() if rows else ():
        arr = np.empty(n, dtype=object)
        arr[:] = [r.extra.get(k) for r in rows]
        non_tensor[k] = arr
    return DataProto(
        batch=TensorDict(tensors, batch_size=[n]),
        non_tensor_batch=non_tensor,
        meta_info=dict(meta_info or {}),
    )


def apply_hindsight_to_dataproto(
    batch: Any,
    *,
    tokenizer: Any,
    generate_tokens: TokenGenerateFn,
    score_revisions: ScoreRevisionsFn,
    cfg: HindsightConfig,
    rng: np.random.Generator | None,
    rollout: RolloutSampling,
    max_prompt_length: int,
    max_response_length: int,
) -> tuple[Any, StageReport]:
    """The stage on a padded DataProto; returns the merged DataProto (with ``he_mask``) and the report."""
    rows = rows_from_dataproto(batch)
    out, report = run_stage_on_rows(
        rows,
        tokenizer=tokenizer,
        generate_tokens=generate_tokens,
        score_revisions=score_revisions,
        cfg=cfg,
        rng=rng,
        rollout=rollout,
        max_prompt_length=max_prompt_length,
        max_response_length=max_response_length,
    )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return rows_to_dataproto(
        out,
        pad,
        meta_info=batch.meta_info,
        min_prompt_width=int(batch.batch["prompts"].shape[1]),
        min_response_width=int(batch.batch["responses"].shape[1]),
    ), report
