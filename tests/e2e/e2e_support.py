"""Helpers of the real-cluster suite (kubectl as admin, the operator process, polling, test objects)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from devcluster import ROOT, ClusterError, DevCluster, free_port

from herl.assets import helm_binary
from herl.metrics.promserver import poll_until

OPERATOR_NAMESPACE = "herl-e2e"
RELEASE = "e2e"
JSON = dict[str, Any]


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll ``check`` (herl's bounded back-off) until it returns something truthy; fail the test with
    ``what`` and the last value it returned."""
    last: list[Any] = [None]

    def recorded() -> Any:
        last[0] = check()
        return last[0]

    try:
        return poll_until(recorded, timeout, what)
    except TimeoutError as exc:
        pytest.fail(f"{exc}; last value: {last[0]!r}", pytrace=False)


class Kube:
    """kubectl against the test cluster, as admin (the operator itself never uses this)."""

    def __init__(self, dc: DevCluster) -> None:
        self.dc = dc

    def run(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.dc.kubectl(*args, input=input, check=check)

    def wait(self, resource: str, namespace: str, condition: str, timeout: float) -> None:
        """``kubectl wait --for=condition=…`` (the real client-side wait a user runs), failing the test
        with the object's status when it does not come."""
        proc = self.dc.kubectl(
            "wait",
            f"--for=condition={condition}",
            resource,
            "-n",
            namespace,
            f"--timeout={int(timeout)}s",
            check=False,
            timeout=timeout + 30,
        )
        if proc.returncode != 0:
            kind, _, name = resource.partition("/")
            status = json.dumps((self.get(kind, name, namespace=namespace) or {}).get("status"), indent=1)
            pytest.fail(
                f"kubectl wait {condition} {resource}: {proc.stderr.strip()}\nstatus: {status[:4000]}",
                pytrace=False,
            )

    def apply(self, doc: JSON | list[JSON], *extra: str) -> subprocess.CompletedProcess[str]:
        docs = doc if isinstance(doc, list) else [doc]
        return self.run("apply", *extra, "-f", "-", input=yaml.safe_dump_all(docs))

    def get(
        self, kind: str, name: str | None = None, namespace: str | None = None, selector: str | None = None
    ) -> JSON | None:
        args = ["get", kind, *([name] if name else []), "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        if selector:
            args += ["-l", selector]
        proc = self.run(*args, check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr or "not found" in proc.stderr:
                return None
            raise ClusterError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return json.loads(proc.stdout)

    def items(self, kind: str, namespace: str | None = None, selector: str | None = None) -> list[JSON]:
        out = self.get(kind, namespace=namespace, selector=selector)
        return (out or {}).get("items", [])

    def delete(self, kind: str, name: str, namespace: str, *extra: str) -> None:
        self.run("delete", kind, name, "-n", namespace, "--ignore-not-found", *extra)

    def merge_patch(self, kind: str, name: str, namespace: str, patch: JSON) -> None:
        self.run("patch", kind, name, "-n", namespace, "--type=merge", "-p", json.dumps(patch))

    def status(self, namespace: str, name: str) -> JSON:
        """A HeRLJob's status ({} while it has none or is gone)."""
        return (self.get("herljob", name, namespace=namespace) or {}).get("status") or {}

    def events(self, namespace: str, name: str) -> list[JSON]:
        return [
            e
            for e in self.items("events", namespace=namespace)
            if e.get("involvedObject", {}).get("name") == name
        ]


def helm(cluster: DevCluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(helm_binary()), "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    return proc


class OperatorProcess:
    """``python -m herl_operator`` as a subprocess with a kubeconfig holding the chart's SA token."""

    def __init__(self, cluster: DevCluster, service_account: str) -> None:
        self.cluster = cluster
        self.service_account = service_account
        self.kubeconfig = cluster.folder / "operator.kubeconfig"
        self.log = cluster.logs / "herl-operator.log"
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def token(self, secret: str | None = None) -> str:
        """A TokenRequest token for the SA (bound to a Secret when given, so deleting that Secret
        revokes it at once: the re-login test uses this)."""
        args = ["create", "token", self.service_account, "-n", OPERATOR_NAMESPACE, "--duration=2h"]
        if secret:
            args += ["--bound-object-kind=Secret", f"--bound-object-name={secret}"]
        return self.cluster.kubectl(*args).stdout.strip()

    def write_kubeconfig(self, token: str) -> None:
        tmp = self.kubeconfig.with_suffix(".tmp")
        tmp.write_text(self.cluster.pki.kubeconfig(self.cluster.server, token, self.service_account))
        tmp.replace(self.kubeconfig)

    def start(self, *extra: str) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONSAFEPATH": "1"}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "herl_operator",
                    f"--metrics-port={self.metrics_port}",
                    "--resync-seconds=2",
                    "--progress-seconds=2",
                    # Outside the cluster network: trainers' /metrics through the apiserver's proxy.
                    "--progress-via=apiserver",
                    "--log-format=plain",
                    f"--liveness=http://127.0.0.1:{self.health_port}/healthz",
                    *extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
            )

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(
                    f"the operator exited ({self.proc.returncode}):\n{self.log_text()[-3000:]}", pytrace=False
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        try:
            wait_for("the operator's /healthz", healthy, 60)
        except BaseException:  # pytest.fail raises: never leave the process running behind a failure
            self.kill()
            raise

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: no cleanup handlers run (a crash, an OOM kill, a node loss)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()


def herljob(name: str, namespace: str, **spec: Any) -> JSON:
    """A small valid HeRLJob: 2 workers × 1 GPU on the H100 pool, a 1-CPU head."""
    base: JSON = {
        "model": {"path": "/models/qwen"},
        "data": {"train": "/data/train.parquet"},
        "resources": {
            "workers": 2,
            "gpusPerWorker": 1,
            "tensorParallel": 1,
            "gpuType": "NVIDIA-H100-80GB-HBM3",
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "head": {"cpu": "1", "memory": "2Gi"},
        },
    }
    for key, value in spec.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return {
        "apiVersion": "herl.dev/v1alpha1",
        "kind": "HeRLJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": base,
    }


def kueue_queue(kube: Kube, namespace: str, flavor: str, quota: dict[str, str]) -> str:
    """A ClusterQueue of one test (its namespace only; ``quota`` per resource on ``flavor``; lower
    priorities preempted), the priority classes ``low`` and ``high``, and the LocalQueue ``team``.
    Returns the ClusterQueue's name (cluster-scoped: the test deletes it)."""
    cq = f"cq-{namespace}"[:63]
    kube.apply(
        [
            {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": flavor}},
            *(
                {
                    "apiVersion": "kueue.x-k8s.io/v1beta2",
                    "kind": "WorkloadPriorityClass",
                    "metadata": {"name": name},
                    "value": value,
                }
                for name, value in (("low", 10), ("high", 1000))
            ),
            {
                "apiVersion": "kueue.x-k8s.io/v1beta2",
                "kind": "ClusterQueue",
                "metadata": {"name": cq},
                "spec": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                    "preemption": {"withinClusterQueue": "LowerPriority"},
                    "resourceGroups": [
                        {
                            "coveredResources": list(quota),
                            "flavors": [
                                {
                                    "name": flavor,
                                    "resources": [{"name": r, "nominalQuota": q} for r, q in quota.items()],
                                }
                            ],
                        }
                    ],
                },
            },
            {
                "apiVersion": "kueue.x-k8s.io/v1beta2",
                "kind": "LocalQueue",
                "metadata": {"name": "team", "namespace": namespace},
                "spec": {"clusterQueue": cq},
            },
        ]
    )
    return cq


def condition(obj: JSON | None, ctype: str) -> JSON:
    return next(
        (c for c in ((obj or {}).get("status") or {}).get("conditions") or [] if c["type"] == ctype), {}
    )


def install_release(cluster: DevCluster, kube: Kube) -> str:
    """The chart installed with the real helm into OPERATOR_NAMESPACE; returns its ServiceAccount.
    (Its Deployment's pod is kwok-faked; the operator that reconciles runs beside the cluster.)"""
    helm(
        cluster,
        "install",
        RELEASE,
        str(ROOT / "charts/herl-operator"),
        "-n",
        OPERATOR_NAMESPACE,
        "--create-namespace",
        "--set",
        "operator.progressVia=apiserver",
        "--wait",
        "--timeout",
        "120s",
    )
    deploy = kube.items("deployments", namespace=OPERATOR_NAMESPACE)
    assert len(deploy) == 1, deploy
    return str(deploy[0]["spec"]["template"]["spec"]["serviceAccountName"])
