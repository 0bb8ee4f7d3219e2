"""The local engine end to end on a tiny random Qwen2 (built in-process): steps, hindsight rows,
resume, determinism, Ctrl-C, the CLI, chunked log-probs and every bad input's error."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from herl.api.validate import validate_document
from herl.engine import policy
from herl.engine.tiny import build_tiny_model_dir, tiny_job
from herl.engine.trainer import LocalTrainer
from herl.errors import UserError
from herl.rewards.types import RewardResult


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model", seed=0)


def make_doc(model: Path, **over: Any) -> dict[str, Any]:
    return tiny_job(model, **over)


def make_job(model: Path, **over: Any) -> Any:
    job, findings = validate_document(make_doc(model, **over))
    assert job is not None, findings
    return job


class VariedReward(LocalTrainer):
    """The real IF score plus a deterministic length-based part, so groups have reward variance and
    the policy gradient is non-zero on a random model."""

    def score(self, items: Any) -> list[RewardResult]:
        real = super().score(items)
        out = []
        for res, (_, text) in zip(real, items, strict=True):
            s = 0.5 * res.score + 0.5 * (len(text) % 5) / 4
            out.append(
                RewardResult(
                    score=s,
                    dense=s,
                    all_met=res.all_met,
                    constraints=res.constraints,
                    data_source=res.data_source,
                )
            )
        return out


def params(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("hindsight", [True, False])
def test_two_steps_train(tiny_dir: Path, tmp_path: Path, hindsight: bool) -> None:
    job = make_job(tiny_dir, **{"algorithm.hindsight.enabled": hindsight})
    tr = VariedReward(job, tmp_path / "out", progress=False, threads=1, echo=lambda s: None)
    tr.prepare()
    before = params(tr.model)
    summary = tr.run()
    assert summary.last_step == 2 and not summary.interrupted
    for h in summary.history:
        assert torch.isfinite(torch.tensor(h["actor/pg_loss"]))
        assert h["actor/grad_norm"] > 0
    after = params(tr.model)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) == len(before)
    he_rows = sum(h["herl/he_rows"] for h in summary.history)
    if hindsight:
        assert summary.history[0]["herl/groups_attempted"] >= 1
    else:
        assert he_rows == 0 and "herl/groups_attempted" not in summary.history[0]
    lines = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["training/global_step"] for x in lines] == [1, 2]
    assert summary.plot is not None and summary.plot.stat().st_size > 1000
    assert summary.checkpoint is not None and summary.checkpoint.name == "step_000002"


def test_failing_group_gets_he_rows(tiny_dir: Path, tmp_path: Path) -> None:
    """Real IF reward; a JSON-format + quotation constraint that a random model never meets."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    gt = {"instruction_id_list": ["detectable_format:json_format", "startend:quotation"], "kwargs": [{}, {}]}
    rows = [
        {
            "prompt": [{"role": "user", "content": f"Write about rain {i}."}],
            "data_source": "ifeval",
            "reward_model": {"style": "rule", "ground_truth": json.dumps(gt)},
            "extra_info": {"index": i},
        }
        for i in range(4)
    ]
    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    job = make_job(
        tiny_dir,
        **{
            "data.format": "verl-parquet",
            "data.train": str(path),
            "data.synthetic": None,
            "algorithm.hindsight.revision.maxTokens": 8,
        },
    )
    tr = LocalTrainer(job, tmp_path / "out", progress=False, threads=1, echo=lambda s: None)
    tr.prepare()
    seen: dict[str, Any] = {}
    orig = tr._update

    def spy(rows: Any, groups_rows: Any, *a: Any) -> Any:
        seen["rows"] = rows
        return orig(rows, groups_rows, *a)

    tr._update = spy  # type: ignore[method-assign]
    m = tr.train_step(1)
    assert m["critic/score/max"] < 1.0
    assert m["herl/groups_attempted"] == 2 and m["herl/he_rows"] >= 1 and m["actor/he_frac"] > 0
    he = [r for r in seen["rows"] if r.he]
    assert he and all(r.kind == "he" for r in he)
    # HE rows are trained under the hindsight prompt (raw text, not the chat-formatted instruction)
    text = tr.tokenizer.decode(he[0].prompt_ids)
    assert "revision assistant" in text and "Write about rain" in text
    assert he[0].response_ids[-1] == tr.eos_id and len(he[0].response_ids) <= 9  # revision + appended EOS
    assert len(seen["rows"]) == 2 * 4  # replace keeps the group size


