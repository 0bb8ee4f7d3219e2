"""The hindsight stage on veRL's real DataProto / TensorDict, with a fake generator standing in for vLLM.

The generator is the only stand-in: tokenizer, DataProto, the core's stage, BR, incorporation and
veRL's own GRPO advantage all run for real.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from tensordict import TensorDict
from verl import DataProto
from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

from herl.core import HindsightConfig, slot_rng
from herl.rewards.types import ConstraintVerdict, RewardResult
from herl.verl_plugin.stage import (
    RESULT_FIELD,
    RolloutSampling,
    TokenRevision,
    apply_hindsight_to_dataproto,
    revision_sampling_params,
)

G = 4
MAX_PROMPT, MAX_RESP = 512, 24
ROLLOUT = RolloutSampling(temperature=1.0, top_p=1.0, top_k=-1, response_length=MAX_RESP, logprobs=True)


def _result(score: float, met: int, total: int = 2) -> RewardResult:
    cons = tuple(
        ConstraintVerdict(id=f"c{i}", description=f"constraint number {i}", followed=i < met)
        for i in range(total)
    )
    return RewardResult(
        score=score, dense=score, all_met=met == total, constraints=cons, data_source="ifeval"
    )


def _batch(tokenizer, group_scores: list[list[float]]) -> DataProto:
    """Left-padded prompts / right-padded responses, reward on the last response token, like veRL."""
    prompts_txt = ["Write a short poem about the sea.", "The answer must contain the word ocean."]
    resp_txt = ["hello world", "the sea lines", "ocean words", "three lines"]
    rows = []
    for g, scores in enumerate(group_scores):
        p = tokenizer(prompts_txt[g], add_special_tokens=False)["input_ids"]
        for i, s in enumerate(scores):
            r = tokenizer(resp_txt[i], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            met = 2 if s >= 1.0 else (1 if s >= 0.5 else 0)
            rows.append((f"uid{g}", p, r, _result(s, met)))
    p_len = max(len(p) for _, p, _, _ in rows)
    r_len = MAX_RESP
    n = len(rows)
    pad = tokenizer.pad_token_id
    prompts = torch.full((n, p_len), pad)
    responses = torch.full((n, r_len), pad)
    attn = torch.zeros((n, p_len + r_len), dtype=torch.long)
    scores = torch.zeros((n, r_len))
    logp = torch.zeros((n, r_len))
    for i, (_, p, r, res) in enumerate(rows):
        prompts[i, p_len - len(p) :] = torch.tensor(p)
        attn[i, p_len - len(p) : p_len] = 1
        responses[i, : len(r)] = torch.tensor(r)
        attn[i, p_len : p_len + len(r)] = 1
        scores[i, len(r) - 1] = res.score
        logp[i, : len(r)] = -0.5
    results = np.empty(n, dtype=object)
    results[:] = [res for *_, res in rows]
    td = TensorDict(
        {
            "prompts": prompts,
            "responses": responses,
            "attention_mask": attn,
            "input_ids": torch.cat([prompts, responses], 1),
            "response_mask": attn[:, p_len:],
            "token_level_scores": scores,
            "rollout_log_probs": logp,
        },
        batch_size=[n],
    )
    return DataProto(
        batch=td,
        non_tensor_batch={
            "uid": np.array([u for u, *_ in rows], dtype=object),
            "data_source": np.array(["ifeval"] * n, dtype=object),
            RESULT_FIELD: results,
        },
    )


class FakeEngine:
    """Stands in for the vLLM replicas: records every call, returns a fixed revision per prompt."""

    def __init__(self, tokenizer, text="revised answer final text", with_eos=True):
        self.tokenizer = tokenizer
        self.calls: list[tuple[list[list[int]], dict]] = []
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        self.ids = ids + ([tokenizer.eos_token_id] if with_eos else [])

    def __call__(self, prompt_ids, params):
        self.calls.append((prompt_ids, params))
        return [TokenRevision(token_ids=list(self.ids), log_probs=[-0.1] * len(self.ids)) for _ in prompt_ids]


def _scorer(score: float):
    seen = []

    def score_fn(items):
        seen.extend(items)
        return [_result(score, 2 if score >= 1 else 1) for _ in items]

    score_fn.seen = seen
    return score_fn


def _run(tokenizer, batch, cfg, engine, scorer, step=1):
    return apply_hindsight_to_dataproto(
        batch,
        tokenizer=tokenizer,
        generate_tokens=engine,
        score_revisions=scorer,
        cfg=cfg,
        rng=slot_rng(7, step),
        rollout=ROLLOUT,
        max_prompt_length=MAX_PROMPT,
        max_response_length=MAX_RESP,
    )


def _prompt_ids(out: DataProto, i: int) -> list[int]:
    p_len = out.batch["prompts"].shape[1]
    m = out.batch["attention_mask"][i, :p_len].bool()
    return out.batch["prompts"][i][m].tolist()


def test_replace_he_row_shapes_prompt_masks_rewards(tokenizer):
    batch = _batch(tokenizer, [[0.5, 0.5, 0.0, 0.0], [1.0, 0.5, 0.0, 0.0]])
    engine, scorer = FakeEngine(tokenizer), _scorer(1.0)
    cfg = HindsightConfig()  # our defaults: revision T 0.3, seeded slots
    out, report = _run(tokenizer, batch, cfg, engine, scorer)

    # one batched generation call, two candidates (the tied-best drafts of group uid0 only)
    assert len(engine.calls) == 1 and len(engine.calls[0][0]) == 2
    params = engine.calls[0][1]
    assert params["temperature"] == pytest.approx(0.3) and params["max_tokens"] == MAX_RESP
    # revisions are scored with the ORIGINAL prompt's row of their group
    assert {row.uid for row, _, _ in scorer.seen} == {"uid0"}

    assert len(out) == 2 * G
    assert list(out.non_tensor_batch["uid"]) == ["uid0"] * G + ["uid1"] * G
    he = out.batch["he_mask"]
    he_rows = [i for i in range(len(out)) if he[i].sum() > 0]
    assert len(he_rows) == 1 and he_rows[0] < G  # exactly one HE row, in the failing group
    k = he_rows[0]
    oc = report.result.outcomes[0]
    assert oc.kind == "revision" and oc.slot == k

    # prompt: the hindsight prompt as raw tokens, left-padded; it holds the draft and the diagnosis
    hs_ids = _prompt_ids(out, k)
    assert hs_ids == tokenizer(oc.row.prompt, add_special_tokens=False)["input_ids"]
    text = tokenizer.decode(hs_ids)
    assert "Unmet:" in text and "Write a short poem about the sea." in text
    assert out.batch["prompts"].shape[1] >= len(hs_ids) > batch.batch["prompts"].shape[1]
    p_len = out.batch["prompts"].shape[1]
    assert out.batch["attention_mask"][k, : p_len - len(hs_ids)].sum() == 0  # left padding
    # response: the generated ids, ending with EOS, mask through the EOS, he_mask == response_mask
    n = int(out.batch["response_mask"][k].sum())
    assert out.batch["responses"][k, :n].tolist() == engine.ids
    assert out.batch["responses"][k, n - 1] == tokenizer.eos_token_id
    assert torch.equal(he[k], out.batch["response_mask"][k])
    assert torch.equal(out.batch["input_ids"], torch.cat([out.batch["prompts"], out.batch["responses"]], 1))
    # rewards: the HE row carries r~ on its last token; surviving candidates got BR: r + 0.05 (1 - r)
    sc = out.batch["token_level_scores"]
    assert sc[k].sum().item() == pytest.approx(1.0) and sc[k, n - 1].item() == pytest.approx(1.0)
    for ci, delta in oc.bonus:
        assert delta == pytest.approx(0.05 * (1.0 - 0.5))
        if ci != k:
            assert sc[ci].sum().item() == pytest.approx(0.525)
            m = out.batch["response_mask"][ci].bool()
            # Δ spread evenly over the response tokens; the original reward stays on the last one
            expected = batch.batch["token_level_scores"][ci][m] + delta / int(m.sum())
            assert torch.allclose(sc[ci][m], expected)
    # the solved group is untouched
    assert torch.equal(sc[G:], batch.batch["token_level_scores"][G:])
    assert he[G:].sum() == 0

    # metrics
    m = report.metrics
    assert m["herl/prompts_attempted"] == 2 and m["herl/revisions_generated"] == 2
    assert m["herl/kept"] == 1 and m["herl/fallbacks"] == 0 and m["herl/over_prev_best"] == 1.0
    assert m["herl/success_rate"] == 1.0 and m["herl/bonus_mean"] == pytest.approx(0.025)
    assert m["herl/he_token_frac"] == pytest.approx(n / out.batch["response_mask"].sum().item())

    # veRL's own GRPO advantage runs on the merged batch; the HE row is normalised with its group
    adv, _ = compute_grpo_outcome_advantage(sc, out.batch["response_mask"], out.non_tensor_batch["uid"])
    assert adv[k, 0] > 0 and torch.isfinite(adv).all()


def test_revision_sampling_follows_rollout_when_quirk_on(tokenizer):
    batch = _batch(tokenizer, [[0.5, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    engine = FakeEngine(tokenizer)
    cfg = HindsightConfig(revision_use_rollout_sampling=True, revision_temperature=0.3, revision_max_tokens=5)
    _run(tokenizer, batch, cfg, engine, _scorer(1.0))
    params = engine.calls[0][1]
    assert params["temperature"] == ROLLOUT.temperature and params["max_tokens"] == ROLLOUT.response_length


def test_revision_sampling_params_really_apply():
    from herl.core.config import RevisionSampling

    p = revision_sampling_params(RevisionSampling(temperature=0.3, top_p=0.9, max_tokens=77), ROLLOUT)
    assert (p["temperature"], p["top_p"], p["max_tokens"]) == (0.3, 0.9, 77)


def test_fallback_duplicates_best_original(tokenizer):
    batch = _batch(tokenizer, [[0.5, 0.25, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    out, report = _run(tokenizer, batch, HindsightConfig(), FakeEngine(tokenizer), _scorer(0.0))
    oc = report.result.outcomes[0]
    assert oc.kind == "duplicate-best" and report.metrics["herl/fallbacks"] == 1
    k = oc.slot
    assert out.batch["he_mask"].sum() == 0
    assert _prompt_ids(out, k) == _prompt_ids(batch, 0)  # original prompt kept
    assert torch.equal(out.batch["responses"][k], batch.batch["responses"][0])
    # the copy carries the best original's (BR-shaped) reward: 0.5 + 0.05 (0 - 0.5)
    assert out.batch["token_level_scores"][k].sum().item() == pytest.approx(0.475)


def test_append_grows_group_and_keeps_uid(tokenizer):
    batch = _batch(tokenizer, [[0.5, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    cfg = HindsightConfig(incorporation="append")
    out, _report = _run(tokenizer, batch, cfg, FakeEngine(tokenizer), _scorer(1.0))
    assert len(out) == 2 * G + 1
    assert list(out.non_tensor_batch["uid"]).count("uid0") == G + 1
    assert out.non_tensor_batch["key"][G] == f"uid0_{G}_0"
    assert out.batch["he_mask"][G].sum() > 0 and out.batch["he_mask"].sum() == out.batch["he_mask"][G].sum()


def test_train_under_instruction_keeps_original_prompt(tokenizer):
    batch = _batch(tokenizer, [[0.5, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    cfg = HindsightConfig(train_under="instruction")
    out, report = _run(tokenizer, batch, cfg, FakeEngine(tokenizer), _scorer(1.0))
    k = report.result.outcomes[0].slot
    assert out.batch["he_mask"][k].sum() > 0
    assert _prompt_ids(out, k) == _prompt_ids(batch, 0)


def test_revision_without_eos_gets_one_and_is_truncated(tokenizer):
    batch = _batch(tokenizer, [[0.5, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    long_text = " ".join(["ocean"] * 60)
    engine = FakeEngine(tokenizer, text=long_text, with_eos=False)
    out, report = _run(tokenizer, batch, HindsightConfig(), engine, _scorer(1.0))
    k = report.result.outcomes[0].slot
    assert int(out.batch["response_mask"][k].sum()) == MAX_RESP  # truncated to the response length
    short = FakeEngine(tokenizer, text="ocean", with_eos=False)
    out2, rep2 = _run(tokenizer, batch, HindsightConfig(), short, _scorer(1.0))
    k2 = rep2.result.outcomes[0].slot
    n = int(out2.batch["response_mask"][k2].sum())
    assert out2.batch["responses"][k2, n - 1] == tokenizer.eos_token_id  # EOS appended (append_eos)


def test_stage_disabled_is_identity(tokenizer):
    batch = _batch(tokenizer, [[0.5, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    engine = FakeEngine(tokenizer)
    out, _report = _run(
        tokenizer, batch, dataclasses.replace(HindsightConfig(), enabled=False), engine, _scorer(1.0)
    )
    assert engine.calls == []
    assert torch.equal(out.batch["token_level_scores"], batch.batch["token_level_scores"])
    assert out.batch["he_mask"].sum() == 0


def test_seeded_slots_are_reproducible(tokenizer):
    batch = _batch(tokenizer, [[0.5, 0.5, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0]])
    slots = []
    for _ in range(2):
        _, rep = _run(tokenizer, batch, HindsightConfig(), FakeEngine(tokenizer), _scorer(1.0), step=3)
        slots.append([oc.slot for oc in rep.result.outcomes])
    assert slots[0] == slots[1]


class PerPromptEngine:
    """A rollout stand-in that answers each hindsight prompt with ITS OWN token ids (one of them empty)."""

    def __init__(self, tokenizer, answers: list[str]):
        self.answers = [
            tokenizer(a, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] if a else []
            for a in answers
        ]
        self.calls: list[list[list[int]]] = []

    def __call__(self, prompt_ids, params):
        self.calls.append(prompt_ids)
        assert len(prompt_ids) == len(self.answers)
        return [TokenRevision(token_ids=list(ids), log_probs=[-0.2] * len(ids)) for ids in self.answers]


def test_blank_revision_does_not_shift_the_ids_later_revisions_are_scored_on(tokenizer):
    """Jobs: uid0 draft 0 → blank, uid0 draft 1 → "ocean words", uid1 draft 0 → "hello world".

    The scorer reads the token ids (as veRL's reward loop does), so scoring the wrong revision's ids
    would give uid0 no kept revision and uid1 a spurious one.
    """
    batch = _batch(tokenizer, [[0.5, 0.5, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0]])
    engine = PerPromptEngine(tokenizer, ["", "ocean words", "hello world"])
    seen: list[tuple[str, str, str]] = []

    def score_ids(items):
        out = []
        for row, ids, text in items:
            decoded = tokenizer.decode(ids, skip_special_tokens=True)
            seen.append((row.uid, decoded, text))
            out.append(_result(1.0, 2) if "ocean" in decoded else _result(0.25, 0))
        return out

    out, report = _run(tokenizer, batch, HindsightConfig(), engine, score_ids)

    assert len(engine.calls) == 1 and len(engine.calls[0]) == 3
    # each revision is scored on its own ids, under its own group's original prompt; the blank one never
    assert seen == [("uid0", "ocean words", "ocean words"), ("uid1", "hello world", "hello world")]
    oc0, oc1 = report.result.outcomes
    assert oc0.kind == "revision" and oc0.row is not None and oc0.row.reward == 1.0
    assert oc0.bonus == (pytest.approx((1, 0.05 * (1.0 - 0.5))),)  # only the draft whose revision was real
    assert oc1.kind == "duplicate-best" and oc1.bonus == (pytest.approx((0, 0.05 * (0.25 - 0.5))),)
    # the HE row carries the ids of the revision that was kept, EOS-terminated, and its reward
    k = oc0.slot
    n = int(out.batch["response_mask"][k].sum())
    assert out.batch["responses"][k, :n].tolist() == engine.answers[1]
    assert out.batch["token_level_scores"][k].sum().item() == pytest.approx(1.0)
    assert out.batch["he_mask"][k].sum() == n and out.batch["he_mask"].sum() == n
    # the duplicate in uid1 copies uid1's shaped best original
    k1 = G + oc1.slot
    assert out.batch["token_level_scores"][k1].sum().item() == pytest.approx(0.5 + 0.05 * (0.25 - 0.5))


def test_failed_rewards_are_counted_in_the_step_metrics(tokenizer):
    """Rollouts whose reward carries an error (read back from reward_extra_info) and failed revisions."""
    batch = _batch(tokenizer, [[0.5, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    results = batch.non_tensor_batch[RESULT_FIELD]
    results[3] = dataclasses.replace(results[3], error="checker_load_failed: ImportError")

    def failing(items):
        return [dataclasses.replace(_result(0.0, 0), error="judge_timeout") for _ in items]

    _, report = _run(tokenizer, batch, HindsightConfig(), FakeEngine(tokenizer), failing)
    assert report.metrics["herl/revision_errors"] == 1
    assert report.metrics["herl/reward_errors"] == 2
