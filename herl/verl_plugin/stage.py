"""The hindsight stage on veRL rows: tokens in, tokens out, the algorithm from :mod:`herl.core`.

veRL 0.9.1's v1 trainer keeps each trajectory as one un-padded row in TransferQueue (``prompts``,
``responses``, ``response_mask``, ``rm_scores``... as 1-D tensors). This module works on that
row view (:class:`Row`): it decodes rows into the core's text records, calls
:func:`herl.core.stage.run_hindsight_stage` once (one batched generation call through
``generate_tokens``), and applies the outcomes back to token rows:

- BR: each Δ is spread evenly over the candidate's response tokens (:func:`herl.core.spread_bonus`);
- the kept revision becomes an HE row: prompt = the hindsight prompt as raw tokens (or the original
  prompt tokens under ``train_under=instruction``), left-truncated to ``max_prompt_length``;
  response = the generated token ids (EOS appended, :func:`herl.core.he_response_tokens`); reward on
  its last token; ``he`` set (the he_mask);
- ``duplicate-best`` copies the best original row (its shaped rewards included, no he_mask).

:func:`apply_hindsight_to_dataproto` runs the same code on a padded :class:`verl.DataProto` (left-padded
prompts, right-padded responses, the layout veRL's legacy trainer and most tools use); the tests use it
with a fake generator in place of vLLM.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from herl.core import (
    HindsightConfig,
    Rollout,
    RolloutGroup,
    StageResult,
    he_response_tokens,
    run_hindsight_stage,
)
from herl.core.config import RevisionSampling
from herl.rewards.types import RewardResult


@dataclass
class Row:
    """One trajectory, un-padded. ``extra`` is opaque to the stage (engine fields, tags) and copied."""

    key: str
    uid: str
    prompt_ids: list[int]
    response_ids: list[int]
    response_mask: list[int]
    token_scores: list[float]
    result: RewardResult
    rollout_log_probs: list[float] | None = None
    he: bool = False
    changed: bool = False
    """Tokens replaced (HE row or duplicate): every per-token field must be rewritten."""
    scores_changed: bool = False
    """Only the token rewards changed (a BR-shaped candidate)."""
    appended: bool = False
    source_key: str | None = None
    """For a duplicate or an appended row: the key of the row whose fields it copies."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def reward(self) -> float:
        return float(sum(self.token_scores))


@dataclass(frozen=True)
class TokenRevision:
    """What the rollout engine returned for one hindsight prompt."""

    token_ids: list[int]
    log_probs: list[float] | None = None


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


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=True)