def test_resume_matches_uninterrupted_and_seed_is_deterministic(tiny_dir: Path, tmp_path: Path) -> None:
    job = make_job(tiny_dir)
    a = VariedReward(job, tmp_path / "a", progress=False, threads=1, echo=lambda s: None)
    sa = a.run()
    b1 = VariedReward(job, tmp_path / "b", steps=1, progress=False, threads=1, echo=lambda s: None)
    sb1 = b1.run()
    # same seed -> same first-step rollouts and rewards
    assert sb1.history[0]["critic/score/mean"] == sa.history[0]["critic/score/mean"]
    b2 = VariedReward(
        job, tmp_path / "b", steps=2, resume=True, progress=False, threads=1, echo=lambda s: None
    )
    sb2 = b2.run()
    assert sb2.resumed_from is not None and sb2.resumed_from.name == "step_000001"
    assert sb2.start_step == 1 and sb2.last_step == 2
    assert sb2.history[1]["critic/score/mean"] == sa.history[1]["critic/score/mean"]
    assert b2.last_rollouts == a.last_rollouts
    pa_, pb = params(a.model), params(b2.model)
    for k in pa_:
        torch.testing.assert_close(pa_[k], pb[k], rtol=0, atol=1e-6)
    assert [
        json.loads(x)["training/global_step"]
        for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    ] == [1, 2]
    # a different seed samples something else
    c = LocalTrainer(make_job(tiny_dir, **{"algorithm.seed": 4}), tmp_path / "c", progress=False, threads=1)
    c.prepare()
    c.train_step(1)
    assert c.last_rollouts != b1.last_rollouts


def test_sigint_saves_and_stops(tiny_dir: Path, tmp_path: Path) -> None:
    job = make_job(tiny_dir, **{"checkpoints.saveEverySteps": 100, "algorithm.totalSteps": 5})
    tr = LocalTrainer(job, tmp_path / "out", progress=False, threads=1, echo=lambda s: None)
    orig = tr.train_step

    def step_then_interrupt(step: int) -> dict[str, Any]:
        out = orig(step)
        tr._stop = True  # what the SIGINT handler does
        return out

    tr.train_step = step_then_interrupt  # type: ignore[method-assign]
    s = tr.run()
    assert s.interrupted and s.last_step == 1
    assert s.checkpoint is not None and s.checkpoint.name == "step_000001"
    assert (s.checkpoint / "optimizer.pt").exists() and (s.checkpoint / "model.safetensors").exists()


