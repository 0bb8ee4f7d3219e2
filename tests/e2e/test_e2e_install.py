"""Installing the operator on a real apiserver: helm install / upgrade / uninstall of the chart with the
real helm binary, and `kubectl apply -f manifests/install.yaml`."""

from __future__ import annotations

import yaml
from devcluster import ROOT, DevCluster
from e2e_support import Kube, helm, wait_for

CHART = str(ROOT / "charts/herl-operator")


def _deployment_args(kube: Kube, namespace: str) -> list[str]:
    deploy = kube.items("deployments", namespace=namespace)
    assert len(deploy) == 1, deploy
    container = deploy[0]["spec"]["template"]["spec"]["containers"][0]
    return [*container.get("command", []), *container.get("args", [])]


def test_helm_install_upgrade_uninstall(cluster: DevCluster, kube: Kube) -> None:
    ns, rel = "herl-helm-cycle", "cycle"
    helm(cluster, "install", rel, CHART, "-n", ns, "--create-namespace", "--wait", "--timeout", "120s")
    # What a release creates is really there, and the Deployment's pod was scheduled and (kwok) ran.
    assert kube.items("serviceaccounts", namespace=ns, selector=f"app.kubernetes.io/instance={rel}")
    roles = kube.items("clusterroles", selector=f"app.kubernetes.io/instance={rel}")
    assert roles, "no ClusterRole for the operator"
    pods = kube.items("pods", namespace=ns, selector=f"app.kubernetes.io/instance={rel}")
    assert pods and all(p["status"]["phase"] == "Running" for p in pods)
    assert "--log-format=json" in _deployment_args(kube, ns)

    helm(
        cluster,
        "upgrade",
        rel,
        CHART,
        "-n",
        ns,
        "--set",
        "operator.logFormat=plain",
        "--wait",
        "--timeout",
        "120s",
    )
    assert "--log-format=plain" in _deployment_args(kube, ns)
    assert "deployed" in helm(cluster, "status", rel, "-n", ns).stdout

    helm(cluster, "uninstall", rel, "-n", ns, "--wait", "--timeout", "120s")
    wait_for(
        "the release's objects to be gone",
        lambda: (
            not kube.items("deployments", namespace=ns)
            and not kube.items("clusterroles", selector=f"app.kubernetes.io/instance={rel}")
        ),
        60,
    )
    # The CRD stays (Helm never deletes CRDs from crds/): HeRLJobs survive an uninstall.
    assert kube.get("crd", "herljobs.herl.dev") is not None


def test_plain_install_yaml_applies_and_removes(kube: Kube) -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "manifests/install.yaml").read_text()) if d]
    kinds = {d["kind"] for d in docs}
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount"} <= kinds
    kube.run("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "manifests/install.yaml"))
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    ns, name = deploy["metadata"]["namespace"], deploy["metadata"]["name"]
    wait_for(
        "the plain install's Deployment to be available",
        lambda: (kube.get("deployment", name, namespace=ns) or {}).get("status", {}).get("availableReplicas"),
        90,
    )
    # Remove everything but the CRD (deleting it would delete every HeRLJob of the other tests).
    rest = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    kube.run("delete", "--ignore-not-found", "--wait=false", "-f", "-", input=yaml.safe_dump_all(rest))
