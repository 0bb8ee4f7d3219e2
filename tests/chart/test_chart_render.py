"""The herl-operator chart rendered by the real helm: lint, Kubernetes schemas, RBAC, security, monitors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import MATRIX, MONITORS_ON, by_kind, one
from herl_operator import builders, rbac

from herl import chart

KUBE_VALIDATE = Path(sys.executable).parent / "kubernetes-validate"
#: Oldest (Chart.yaml kubeVersion) and newest Kubernetes the schemas are checked against.
KUBE_VERSIONS = ("1.28.0", "1.35.0")
CUSTOM_GROUPS = ("monitoring.coreos.com/",)
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


# ------------------------------------------------------------------------------------------ lint


@pytest.mark.parametrize("case", ["defaults", "namespaced-monitors-on"])
def test_helm_lint_strict(case: str) -> None:
    out = chart.lint(MATRIX[case][0])
    assert "0 chart(s) failed" in out
    assert "[ERROR]" not in out and "[WARNING]" not in out


def test_chart_versions_follow_the_package() -> None:
    meta = yaml.safe_load((chart.CHART_DIR / "Chart.yaml").read_text())
    project = tomllib.loads((chart.REPO / "pyproject.toml").read_text())["project"]
    assert meta["apiVersion"] == "v2"
    assert meta["appVersion"] == project["version"] == meta["version"]
    assert meta["kubeVersion"] == ">=1.28.0-0"


def test_kube_version_gate() -> None:
    with pytest.raises(chart.ChartError, match=r"incompatible with Kubernetes v1\.27"):
        chart.render(kube_version="1.27.9")
    # Managed clusters report pre-release style versions; they must pass.
    assert "kind: Deployment" in chart.render(kube_version="v1.29.3-eks-5e0fdde")


# ------------------------------------------------------------------------------------------ schemas


def _builtin(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if not d["apiVersion"].startswith(CUSTOM_GROUPS)]


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_render_passes_kubernetes_validate_strict(renders, tmp_path: Path, kube_version: str) -> None:
    """One kubernetes-validate call per Kubernetes version over every case (one file per case)."""
    files = []
    for name, docs in renders.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(_builtin(docs), sort_keys=False))
        files.append(str(path))
    install = chart.REPO / "manifests" / "install.yaml"
    proc = subprocess.run(
        [str(KUBE_VALIDATE), "--strict", "-k", kube_version, *files, str(install)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ERROR" not in proc.stdout
    # Every built-in document was really checked (kubernetes-validate prints one line per resource).
    checked = proc.stdout.count("passed for resource")
    expected = sum(len(_builtin(d)) for d in renders.values()) + len(chart.documents(install.read_text()))
    assert checked == expected, proc.stdout


def test_matrix_objects(renders) -> None:
    kinds = {name: sorted(d["kind"] for d in docs) for name, docs in renders.items()}
    assert kinds["defaults"].count("ClusterRole") == 3  # operator + editor + viewer
    assert "Role" not in kinds["defaults"]
    assert kinds["namespaced"].count("Role") == 2 and kinds["namespaced"].count("RoleBinding") == 2
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        assert kind not in kinds["defaults"]
        assert kinds["monitors-on"].count(kind) == 1
    assert kinds["monitors-on"].count("ConfigMap") == len(
        list((chart.CHART_DIR / "files/dashboards").glob("*.json"))
    )
    assert not {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"} & set(
        kinds["all-off"]
    )
    for docs in renders.values():
        assert one(docs, "CustomResourceDefinition")["metadata"]["name"] == "herljobs.herl.dev"
        one(docs, "Deployment")
        one(docs, "Service")


# ------------------------------------------------------------------------------------------ RBAC


def _triples(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def _operator_roles(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Roles/ClusterRoles bound to the operator's ServiceAccount."""
    sa = one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    bound = set()
    for b in by_kind(docs, "ClusterRoleBinding") + by_kind(docs, "RoleBinding"):
        if any(s["kind"] == "ServiceAccount" and s["name"] == sa for s in b["subjects"]):
            bound.add((b["roleRef"]["kind"], b["metadata"].get("namespace"), b["roleRef"]["name"]))
    roles = []
    for r in by_kind(docs, "ClusterRole") + by_kind(docs, "Role"):
        ns = r["metadata"].get("namespace") if r["kind"] == "Role" else None
        if (r["kind"], ns, r["metadata"]["name"]) in bound:
            roles.append(r)
    return roles


def test_cluster_wide_rbac_grants_exactly_the_operator_table(renders) -> None:
    roles = _operator_roles(renders["defaults"])
    assert [r["kind"] for r in roles] == ["ClusterRole"]
    assert _triples(roles[0]["rules"]) == rbac.permissions()