def test_cli_train_writes_outputs(tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from herl.cli import main

    f = tmp_path / "job.yaml"
    f.write_text(yaml.safe_dump(make_doc(tiny_dir, **{"metrics": {"enabled": True, "port": 9400}})))
    rc = main(
        [
            "train",
            str(f),
            "--steps",
            "1",
            "--out",
            str(tmp_path / "run"),
            "--metrics-port",
            "0",
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "reward curve:" in out and "prometheus:   http://127.0.0.1:" in out
    assert (tmp_path / "run" / "reward_curve.png").exists()
    from herl.metrics import get_publisher

    text = get_publisher().exposition().decode()
    assert 'herl_reward_score_mean{herl_job="tiny",namespace="local"}' in text
    get_publisher().close()


def test_chunked_log_probs_match_full_logits(tiny_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_dir), dtype=torch.float32)
    prompts = [[5, 6, 7, 8, 9], [10, 11]]
    responses = [[20, 21, 22], [30, 31, 32, 33, 2]]
    with torch.no_grad():
        lp, _, mask = policy.response_log_probs(
            model, prompts, responses, pad_id=0, chunk_tokens=3, temperature=0.7
        )
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        ids = torch.tensor([p + r])
        with torch.no_grad():
            logits = model(ids).logits[0].float() / 0.7
        ref = torch.log_softmax(logits, -1)[len(p) - 1 : len(p) + len(r) - 1].gather(
            -1, torch.tensor(r)[:, None]
        )[:, 0]
        torch.testing.assert_close(lp[i, : len(r)], ref, atol=1e-4, rtol=1e-4)
        assert int(mask[i].sum()) == len(r)
    # with grad: checkpointed chunks back-propagate
    model.train()
    lp, _, _ = policy.response_log_probs(model, prompts, responses, pad_id=0, chunk_tokens=2)
    lp.sum().backward()
    grad = model.get_input_embeddings().weight.grad.clone()
    assert grad.abs().sum() > 0
    # gradient checkpointing (the engine's memory saver for real models) gives the same gradient
    model.zero_grad()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lp2, _, _ = policy.response_log_probs(model, prompts, responses, pad_id=0, chunk_tokens=2)
    lp2.sum().backward()
    torch.testing.assert_close(model.get_input_embeddings().weight.grad, grad, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------------- bad inputs


def _assert_refused(job: Any, tmp_path: Path, *needles: str) -> None:
    tr = LocalTrainer(job, tmp_path / "out", progress=False, threads=1)
    with pytest.raises(UserError) as err:
        tr.prepare()
    for n in needles:
        assert n in str(err.value)
    assert tr.model is None  # refused before any weights were loaded


def test_missing_model_dir(tmp_path: Path) -> None:
    _assert_refused(make_job(tmp_path / "nope"), tmp_path, "model directory not found", "nope")


def test_model_dir_without_config(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _assert_refused(make_job(tmp_path / "empty"), tmp_path, "no config.json")


def test_wrong_data_schema(tiny_dir: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": "hi", "answer": "x"}]), path)
    job = make_job(
        tiny_dir, **{"data.format": "verl-parquet", "data.train": str(path), "data.synthetic": None}
    )
    _assert_refused(job, tmp_path, "missing column", "prompt")


def test_data_source_not_instruction_following(tiny_dir: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "gsm.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    "prompt": [{"role": "user", "content": "2+2?"}],
                    "data_source": "gsm8k",
                    "reward_model": {"style": "rule", "ground_truth": "4"},
                }
            ]
        ),
        path,
    )
    job = make_job(
        tiny_dir, **{"data.format": "verl-parquet", "data.train": str(path), "data.synthetic": None}
    )
    _assert_refused(job, tmp_path, "row 0", "gsm8k", "instruction-following")


def test_prompt_longer_than_limit(tiny_dir: Path, tmp_path: Path) -> None:
    job = make_job(tiny_dir, **{"data.maxInstructionLength": 20})
    _assert_refused(job, tmp_path, "exceed the prompt limit of 20 tokens", "row ")


def test_oom_guard_refuses_absurd_batch(tiny_dir: Path, tmp_path: Path) -> None:
    doc = make_doc(
        tiny_dir,
        **{
            "algorithm.trainBatchSize": 65536,
            "algorithm.groupSize": 256,
            "algorithm.miniBatchSize": 65536,
            "algorithm.microBatchSizePerGpu": 4096,
            "data.maxResponseLength": 131072,
            "data.maxPromptLength": 131072 + 512,
            "data.maxInstructionLength": 200,
        },
    )
    doc["spec"]["data"]["hindsightPromptMargin"] = 0
    doc["spec"]["data"]["allowHindsightTruncation"] = True
    job, findings = validate_document(doc)
    if job is None:  # the schema caps a value: still an absurd-but-valid size below
        doc = make_doc(
            tiny_dir,
            **{
                "algorithm.trainBatchSize": 4096,
                "algorithm.groupSize": 256,
                "algorithm.microBatchSizePerGpu": 4096,
                "data.maxResponseLength": 65536,
                "data.maxPromptLength": 65536 + 300,
            },
        )
        job, findings = validate_document(doc)
    assert job is not None, findings
    _assert_refused(job, tmp_path, "out-of-memory guard", "GiB")


def test_memory_estimate_is_modest_for_the_demo() -> None:
    from transformers import Qwen2Config

    cfg = Qwen2Config(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        tie_word_embeddings=True,
    )
    kw: dict[str, Any] = dict(gen_rows=8, micro_rows=8, prompt_len=640, response_len=96, use_reference=False)
    est = policy.estimate_memory(cfg, 135_000_000, grad_checkpointing=True, **kw)
    assert 2 < est.total / policy.GIB < 5
    assert policy.estimate_memory(cfg, 135_000_000, **kw).training > 4 * est.training
    huge = copy.replace(est, generation=10**15) if hasattr(copy, "replace") else None
    if huge is not None:
        with pytest.raises(UserError, match="out-of-memory guard"):
            policy.check_memory(huge, torch.device("cpu"), "x")


def test_single_update_reuses_training_log_probs(tiny_dir: Path, tmp_path: Path) -> None:
    """One mini-batch, one epoch: old log-probs = the detached training pass (no extra forward), with the
    same update as the separate no-grad pass."""

    class SeparatePass(VariedReward):
        @property
        def single_update(self) -> bool:
            return False

    job = make_job(tiny_dir, **{"algorithm.miniBatchSize": 2, "algorithm.microBatchSizePerGpu": 3})
    fast = VariedReward(job, tmp_path / "a", progress=False, threads=1, echo=lambda s: None)
    slow = SeparatePass(job, tmp_path / "b", progress=False, threads=1, echo=lambda s: None)
    assert fast.single_update and not slow.single_update
    metrics = []
    for tr in (fast, slow):
        tr.prepare()
        metrics.append(tr.train_step(1))
    assert "timing_s/old_log_prob" not in metrics[0] and "timing_s/old_log_prob" in metrics[1]
    assert metrics[0]["actor/grad_norm"] > 0
    assert metrics[0]["actor/entropy"] == pytest.approx(metrics[1]["actor/entropy"], rel=1e-5)
    pf, ps = params(fast.model), params(slow.model)
    for k in pf:
        torch.testing.assert_close(pf[k], ps[k], rtol=0, atol=1e-6)


def test_split_for_budget() -> None:
    m = policy.ActivationModel(layers=2, per_token_layer=100, heads=1, hidden=4)
    lengths = [(10, 5), (10, 5), (10, 5), (200, 50)]
    one = m.bytes(1, 15)
    pieces = policy.split_for_budget(lengths, m, budget=2 * one + 1)
    assert pieces == [([0, 1], False), ([2], False), ([3], True)]
    assert policy.split_for_budget(lengths, m, budget=10**12) == [([0, 1, 2, 3], False)]


def test_budget_split_and_checkpointing_keep_the_update(tiny_dir: Path, tmp_path: Path) -> None:
    """Micro-batches split to one row each, every row under gradient checkpointing: same update."""
    job = make_job(tiny_dir, **{"algorithm.miniBatchSize": 2, "algorithm.microBatchSizePerGpu": 8})
    whole = VariedReward(job, tmp_path / "a", progress=False, threads=1, echo=lambda s: None)
    split = VariedReward(job, tmp_path / "b", progress=False, threads=1, echo=lambda s: None)
    whole.prepare()
    split.prepare()
    split.act_budget = 1  # nothing fits: one row per piece, each checkpointed
    ma, mb = whole.train_step(1), split.train_step(1)
    assert split._ckpt_on and not whole._ckpt_on
    assert ma["actor/pg_loss"] == pytest.approx(mb["actor/pg_loss"], abs=1e-6)
    pa_, pb = params(whole.model), params(split.model)
    for k in pa_:
        torch.testing.assert_close(pa_[k], pb[k], rtol=0, atol=1e-5)  # summation order only


# ----------------------------------------------------------------------------- failed rewards


def test_broken_checker_install_stops_before_training(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every IF reward fails to load its checkers: the run stops with a clear message, trains nothing."""
    from herl.rewards import checkers

    def broken() -> Any:
        raise ImportError("No module named 'lm_eval'")

    tr = LocalTrainer(make_job(tiny_dir), tmp_path / "out", progress=False, threads=1, echo=lambda s: None)
    tr.prepare()  # the synthetic prompts need the real registry; the rewards then lose it
    monkeypatch.setattr(checkers, "ifeval_registry", broken)
    before = params(tr.model)
    with pytest.raises(UserError, match=r"maxErrorFraction") as info:
        tr.run()
    msg = str(info.value)
    assert "step 1: 8 of 8 rewards failed (100%" in msg and "checker_load_failed" in msg
    assert info.value.exit_code == 3
    after = params(tr.model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # no update ran
    assert tr.step == 0 and not (tmp_path / "out" / "checkpoints").exists()
    assert (tmp_path / "out" / "metrics.jsonl").read_text() == ""


class OneFailedReward(VariedReward):
    """The first response of every scoring call comes back failed (score 0, an error reason)."""

    def score(self, items: Any) -> list[RewardResult]:
        import dataclasses

        out = super().score(items)
        if out:
            out[0] = dataclasses.replace(out[0], score=0.0, dense=0.0, error="judge_timeout")
        return out


def test_failed_rewards_below_the_limit_are_counted(tiny_dir: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    job = make_job(tiny_dir, **{"reward.maxErrorFraction": 0.5, "algorithm.totalSteps": 1})
    tr = OneFailedReward(job, tmp_path / "out", progress=False, threads=1, echo=lines.append)
    summary = tr.run()
    m = summary.history[0]
    # one failed rollout (first of the rollout batch) and one failed revision (first of the revisions)
    assert m["herl/revisions_generated"] - m["herl/empty_revisions"] >= 1  # the stage did score some
    assert m["herl/reward_errors"] == 2 and m["herl/revision_errors"] == 1
    assert any("reward errors 2," in line for line in lines), lines
    assert json.loads((tmp_path / "out" / "metrics.jsonl").read_text())["herl/reward_errors"] == 2
    # the same run with the default limit (0.05 of 8 rollouts) stops at that one failure
    strict = OneFailedReward(make_job(tiny_dir), tmp_path / "strict", progress=False, threads=1, echo=str)
    with pytest.raises(UserError, match=r"1 of 8 rewards failed.*judge_timeout"):
        strict.run()