def _encode_raw(tokenizer: Any, text: str) -> list[int]:
    """Raw text to ids, no special tokens (released: the revise prompt has no BOS/chat template)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _valid_response(row: Row) -> list[int]:
    return [t for t, m in zip(row.response_ids, row.response_mask, strict=True) if m]


def _spread(row: Row, delta: float) -> None:
    count = sum(1 for m in row.response_mask if m)
    if count == 0:
        return  # released: rows without response tokens are skipped
    per = delta / count
    row.token_scores = [s + per if m else s for s, m in zip(row.token_scores, row.response_mask, strict=True)]
    row.scores_changed = True


@dataclass
class StageReport:
    """The core's StageResult plus the step metrics the plugin logs (``herl/*``)."""

    result: StageResult
    metrics: dict[str, float]
    sampling: dict[str, Any]


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
    after the last row of their group.
    """
    rows = [copy.copy(r) for r in rows]
    order: list[str] = []
    members: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        if r.uid not in members:
            members[r.uid] = []
            order.append(r.uid)
        members[r.uid].append(i)

    groups = []
    for gi, uid in enumerate(order):
        idx = members[uid]
        prompt = _decode(tokenizer, rows[idx[0]].prompt_ids)
        rollouts = tuple(
            Rollout(
                response=_decode(tokenizer, _valid_response(rows[i])),
                reward=rows[i].result,
                train_reward=rows[i].reward,
            )
            for i in idx
        )
        groups.append(RolloutGroup(uid=uid, prompt=prompt, rollouts=rollouts, record=gi))

    generated: list[TokenRevision] = []
    used_sampling: dict[str, Any] = {}

    def generate_fn(prompts: list[str], sampling: RevisionSampling) -> list[str]:
        params = revision_sampling_params(sampling, rollout)
        used_sampling.update(params)
        ids = [_encode_raw(tokenizer, p)[-max_prompt_length:] for p in prompts]
        outs = list(generate_tokens(ids, dict(params)))
        if len(outs) != len(ids):
            raise ValueError(f"generate_tokens returned {len(outs)} outputs for {len(ids)} prompts")
        generated.extend(outs)
        return [_decode(tokenizer, o.token_ids) for o in outs]

    def score_fn(items: list[tuple[Any, str]]) -> list[RewardResult]:
        payload = []
        for n, (gi, text) in enumerate(items):
            payload.append((rows[members[order[gi]][0]], list(generated[n].token_ids), text))
        return list(score_revisions(payload))

    chat_wrap = None
    if cfg.chat_template:

        def chat_wrap(text: str) -> str:
            return tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )

    result = run_hindsight_stage(groups, generate_fn, score_fn, cfg, rng, chat_wrap=chat_wrap)

    k = cfg.revisions_per_candidate
    job_pos = {id(job): j for j, job in enumerate(result.jobs)}
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    appended: dict[int, list[Row]] = {}
    for oc in result.outcomes:
        idx = members[order[oc.group]]
        for ci, delta in oc.bonus:
            _spread(rows[idx[ci]], delta)
        if oc.row is None or oc.slot is None:
            continue
        new = oc.row
        template = rows[idx[0]]
        if new.is_he or new.source is None:
            rev = next(
                (
                    rv
                    for rv in oc.revisions
                    if rv.text == new.response and (new.prompt_is_original or rv.job.prompt == new.prompt)
                ),
                None,
            )
            if rev is None:
                raise RuntimeError(f"group {oc.uid}: kept revision not found among its revisions")
            gen = generated[job_pos[id(rev.job)] * k + rev.sample]
            if new.prompt_is_original:
                prompt_ids = list(template.prompt_ids)
            else:
                prompt_ids = _encode_raw(tokenizer, new.prompt)[-max_prompt_length:]
            resp_t, mask_t = he_response_tokens(
                gen.token_ids, max_response_length, eos, pad, append_eos=new.append_eos
            )
            n = int(mask_t.sum())
            resp = resp_t[:n].tolist()
            scores = [0.0] * n
            if n:
                scores[-1] = float(new.reward)
            logp = None
            if template.rollout_log_probs is not None:
                src = list(gen.log_probs or [])[:n]
                logp = src + [0.0] * (n - len(src))
            built = Row(
                key=template.key,
                uid=oc.uid,
                prompt_ids=prompt_ids,
                response_ids=resp,
                response_mask=[1] * n,
                token_scores=scores,
                result=new.result,
                rollout_log_probs=logp,
                he=bool(new.is_he),
                changed=True,
                source_key=template.key,
                extra=copy.deepcopy(template.extra),
            )
        else:
            src_row = rows[idx[new.source]]
            built = copy.deepcopy(src_row)
            built.he = False
            built.changed = True
            built.source_key = src_row.key
        if oc.slot < len(idx):
            target = rows[idx[oc.slot]]
            built.key = target.key
            built.extra = copy.deepcopy(target.extra)
            built.appended = False
            rows[idx[oc.slot]] = built
        else:
            built.key = f"{oc.uid}_{len(idx)}_0"
            built.appended = True
            appended.setdefault(idx[-1], []).append(built)

    out: list[Row] = []
    for i, r in enumerate(rows):
        out.append(r)
        out.extend(appended.get(i, []))

    metrics = {f"herl/{k_}": float(v) for k_, v in result.metrics.items()}
    total = sum(sum(r.response_mask) for r in out)
    he_tok = sum(sum(r.response_mask) for r in out if r.he)
    metrics["herl/he_token_frac"] = he_tok / total if total else 0.0
    metrics["herl/he_rows"] = float(sum(r.he for r in out))
    originals = [r.result for r in rows]
    metrics["herl/all_met_rate"] = float(np.mean([res.all_met for res in originals])) if originals else 0.0
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
