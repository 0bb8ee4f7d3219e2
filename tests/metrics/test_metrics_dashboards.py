"""Dashboard JSON structure as Grafana's sidecar provisioning needs it (no Grafana server here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from herl.metrics import dashboards

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "manifests" / "dashboards").glob("*.json"))


def _load(p: Path) -> dict[str, Any]:
    return json.loads(p.read_text(encoding="utf-8"))


def test_every_generated_dashboard_is_checked_in() -> None:
    assert {p.name for p in FILES} == set(dashboards.DASHBOARDS)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    d = _load(path)
    assert d["uid"] and len(d["uid"]) <= 40 and d["title"].startswith("HeRL ")
    assert isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36
    assert d["id"] is None  # provisioning assigns ids; a fixed id clashes across Grafana instances
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "herl_job"):
        v = variables[name]
        assert v["type"] == "query" and v["datasource"]["uid"] == "${datasource}"
        assert v["query"]["query"].startswith("label_values(") and v["includeAll"] and v["allValue"] == ".*"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    occupied: set[tuple[int, int]] = set()
    graphs = 0
    for p in d["panels"]:
        g = p["gridPos"]
        assert {"h", "w", "x", "y"} <= set(g)
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, (p["title"], g)
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & occupied, f"panel {p['title']!r} overlaps another"
        occupied |= cells
        assert p["title"]
        if p["type"] == "row":
            continue
        graphs += 1
        assert p["type"] in {"timeseries", "stat", "table"}
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert p["targets"], f"panel {p['title']!r} has no query"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))
        for t in p["targets"]:
            assert t["expr"] and t["datasource"]["uid"] == "${datasource}"
            if "herl_operator" not in t["expr"] or "herl_job" in t["expr"]:
                # trainer panels and per-job operator panels honour both filters
                assert "$namespace" in t["expr"] and "$herl_job" in t["expr"], t["expr"]
    assert graphs >= 6


def test_substitute_replaces_both_variable_syntaxes() -> None:
    got = dashboards.substitute(
        'rate(x{a=~"$namespace", b="${herl_job}"}[$__rate_interval])',
        {"namespace": "ns", "herl_job": "j", "__rate_interval": "1m"},
    )
    assert got == 'rate(x{a=~"ns", b="j"}[1m])'
    assert dashboards.substitute("$unknown", {}) == "$unknown"


def test_training_dashboard_has_the_required_sections() -> None:
    d = dashboards.training_dashboard()
    rows = [p["title"] for p in d["panels"] if p["type"] == "row"]
    assert rows == [
        "Reward",
        "Hindsight exploration",
        "Policy health",
        "Lengths",
        "Progress, throughput and stage timings",
        "Judge",
    ]
    exprs = " ".join(e for _, e in dashboards.iter_queries(d))
    for needed in (
        "herl_hindsight_revision_success_ratio",
        "herl_hindsight_bonus_mean",
        "herl_hindsight_token_ratio",
        "herl_hindsight_fallbacks_total",
        "herl_policy_entropy",
        "herl_policy_kl",
        "herl_policy_clip_ratio",
        "herl_reward_all_met_ratio",
        "herl_throughput_tokens_per_second",
        "herl_stage_duration_seconds",
        "herl_judge_errors_total",
    ):
        assert needed in exprs, needed
