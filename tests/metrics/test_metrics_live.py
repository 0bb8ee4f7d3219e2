"""Every dashboard panel and alert expression against a real Prometheus that scraped our exporters."""

from __future__ import annotations

import urllib.request
from typing import Any

from herl.metrics import alerts, dashboards, verify
from herl.metrics.promserver import poll_until


def _poll(check: Any, timeout: float, what: str) -> Any:
    try:
        return poll_until(check, timeout, what)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from None


def test_targets_are_scraped(live: Any) -> None:
    ts = live.prom.targets_health()
    assert sorted(t["scrapeUrl"] for t in ts) == sorted([live.trainer_url, live.operator_url])
    assert all(t["health"] == "up" and not t["lastError"] for t in ts)
    # our labels arrive as they are: no exported_job / exported_namespace renames
    got = live.prom.query("herl_training_step")
    assert got and all(
        "exported_namespace" not in r["metric"] and "exported_job" not in r["metric"] for r in got
    )
    assert got[0]["metric"]["herl_job"] == "demo" and got[0]["metric"]["namespace"] == "herl-test"


def test_every_dashboard_panel_returns_data(live: Any) -> None:
    failures = verify.panel_failures(live.prom, live.variables)
    assert not failures, "\n".join(f"{w}: {why}: {q}" for w, q, why in failures)
    n = sum(1 for b in dashboards.DASHBOARDS.values() for _ in dashboards.iter_queries(b()))
    assert n >= 40  # the check above really ran over every target


def test_panels_filter_by_job(live: Any) -> None:
    """A job that does not exist must give empty panels: the herl_job variable really filters."""
    failures = verify.panel_failures(
        live.prom, {"namespace": "herl-test", "herl_job": "nope"}, [dashboards.training_dashboard()]
    )
    total = sum(1 for _ in dashboards.iter_queries(dashboards.training_dashboard()))
    assert len(failures) == total and all(why == "no data" for *_, why in failures)


def test_a_broken_query_is_reported(live: Any) -> None:
    board = {
        "title": "t",
        "panels": [
            {"title": "bad", "targets": [{"expr": "sum(rate(herl_training_step[1m]"}]},
            {"title": "empty", "targets": [{"expr": "herl_does_not_exist"}]},
        ],
    }
    got = {w: why for w, _, why in verify.panel_failures(live.prom, {}, [board])}
    assert got["t / empty"] == "no data"
    assert "bad_data" in got["t / bad"] or "parse error" in got["t / bad"]


def test_every_alert_expression_holds_on_the_synthetic_run(live: Any) -> None:
    failures = verify.alert_failures(live.prom)
    assert not failures, "\n".join(f"{w}: {why}: {q}" for w, q, why in failures)
    # the per-job alerts name the right job
    assert {r["metric"]["herl_job"] for r in live.prom.query(alerts.TRAINER_ALERTS[0].expr)} == {"ghost"}
    stalled = live.prom.query(next(a.expr for a in alerts.ALL_ALERTS if a.name == "HeRLRewardStalled"))
    assert [r["metric"]["herl_job"] for r in stalled] == ["demo"] and float(stalled[0]["value"][1]) == 55


def test_loaded_rules_are_healthy_and_active(live: Any) -> None:
    names = {a.name for a in alerts.ALL_ALERTS}

    def all_active() -> dict[str, tuple[str, str, str]] | None:
        states = verify.rule_states(live.prom)
        ok = set(states) == names and all(s[1] in {"pending", "firing"} for s in states.values())
        return states if ok else None

    states = _poll(all_active, 20, f"all of {sorted(names)} pending/firing")
    assert all(h == "ok" and not err for h, _, err in states.values()), states
    assert states["HeRLJobFailed"][1] == "firing"  # for: 0m


def _body(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read()


def test_promtool_check_metrics_on_the_live_endpoints(live: Any, promtool: str) -> None:
    """No lint finding accepted on either exposition (the operator's registry here is the catalogue's,
    fed synthetic state; tests/operator/test_prometheus_e2e.py lints the real operator's endpoint)."""
    assert verify.promtool_lint(_body(live.trainer_url), promtool) == []
    assert verify.promtool_lint(_body(live.operator_url), promtool) == []
