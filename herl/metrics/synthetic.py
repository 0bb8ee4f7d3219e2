"""Deterministic synthetic inputs for the metrics tests: step dicts and an operator registry.

Why: the full trainer cannot run on CPU, yet every dashboard panel and alert must be checked against a
real Prometheus. These generators emit every key of :mod:`herl.metrics.keys` (so every panel has data)
and shape the values so each alert condition is actually true (reward plateau, judge errors, a failed
job, a running job without trainer metrics, reconcile errors). A real local-engine run can replace the
step feed later; the Prometheus helpers take any endpoint list.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client import CollectorRegistry

from herl.metrics import catalogue as cat
from herl.metrics import keys

DATA_SOURCES = ("ifeval", "medical_rubric")
STAGES = ("gen", "hindsight", "reward", "old_log_prob", "ref", "adv", "update_actor", "step")


def step_dict(step: int, *, plateau_from: int = 5) -> dict[str, float]:
    """One step's metrics as both engines log them. Reward rises until ``plateau_from``, then stays flat
    (drives HeRLRewardStalled); 20 % of judge calls fail (drives HeRLJudgeErrorRateHigh)."""
    progress = min(step, plateau_from)
    mean = 0.3 + 0.05 * progress
    d: dict[str, float] = {
        "training/global_step": float(step),
        "training/epoch": float(step // 10),
        keys.TOTAL_STEPS: 200.0,
        keys.CHECKPOINT_STEP: float(step - step % 10),
        "critic/score/mean": mean,
        "critic/score/max": min(1.0, mean + 0.4),
        "critic/score/min": max(0.0, mean - 0.3),
        keys.SCORE_STD: 0.2,
        keys.ALL_MET_RATE: mean / 2,
        keys.REWARD_ERRORS: float(step % 3 == 0),
        keys.HE_GROUPS_ATTEMPTED: 6.0,
        keys.HE_REVISIONS_GENERATED: 12.0,
        keys.HE_KEPT: 4.0,
        keys.HE_FALLBACKS: 2.0,
        keys.HE_SUCCESS_RATE: 0.4,
        keys.HE_OVER_PREV_BEST: 0.5,
        keys.HE_BONUS_MEAN: 0.01,
        keys.HE_TOKEN_FRACTION: 0.12,
        "actor/pg_loss": -0.01,
        "actor/on_pg_loss": -0.012,
        "actor/off_pg_loss": -0.004,
        "actor/entropy": 0.9 - 0.01 * progress,
        "actor/ppo_kl": 0.001,
        "actor/kl_loss": 0.002,
        "actor/pg_clipfrac": 0.03,
        "actor/grad_norm": 1.5 + 0.1 * math.sin(step),
        "response_length/mean": 300.0 + step,
        "response_length/max": 1024.0,
        "response_length/clip_ratio": 0.05,
        "perf/throughput": 1500.0,
        "perf/total_num_tokens": 65536.0,
        keys.JUDGE_CALLS: 10.0,
        keys.JUDGE_ERRORS_PREFIX + "timeout": 1.0,
        keys.JUDGE_ERRORS_PREFIX + "parse": 1.0,
        "critic/advantages/mean": 0.0,  # a veRL key herl does not export (stays unmapped)
    }
    for i, ds in enumerate(DATA_SOURCES):
        d[keys.source_mean_key(ds)] = mean - 0.05 * i
        d[keys.source_all_met_key(ds)] = (mean - 0.05 * i) / 2
        d[f"val-core/{ds}/reward/mean@1"] = mean - 0.02
    for i, stage in enumerate(STAGES):
        d[f"timing_s/{stage}"] = 1.0 + i
    return d


def step_dicts(n: int, *, start: int = 1, plateau_from: int = 5) -> Iterator[dict[str, float]]:
    """``n`` consecutive step dicts from ``start``."""
    for s in range(start, start + n):
        yield step_dict(s, plateau_from=plateau_from)


#: The synthetic operator's jobs: (namespace, herl_job, phase). ``ghost`` runs without a trainer
#: endpoint (drives HeRLJobNoMetrics); ``broken`` failed (drives HeRLJobFailed).
OPERATOR_JOBS: tuple[tuple[str, str, str], ...] = (
    ("herl-test", "demo", "Running"),
    ("herl-test", "ghost", "Running"),
    ("herl-test", "broken", "Failed"),
    ("herl-test", "done", "Succeeded"),
)


def operator_registry() -> tuple[CollectorRegistry, dict[str, object]]:
    """A registry shaped like the operator's, built from the catalogue, with a first state loaded.
    Call :func:`operator_tick` to advance counters between scrapes."""
    reg = CollectorRegistry(auto_describe=True)
    col = cat.create_collectors(reg, cat.Engine.OPERATOR)
    for phase in cat.JOB_PHASES:
        col[cat.OPERATOR_JOBS].labels(phase=phase).set(sum(1 for *_, p in OPERATOR_JOBS if p == phase))
    for ns, name, phase in OPERATOR_JOBS:
        for p in cat.JOB_PHASES:
            col[cat.OPERATOR_JOB_PHASE].labels(namespace=ns, herl_job=name, phase=p).set(float(p == phase))
        col[cat.OPERATOR_GPU_SECONDS].labels(namespace=ns, herl_job=name).set(1.5 * 3600)
        col[cat.OPERATOR_JOB_LAST_REWARD].labels(namespace=ns, herl_job=name).set(0.55)
    for result in cat.RECONCILE_RESULTS:
        col[cat.OPERATOR_RECONCILE_TOTAL].labels(result=result).inc(0)
    return reg, col


def operator_tick(col: dict[str, object], tick: int) -> None:
    """One reconcile round: successes, an error, latency observations, a retry, GPU-hours growing."""
    col[cat.OPERATOR_RECONCILE_TOTAL].labels(result="success").inc(5)  # type: ignore[attr-defined]
    col[cat.OPERATOR_RECONCILE_TOTAL].labels(result="error").inc(1)  # type: ignore[attr-defined]
    for v in (0.02, 0.05, 0.3):
        col[cat.OPERATOR_RECONCILE_DURATION].observe(v)  # type: ignore[attr-defined]
    col[cat.OPERATOR_RETRIES_TOTAL].inc(1)  # type: ignore[attr-defined]
    for ns, name, phase in OPERATOR_JOBS:
        if phase == "Running":
            col[cat.OPERATOR_GPU_SECONDS].labels(namespace=ns, herl_job=name).set(  # type: ignore[attr-defined]
                (1.5 + 0.01 * tick) * 3600
            )