def test_namespaced_rbac_grants_exactly_the_operator_table(renders) -> None:
    docs = renders["namespaced"]
    roles = _operator_roles(docs)
    cluster = [r for r in roles if r["kind"] == "ClusterRole"]
    per_ns = {r["metadata"]["namespace"]: r for r in roles if r["kind"] == "Role"}
    assert sorted(per_ns) == ["team-a", "team-b"]
    cluster_scoped = {(r.api_group, r.resource, v) for r in rbac.RULES if r.cluster_scoped for v in r.verbs}
    assert len(cluster) == 1 and _triples(cluster[0]["rules"]) == cluster_scoped
    for role in per_ns.values():
        assert _triples(role["rules"]) == rbac.permissions() - cluster_scoped
    # Nothing namespaced leaks into the ClusterRole in this mode.
    assert not {t[1] for t in _triples(cluster[0]["rules"])} & {"herljobs", "rayjobs", "configmaps"}


def test_no_wildcards_in_any_role(renders) -> None:
    for docs in renders.values():
        for role in by_kind(docs, "ClusterRole") + by_kind(docs, "Role"):
            for rule in role["rules"]:
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule.get(field, []), (role["metadata"]["name"], rule)
                assert not rule.get("resourceNames") and not rule.get("nonResourceURLs")


def test_user_roles_aggregate_into_edit_and_view(renders) -> None:
    roles = {r["metadata"]["name"]: r for r in by_kind(renders["defaults"], "ClusterRole")}
    editor, viewer = roles["herl-operator-herljob-editor"], roles["herl-operator-herljob-viewer"]
    assert editor["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert viewer["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert ("herl.dev", "herljobs", "create") in _triples(editor["rules"])
    # Status belongs to the operator: people can read it, never write it.
    assert {v for g, r, v in _triples(editor["rules"]) if r == "herljobs/status"} == {"get"}
    assert {v for _, _, v in _triples(viewer["rules"])} == {"get", "list", "watch"}


def test_rbac_rules_file_is_the_operator_table() -> None:
    doc = yaml.safe_load((chart.CHART_DIR / "files" / "rbac-rules.yaml").read_text())
    assert _triples(doc["clusterRules"] + doc["namespacedRules"]) == rbac.permissions()


# ------------------------------------------------------------------------------------------ Deployment


def test_deployment_is_hardened(renders) -> None:
    for name, docs in renders.items():
        dep = one(docs, "Deployment")
        spec = dep["spec"]
        assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}, name
        pod = spec["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] >= 1
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
        (container,) = pod["containers"]
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["privileged"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
        # The read-only root needs a writable /tmp.
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "emptyDir" in {v["name"]: v for v in pod["volumes"]}[mounts["/tmp"]]


def _args(docs: list[dict[str, Any]]) -> list[str]:
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]


def test_watch_scope_args(renders) -> None:
    assert "--all-namespaces" in _args(renders["defaults"])
    assert not any(a.startswith("--namespace") for a in _args(renders["defaults"]))
    args = _args(renders["namespaced"])
    assert "--all-namespaces" not in args
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=team-a", "--namespace=team-b"]


def test_submission_mode_and_progress_via_reach_the_operator_and_its_rbac(renders) -> None:
    assert {"--submission-mode=K8sJobMode", "--progress-via=direct"} <= set(_args(renders["defaults"]))
    docs = renders["progress-via-apiserver"]
    assert {"--submission-mode=HTTPMode", "--progress-via=apiserver"} <= set(_args(docs))
    proxy = ("", "services/proxy", "get")
    assert proxy not in _triples(_operator_roles(renders["defaults"])[0]["rules"])
    roles = {r["kind"]: r for r in _operator_roles(docs)}
    # Granted only in the watched namespaces, and only with progressVia=apiserver.
    assert proxy in _triples(roles["Role"]["rules"]) and proxy not in _triples(roles["ClusterRole"]["rules"])
    assert _triples(roles["Role"]["rules"]) | _triples(roles["ClusterRole"]["rules"]) == rbac.permissions(
        progress_via_apiserver=True
    )


def test_probes_and_ports_agree_with_args(renders) -> None:
    docs = renders["defaults"]
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    args = container["args"]
    assert f"--liveness=http://0.0.0.0:{ports['health']}/healthz" in args
    assert f"--metrics-port={ports['metrics']}" in args
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    service = one(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_custom_ports_and_image_digest() -> None:
    digest = "sha256:" + "a" * 64
    docs = chart.documents(
        chart.render(
            {
                "operator": {"healthPort": 9000, "metricsPort": 9001, "extraArgs": ["--resync-seconds=10"]},
                "image": {"digest": digest},
            }
        )
    )
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"ghcr.io/herl-dev/herl-operator@{digest}"
    assert "--liveness=http://0.0.0.0:9000/healthz" in container["args"]
    assert "--metrics-port=9001" in container["args"] and container["args"][-1] == "--resync-seconds=10"


# ------------------------------------------------------------------------------------------ checks


def test_kuberay_check_fails_without_the_api_and_can_be_skipped() -> None:
    with pytest.raises(chart.ChartError, match=r"needs KubeRay >= 1\.6.*ray\.io/v1 RayJob"):
        chart.render(api_versions=())
    assert "kind: Deployment" in chart.render({"skipKubeRayCheck": True}, api_versions=())


def test_monitoring_check_fails_without_prometheus_operator() -> None:
    values = {"monitoring": {"podMonitor": {"enabled": True}}}
    with pytest.raises(chart.ChartError, match=r"monitoring\.coreos\.com/v1"):
        chart.render(values)
    values["monitoring"]["skipCRDCheck"] = True
    assert "kind: PodMonitor" in chart.render(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"monitoring": {"serviceMonitor": {"enabled": True, "interval": "10s", "scrapeTimeout": "1m"}}},
            "monitoring.serviceMonitor.scrapeTimeout",
        ),
        (
            {"monitoring": {"podMonitor": {"enabled": True, "interval": "15s", "scrapeTimeout": "15500ms"}}},
            "monitoring.podMonitor.scrapeTimeout",
        ),
        ({"operator": {"healthPort": 9000, "metricsPort": 9000}}, "must differ"),
        ({"serviceAccount": {"create": False}}, "serviceAccount.name is required"),
    ],
)
def test_template_level_checks(values: dict[str, Any], message: str) -> None:
    with pytest.raises(chart.ChartError, match=re.escape(message)):
        chart.render(values, api_versions=(chart.KUBERAY_API, chart.MONITORING_API))


