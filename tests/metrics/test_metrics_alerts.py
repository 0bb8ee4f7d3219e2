"""The generated rule files: PrometheusRule shape, promtool check, promtool unit tests per alert."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from herl.metrics import alerts

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "manifests" / "alerts" / "herl-rules.rules.yaml"
PROMRULE = ROOT / "manifests" / "alerts" / "herl-rules.yaml"
UNIT = Path(__file__).with_name("herl-rules.test.yaml")


def test_prometheus_rule_object_wraps_the_same_groups() -> None:
    obj = yaml.safe_load(PROMRULE.read_text(encoding="utf-8"))
    assert obj["apiVersion"] == "monitoring.coreos.com/v1" and obj["kind"] == "PrometheusRule"
    assert obj["metadata"]["name"] == "herl-rules"
    assert obj["spec"]["groups"] == yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]


def test_alert_names_and_labels() -> None:
    names = [a.name for a in alerts.ALL_ALERTS]
    assert len(names) == len(set(names))
    for a in alerts.ALL_ALERTS:
        assert a.name.startswith("HeRL") and a.severity in {"info", "warning", "critical"}
        assert "job=" not in a.expr.replace("herl_job=", "")  # never Prometheus's own job label


def test_promtool_check_rules(promtool: str) -> None:
    r = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, timeout=30, check=False)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    assert f"{len(alerts.ALL_ALERTS)} rules found" in r.stdout.decode()


def test_every_alert_has_a_firing_and_a_silent_unit_case() -> None:
    doc = yaml.safe_load(UNIT.read_text(encoding="utf-8"))
    assert doc["rule_files"] == ["../../manifests/alerts/herl-rules.rules.yaml"]
    firing: set[str] = set()
    silent: set[str] = set()
    for test in doc["tests"]:
        for case in test["alert_rule_test"]:
            (firing if case["exp_alerts"] else silent).add(case["alertname"])
    names = {a.name for a in alerts.ALL_ALERTS}
    assert firing == names and silent == names


def test_promtool_unit_tests_pass(promtool: str) -> None:
    r = subprocess.run(
        [promtool, "test", "rules", UNIT.name],
        cwd=UNIT.parent,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    assert "SUCCESS" in r.stdout.decode()


def test_promtool_unit_tests_catch_a_wrong_threshold(tmp_path: Path, promtool: str) -> None:
    """The unit tests are not vacuous: raising the judge threshold to 50 % makes them fail."""
    groups = alerts.rules_file()
    for g in groups["groups"]:
        for r in g["rules"]:
            if r["alert"] == "HeRLJudgeErrorRateHigh":
                r["expr"] = r["expr"].replace(f"> {alerts.JUDGE_ERROR_RATIO}", "> 0.5")
    (tmp_path / "manifests" / "alerts").mkdir(parents=True)
    (tmp_path / "manifests" / "alerts" / "herl-rules.rules.yaml").write_text(yaml.safe_dump(groups))
    (tmp_path / "tests" / "metrics").mkdir(parents=True)
    (tmp_path / "tests" / "metrics" / UNIT.name).write_text(UNIT.read_text(encoding="utf-8"))
    r = subprocess.run(
        [promtool, "test", "rules", UNIT.name],
        cwd=tmp_path / "tests" / "metrics",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert r.returncode != 0
    assert "HeRLJudgeErrorRateHigh" in (r.stdout + r.stderr).decode()
