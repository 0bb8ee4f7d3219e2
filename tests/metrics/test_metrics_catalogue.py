"""Catalogue rules, the key mapping, and drift of every generated file (docs, dashboards, rules)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from herl.api import model
from herl.metrics import alerts, dashboards, docs_text, keys
from herl.metrics import catalogue as cat

ROOT = Path(__file__).resolve().parents[2]
NAME_RE = re.compile(r"^herl_[a-z][a-z0-9_]*$")
#: Trainer metrics set by the publisher itself rather than by a key rule.
DERIVED = {
    "herl_reward_score_mean_best",
    "herl_reward_best_step",
    "herl_training_step",
    "herl_training_steps_total",
    "herl_training_last_step_timestamp_seconds",
}


def test_names_types_and_labels_follow_conventions() -> None:
    names = [m.name for m in cat.ALL_METRICS]
    assert len(names) == len(set(names)), "duplicate metric names"
    for m in cat.ALL_METRICS:
        assert NAME_RE.match(m.name), m.name
        if m.type is cat.MetricType.COUNTER:
            assert m.name.endswith("_total"), m.name
        else:
            assert not m.name.endswith("_total"), m.name
        if m.unit == "seconds":
            assert m.name.endswith(("_seconds", "_seconds_total")), m.name
        if m.unit == "ratio":
            assert m.name.endswith("_ratio"), m.name
        assert not set(m.labels) & cat.FORBIDDEN_LABELS, (m.name, m.labels)
        assert m.help and m.engines
        if m.type is cat.MetricType.HISTOGRAM:
            assert m.buckets and list(m.buckets) == sorted(m.buckets)


def test_trainer_and_operator_sets() -> None:
    for m in cat.TRAINER_METRICS:
        assert m.labels[:2] == cat.JOB_LABELS, m.name
        assert m.engines == {cat.Engine.LOCAL, cat.Engine.VERL}
        assert m.name.startswith("herl_") and not m.name.startswith("herl_operator_")
    agreed = {
        "herl_operator_jobs": ("phase",),
        "herl_operator_reconcile_total": ("result",),
        "herl_operator_reconcile_duration_seconds": (),
        "herl_operator_retries_total": (),
        "herl_operator_gpu_seconds": ("namespace", "herl_job"),
        "herl_operator_job_last_reward": ("namespace", "herl_job"),
    }
    got = {m.name: m.labels for m in cat.metrics_for(cat.Engine.OPERATOR)}
    for name, labels in agreed.items():
        assert got[name] == labels
    assert cat.spec(cat.OPERATOR_RECONCILE_DURATION).type is cat.MetricType.HISTOGRAM
    assert "Failed" in cat.JOB_PHASES and "Running" in cat.JOB_PHASES and "error" in cat.RECONCILE_RESULTS


def test_job_phases_match_the_api() -> None:
    assert set(cat.JOB_PHASES) == set(model.Phase.__args__)


def test_create_collectors_registers_every_metric() -> None:
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry()
    col = cat.create_collectors(reg, cat.Engine.OPERATOR)
    assert set(col) == {m.name for m in cat.OPERATOR_METRICS}
    col[cat.OPERATOR_RECONCILE_DURATION].observe(0.2)
    assert reg.get_sample_value("herl_operator_reconcile_duration_seconds_bucket", {"le": "0.25"}) == 1.0
    col[cat.OPERATOR_RECONCILE_TOTAL].labels(result="error").inc()
    assert reg.get_sample_value("herl_operator_reconcile_total", {"result": "error"}) == 1.0


def test_key_rules_are_consistent_with_the_catalogue() -> None:
    assert keys.check_rules() == []
    reachable = {r.metric for r in keys.RULES} | DERIVED
    assert reachable == {m.name for m in cat.TRAINER_METRICS}


@pytest.mark.parametrize(
    ("key", "metric", "labels"),
    [
        ("critic/score/mean", "herl_reward_score_mean", {}),
        ("herl/success_rate", "herl_hindsight_revision_success_ratio", {}),
        ("actor/he_frac", "herl_hindsight_token_ratio", {}),
        ("timing_s/update_actor", "herl_stage_duration_seconds", {"stage": "update_actor"}),
        ("judge/errors/timeout", "herl_judge_errors_total", {"reason": "timeout"}),
        ("herl/reward/ifeval/all_met_rate", "herl_reward_source_all_met_ratio", {"data_source": "ifeval"}),
        (
            "val-core/medical_rubric/reward/mean@4",
            "herl_validation_score_mean",
            {"data_source": "medical_rubric"},
        ),
    ],
)
def test_key_matching(key: str, metric: str, labels: dict[str, str]) -> None:
    found = keys.match(key)
    assert found is not None
    assert found[0].metric == metric and found[1] == labels


@pytest.mark.parametrize(
    "key",
    [
        "critic/score/mean/extra",
        "timing_s/Gen",
        "judge/errors/" + "x" * 40,
        "timing_s/",
        "val-core/a/acc/mean@4",
        "critic/advantages/mean",
    ],
)
def test_keys_not_exported_or_unbounded_are_rejected(key: str) -> None:
    assert keys.match(key) is None


def test_docs_metrics_md_is_generated_and_current() -> None:
    text = docs_text.render_markdown()
    for m in cat.ALL_METRICS:
        assert f"`{m.name}`" in text
    for a in alerts.ALL_ALERTS:
        assert f"`{a.name}`" in text
    assert (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8") == text, (
        "docs/metrics.md drifted: run herl generate (herl.metrics.docs_text.write_docs)"
    )


def test_write_docs(tmp_path: Path) -> None:
    p = docs_text.write_docs(tmp_path / "sub" / "metrics.md")
    assert p.read_text(encoding="utf-8") == docs_text.render_markdown()


def test_dashboards_are_generated_and_current() -> None:
    for fname, build in dashboards.DASHBOARDS.items():
        on_disk = (ROOT / "manifests" / "dashboards" / fname).read_text(encoding="utf-8")
        assert on_disk == dashboards.render(build()), (
            f"{fname} drifted: run herl.metrics.dashboards.write_dashboards()"
        )
    on_disk = (ROOT / "manifests" / "dashboards" / "kustomization.yaml").read_text(encoding="utf-8")
    assert on_disk == dashboards.kustomization()


def test_kustomization_packs_every_dashboard_for_the_sidecar() -> None:
    import yaml

    k = yaml.safe_load(dashboards.kustomization())
    gen = k["configMapGenerator"][0]
    assert gen["files"] == list(dashboards.DASHBOARDS)
    assert gen["options"]["labels"]["grafana_dashboard"] == "1"
    # client-side `kubectl apply` keeps a last-applied annotation limited to 256 KiB
    total = sum(len(dashboards.render(b()).encode()) for b in dashboards.DASHBOARDS.values())
    assert total < 200_000


def test_alert_files_are_generated_and_current() -> None:
    for fname, render in alerts.RENDERED.items():
        on_disk = (ROOT / "manifests" / "alerts" / fname).read_text(encoding="utf-8")
        assert on_disk == render(), f"{fname} drifted: run herl.metrics.alerts.write_alerts()"


def _metric_names(expr: str) -> set[str]:
    return {n.removesuffix("_bucket") for n in re.findall(r"\bherl_[a-z0-9_]+", expr)}


def test_dashboards_and_alerts_only_use_catalogued_metrics_and_cover_them() -> None:
    used: set[str] = set()
    for build in dashboards.DASHBOARDS.values():
        for _, expr in dashboards.iter_queries(build()):
            used |= _metric_names(expr)
    for a in alerts.ALL_ALERTS:
        used |= _metric_names(a.expr)
    used -= {"herl_job"}  # the label, matched by the same regex
    unknown = used - set(cat.BY_NAME)
    assert not unknown, unknown
    assert set(cat.BY_NAME) - used == set(), "catalogued metrics shown nowhere"