# ------------------------------------------------------------------------------------------ monitors


def _labels(doc: dict[str, Any]) -> dict[str, str]:
    return doc["metadata"]["labels"]


def test_service_monitor_selects_the_metrics_service(renders) -> None:
    docs = renders["monitors-on"]
    sm, svc = one(docs, "ServiceMonitor"), one(docs, "Service")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert _labels(sm)["release"] == "kube-prometheus-stack"
    assert sm["spec"]["selector"]["matchLabels"].items() <= _labels(svc).items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [svc["metadata"]["namespace"]]}
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert DURATION.match(endpoint["interval"]) and DURATION.match(endpoint["scrapeTimeout"])


def test_pod_monitor_matches_what_the_operator_puts_on_ray_pods(renders) -> None:
    pm = one(renders["monitors-on"], "PodMonitor")
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    assert pm["spec"]["namespaceSelector"] == {"any": True}
    assert pm["spec"]["selector"] == {"matchExpressions": [{"key": builders.LABEL_JOB, "operator": "Exists"}]}
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == builders.METRICS_PORT_NAME
    assert endpoint["honorLabels"] is True
    targets = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    # Prometheus' service discovery name for the pod label herl.dev/job.
    sanitized = "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", builders.LABEL_JOB)
    assert targets["herl_job"] == [sanitized]
    assert targets["namespace"] == ["__meta_kubernetes_namespace"]
    assert targets["ray_io_cluster"] == ["__meta_kubernetes_pod_label_ray_io_cluster"]
    # Namespaced install: scrape only the watched namespaces.
    pm_ns = one(renders["namespaced-monitors-on"], "PodMonitor")
    assert pm_ns["spec"]["namespaceSelector"] == {"matchNames": ["team-a"]}


def test_chart_defaults_match_the_operator_builders() -> None:
    values = yaml.safe_load((chart.CHART_DIR / "values.yaml").read_text())
    assert values["monitoring"]["podMonitor"]["jobLabel"] == builders.LABEL_JOB
    assert values["monitoring"]["podMonitor"]["portName"] == builders.METRICS_PORT_NAME


