"""StepMetricsPublisher: values, counters, labels, robustness, HTTP endpoint, env default, veRL hook."""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families
from ray._common.constants import HEAD_NODE_RESOURCE_NAME
from verl.utils import tracking

import herl.metrics
from herl.api import model
from herl.metrics import catalogue as cat
from herl.metrics import cluster, publisher, synthetic, verify
from herl.metrics.publisher import StepMetricsPublisher


def _samples(pub: StepMetricsPublisher) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(pub.exposition().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _v(pub: StepMetricsPublisher, name: str, **extra: str) -> float | None:
    labels = {"herl_job": pub.herl_job, "namespace": pub.namespace, **extra}
    return pub.registry.get_sample_value(name, labels)


@pytest.fixture
def pub() -> StepMetricsPublisher:
    return StepMetricsPublisher("demo", "ns", clock=lambda: 1000.0)


@pytest.fixture
def reset_default() -> Iterator[None]:
    publisher.set_default_publisher(None)
    yield
    p = publisher._default
    if p is not None:
        p.close()
    publisher.set_default_publisher(None)


def test_series_exist_before_the_first_step(pub: StepMetricsPublisher) -> None:
    assert _v(pub, "herl_training_step") == 0
    assert _v(pub, "herl_training_steps_total") == 0
    assert _v(pub, "herl_hindsight_fallbacks_total") == 0
    assert _v(pub, "herl_reward_errors_total") == 0  # a run without failures still shows 0
    assert _v(pub, "herl_training_last_step_timestamp_seconds") is None


def test_gauges_take_the_last_value_and_counters_accumulate(pub: StepMetricsPublisher) -> None:
    steps = list(synthetic.step_dicts(10, plateau_from=5))
    for d in steps:
        pub.publish(d, 999)  # training/global_step in the dict wins over the argument
    last = steps[-1]
    assert _v(pub, "herl_training_step") == 10
    assert _v(pub, "herl_training_steps_total") == 10
    assert _v(pub, "herl_reward_score_mean") == pytest.approx(last["critic/score/mean"])
    assert _v(pub, "herl_policy_entropy") == pytest.approx(last["actor/entropy"])
    assert _v(pub, "herl_hindsight_revisions_generated_total") == 120
    assert _v(pub, "herl_hindsight_fallbacks_total") == 20
    assert _v(pub, "herl_tokens_total") == 10 * 65536
    assert _v(pub, "herl_judge_calls_total") == 100
    assert _v(pub, "herl_judge_errors_total", reason="timeout") == 10
    assert _v(pub, "herl_stage_duration_seconds", stage="update_actor") == 7.0
    assert _v(pub, "herl_reward_source_score_mean", data_source="medical_rubric") == pytest.approx(
        last["critic/score/mean"] - 0.05
    )
    assert _v(pub, "herl_validation_score_mean", data_source="ifeval") == pytest.approx(
        last["critic/score/mean"] - 0.02
    )
    assert _v(pub, "herl_training_last_step_timestamp_seconds") == 1000.0
    assert pub.unmapped == {"critic/advantages/mean"}


def test_best_reward_and_stall_length(pub: StepMetricsPublisher) -> None:
    for d in synthetic.step_dicts(20, plateau_from=5):
        pub.publish(d)
    assert _v(pub, "herl_reward_best_step") == 5
    assert _v(pub, "herl_reward_score_mean_best") == pytest.approx(0.3 + 0.05 * 5)
    pub.publish({"critic/score/mean": 0.9, "training/global_step": 21})
    assert _v(pub, "herl_reward_best_step") == 21


def test_repeated_or_validation_only_steps_do_not_count(pub: StepMetricsPublisher) -> None:
    pub.publish({"val-core/ifeval/reward/mean@1": 0.4}, 0)  # veRL's validation before training
    assert _v(pub, "herl_training_steps_total") == 0
    assert _v(pub, "herl_training_last_step_timestamp_seconds") is None
    assert _v(pub, "herl_validation_score_mean", data_source="ifeval") == pytest.approx(0.4)
    pub.publish({"critic/score/mean": 0.5}, 1)
    pub.publish({"val-core/ifeval/reward/mean@1": 0.6, "critic/score/mean": 0.5}, 1)  # same step again
    assert _v(pub, "herl_training_steps_total") == 1
    assert _v(pub, "herl_training_step") == 1


def test_bad_values_are_skipped_not_raised(pub: StepMetricsPublisher) -> None:
    pub.publish(
        {
            "critic/score/mean": "n/a",
            "actor/entropy": [1, 2],
            "actor/grad_norm": np.float32(2.5),
            "herl/fallbacks": float("nan"),
            "herl/kept": -3.0,
            "judge/calls": True,
            "actor/ppo_kl": float("nan"),
            "timing_s/../../etc": 1.0,
            "training/global_step": "x",
        },
        3,
    )
    assert _v(pub, "herl_reward_score_mean") is None
    assert _v(pub, "herl_policy_entropy") is None
    assert _v(pub, "herl_policy_grad_norm") == pytest.approx(2.5)
    assert _v(pub, "herl_hindsight_fallbacks_total") == 0  # NaN never reaches a counter
    assert _v(pub, "herl_hindsight_revisions_kept_total") == 0  # nor a negative count
    assert _v(pub, "herl_judge_calls_total") == 1
    assert math.isnan(_v(pub, "herl_policy_kl") or 0.0)  # a NaN gauge shows as a gap
    assert _v(pub, "herl_training_step") == 3  # the step argument when the dict's is unusable
    assert "timing_s/../../etc" in pub.unmapped


def test_torch_scalars_are_accepted(pub: StepMetricsPublisher) -> None:
    pub.publish({"actor/entropy": torch.tensor(0.75)}, 1)
    assert _v(pub, "herl_policy_entropy") == pytest.approx(0.75)


def test_exposition_labels_and_promtool_lint(pub: StepMetricsPublisher, promtool: str) -> None:
    for d in synthetic.step_dicts(3):
        pub.publish(d)
    samples = _samples(pub)
    names = {n for n, _ in samples}
    assert all(n.startswith("herl_") for n in names)
    for _, labels in samples:
        keys = {k for k, _ in labels}
        assert not keys & cat.FORBIDDEN_LABELS
        assert {"herl_job", "namespace"} <= keys
    assert verify.promtool_lint(pub.exposition(), promtool) == []


def test_serve_on_a_free_port_and_close(pub: StepMetricsPublisher) -> None:
    pub.publish({"critic/score/mean": 0.25}, 1)
    port = pub.serve(0, "127.0.0.1")
    try:
        assert pub.serve(0) == port  # idempotent
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            body = r.read().decode()
        assert 'herl_reward_score_mean{herl_job="demo",namespace="ns"} 0.25' in body
    finally:
        pub.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_publish_step_uses_the_environment(monkeypatch: pytest.MonkeyPatch, reset_default: None) -> None:
    monkeypatch.setenv(publisher.ENV_JOB, "envjob")
    monkeypatch.setenv(publisher.ENV_NAMESPACE, "envns")
    monkeypatch.setenv(publisher.ENV_PORT, "0")
    monkeypatch.setenv(publisher.ENV_ADDR, "127.0.0.1")
    herl.metrics.publish_step({"critic/score/mean": 0.5, "herl/success_rate": 0.25}, 7)
    p = herl.metrics.get_publisher()
    assert (p.herl_job, p.namespace) == ("envjob", "envns")
    assert p.port is not None and herl.metrics.serve() == p.port
    with urllib.request.urlopen(f"http://127.0.0.1:{p.port}/metrics", timeout=5) as r:
        body = r.read().decode()
    assert 'herl_hindsight_revision_success_ratio{herl_job="envjob",namespace="envns"} 0.25' in body
    assert 'herl_training_step{herl_job="envjob",namespace="envns"} 7.0' in body


def test_verl_tracking_hook_republishes_steps(reset_default: None) -> None:
    from herl.metrics import verl_hook

    mine = StepMetricsPublisher("verljob", "ns")
    publisher.set_default_publisher(mine)
    original = tracking.Tracking.log
    try:
        assert verl_hook.install_tracking_hook()
        assert verl_hook.install_tracking_hook()  # idempotent: wrapped once
        assert tracking.Tracking.log.__wrapped_original__ is original
        t = tracking.Tracking("p", "e", default_backend=[])
        t.log({"critic/score/mean": 0.6, "actor/entropy": 0.8, "training/global_step": 4}, step=4)
        t.log({"critic/score/mean": 0.1}, step=4, backend=["console"])  # filtered re-log: not a step
    finally:
        verl_hook.uninstall_tracking_hook()
    assert tracking.Tracking.log is original
    assert _v(mine, "herl_reward_score_mean") == pytest.approx(0.6)
    assert _v(mine, "herl_training_step") == 4


def test_cluster_objects() -> None:
    assert cluster.head_pinning_options() == {"resources": {"node:__internal_head__": 0.001}}
    assert cluster.HEAD_RESOURCE == HEAD_NODE_RESOURCE_NAME
    assert len(cluster.PORT_NAME) <= 15
    pm = cluster.pod_monitor(namespace="herl")
    ep = pm["spec"]["podMetricsEndpoints"][0]
    assert ep["port"] == cluster.PORT_NAME and ep["honorLabels"] is True
    keys = {e["key"] for e in pm["spec"]["selector"]["matchExpressions"]}
    assert keys == {"ray.io/node-type", "herl.dev/job"}
    env = {e["name"]: e["value"] for e in cluster.trainer_env("j", "ns", 9400)}
    assert env == {
        "HERL_JOB_NAME": "j",
        "HERL_JOB_NAMESPACE": "ns",
        "HERL_METRICS_PORT": "9400",
        "HERL_METRICS_ADDR": "0.0.0.0",
    }
    assert model.MetricsSpec().port == cluster.DEFAULT_PORT
