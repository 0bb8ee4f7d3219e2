"""Values matrix and small helpers of the chart tests (imported by this unique module name)."""

from __future__ import annotations

from typing import Any

from herl import chart

#: monitoring.coreos.com is served too, as on a cluster with kube-prometheus-stack.
ALL_APIS = (chart.KUBERAY_API, chart.MONITORING_API)

MONITORS_ON = {
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "podMonitor": {"enabled": True},
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "dashboards": {"enabled": True, "annotations": {"grafana_folder": "HeRL"}},
}

#: name -> (values, api versions the "cluster" serves)
MATRIX: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "defaults": ({}, (chart.KUBERAY_API,)),
    "namespaced": ({"watchNamespaces": ["team-a", "team-b"]}, (chart.KUBERAY_API,)),
    "monitors-on": ({"monitoring": MONITORS_ON}, ALL_APIS),
    "namespaced-monitors-on": ({"watchNamespaces": ["team-a"], "monitoring": MONITORS_ON}, ALL_APIS),
    "progress-via-apiserver": (
        {
            "watchNamespaces": ["team-a"],
            "operator": {"progressVia": "apiserver", "submissionMode": "HTTPMode"},
        },
        (chart.KUBERAY_API,),
    ),
    "all-off": (
        {"rbac": {"create": False, "userRoles": False}, "serviceAccount": {"create": False, "name": "ops"}},
        (chart.KUBERAY_API,),
    ),
}


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]