def test_prometheus_rule_carries_the_generated_alerts_verbatim(renders) -> None:
    from herl.metrics import alerts

    rule = one(renders["monitors-on"], "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert _labels(rule)["release"] == "kube-prometheus-stack"
    assert rule["spec"]["groups"] == alerts.rule_groups()
    names = set()
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for r in group["rules"]:
            assert r["alert"] and r["expr"] and DURATION.match(r["for"])
            assert r["labels"]["severity"] in {"warning", "critical", "info"}
            names.add(r["alert"])
    assert names == {a.name for a in alerts.ALL_ALERTS}
    # Alert templates reach Prometheus unrendered by Helm.
    assert any(
        "{{ $labels.herl_job }}" in r["annotations"]["summary"]
        for g in rule["spec"]["groups"]
        for r in g["rules"]
    )


def test_dashboards_are_sidecar_configmaps(renders) -> None:
    from herl.metrics import dashboards

    maps = by_kind(renders["monitors-on"], "ConfigMap")
    assert len(maps) == len(dashboards.DASHBOARDS)
    seen = {}
    for cm in maps:
        assert _labels(cm)["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "HeRL"}
        ((key, text),) = cm["data"].items()
        board = json.loads(text)
        assert board["uid"] and board["panels"]
        seen[key] = board
    assert {k: dashboards.render(v) for k, v in seen.items()} == {
        k: dashboards.render(build()) for k, build in dashboards.DASHBOARDS.items()
    }
    other = chart.documents(
        chart.render({"monitoring": {"dashboards": {"enabled": True, "namespace": "grafana"}}})
    )
    assert {cm["metadata"]["namespace"] for cm in by_kind(other, "ConfigMap")} == {"grafana"}


def test_monitors_off_by_default_and_switchable_one_by_one() -> None:
    for key, kind in (
        ("serviceMonitor", "ServiceMonitor"),
        ("podMonitor", "PodMonitor"),
        ("prometheusRule", "PrometheusRule"),
        ("dashboards", "ConfigMap"),
    ):
        docs = chart.documents(
            chart.render(
                {"monitoring": {key: MONITORS_ON[key]}},
                api_versions=(chart.KUBERAY_API, chart.MONITORING_API),
            )
        )
        present = {d["kind"] for d in docs} & {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"}
        assert present == {kind}, key


# ------------------------------------------------------------------------------------------ operator CLI


@pytest.mark.parametrize(
    ("case", "values"),
    [
        ("defaults", {}),
        (
            "namespaced-debug",
            {
                "watchNamespaces": ["team-a", "team-b"],
                "operator": {"logLevel": "debug", "logFormat": "plain", "healthPort": 9090},
            },
        ),
    ],
)
def test_rendered_args_are_accepted_by_the_operator(monkeypatch, case: str, values: dict[str, Any]) -> None:
    """Run the operator's real `python -m herl_operator` argument handling on the Deployment's args, with
    kopf.run captured instead of started: every flag the chart passes must be understood."""
    import kopf
    from herl_operator import __main__ as entry
    from herl_operator import handlers

    seen: dict[str, Any] = {}
    monkeypatch.setattr(handlers, "build_registry", lambda config: (seen.setdefault("config", config), None))
    monkeypatch.setattr(kopf, "configure", lambda **kw: seen.setdefault("configure", kw))
    monkeypatch.setattr(kopf, "run", lambda **kw: seen.setdefault("run", kw))

    docs = chart.documents(chart.render(values))
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert entry.main(container["args"]) == 0
    run = seen["run"]
    health = {p["name"]: p["containerPort"] for p in container["ports"]}["health"]
    assert run["liveness_endpoint"] == f"http://0.0.0.0:{health}/healthz"
    assert run["standalone"] is True  # no peering: hence one replica, Recreate
    assert seen["config"].metrics_port == values.get("operator", {}).get("metricsPort", 8080)
    if values.get("watchNamespaces"):
        assert run["clusterwide"] is False and list(run["namespaces"]) == values["watchNamespaces"]
        assert seen["configure"]["debug"] is True
        assert seen["configure"]["log_format"] == kopf.LogFormat.PLAIN
    else:
        assert run["clusterwide"] is True and not run["namespaces"]
        assert seen["configure"]["debug"] is False and seen["configure"]["verbose"] is False
        assert seen["configure"]["log_format"] == kopf.LogFormat.JSON


@pytest.mark.parametrize(
    ("release", "name"),
    [
        ("herl", "herl-operator"),
        ("herl-operator", "herl-operator"),
        ("prod", "prod-herl-operator"),
    ],
)
def test_resource_names_follow_the_release(release: str, name: str) -> None:
    docs = chart.documents(chart.render(release=release))
    assert one(docs, "Deployment")["metadata"]["name"] == name
    assert {b["roleRef"]["name"] for b in by_kind(docs, "ClusterRoleBinding")} == {name}


def test_notes_tell_the_next_steps() -> None:
    """NOTES.txt as `helm install --dry-run=client` prints it (no cluster needed)."""
    proc = subprocess.run(
        [
            str(chart.helm()),
            "install",
            "herl",
            str(chart.CHART_DIR),
            "-n",
            "ml-ops",
            "--dry-run=client",
            "--set",
            "skipKubeRayCheck=true",
            "--set",
            "watchNamespaces={team-a,team-b}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "kubectl -n ml-ops rollout status deployment/herl-operator" in notes
    assert "kubectl apply -f manifests/samples/" in notes and "kubectl get herl" in notes
    assert "watching namespaces: team-a, team-b" in notes
    assert "check was SKIPPED" in notes
