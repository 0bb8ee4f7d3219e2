"""Generated files of the chart and manifests/install.yaml are in sync with their sources."""

from __future__ import annotations

import yaml

from herl import chart


def test_chart_files_match_their_producers() -> None:
    """files/ copies of the RBAC table, dashboards and alert rules are what the producers write now."""
    for produce in (chart.produce_rbac_rules, chart.produce_chart_monitoring_files):
        for rel, text in produce().items():
            path = chart.REPO / rel
            assert path.exists(), f"{rel} missing: run `herl generate`"
            assert path.read_text() == text, f"{rel} drifted from its source: run `herl generate`"


def test_chart_copies_equal_the_manifests_copies() -> None:
    """The chart ships byte-for-byte the dashboards and rules that manifests/ ships."""
    files = chart.CHART_DIR / "files"
    for board in (files / "dashboards").glob("*.json"):
        assert board.read_text() == (chart.REPO / "manifests/dashboards" / board.name).read_text(), board.name
    rules = "herl-rules.rules.yaml"
    assert (files / "alerts" / rules).read_text() == (chart.REPO / "manifests/alerts" / rules).read_text()


def test_install_yaml_is_in_sync_and_deterministic() -> None:
    produced = chart.produce_install_yaml()
    assert list(produced) == ["manifests/install.yaml"]
    text = produced["manifests/install.yaml"]
    assert text == chart.install_yaml_text(), "two renders differ: the chart is not deterministic"
    on_disk = (chart.REPO / "manifests/install.yaml").read_text()
    assert on_disk == text, "manifests/install.yaml drifted from the chart: run `herl generate`"


def test_install_yaml_content() -> None:
    docs = chart.documents((chart.REPO / "manifests/install.yaml").read_text())
    kinds = [d["kind"] for d in docs]
    # Namespace first, then the CRD, so a single `kubectl apply -f` works on an empty cluster.
    assert kinds[:2] == ["Namespace", "CustomResourceDefinition"]
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment"} <= set(kinds)
    assert not {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"} & set(kinds)
    crd = docs[1]
    assert crd == yaml.safe_load((chart.CHART_DIR / "crds/herl.dev_herljobs.yaml").read_text())
    for d in docs[2:]:
        if d["kind"] not in {"ClusterRole", "ClusterRoleBinding"}:
            assert d["metadata"]["namespace"] == chart.NAMESPACE, d["metadata"]["name"]
    ns = docs[0]
    assert ns["metadata"]["name"] == chart.NAMESPACE
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "herl-operator", "namespace": chart.NAMESPACE}
    ]


def test_producers_only_write_their_own_paths() -> None:
    allowed = ("charts/herl-operator/files/", "manifests/install.yaml")
    for produce in chart.PRODUCERS:
        for rel in produce():
            assert rel.startswith(allowed), rel
