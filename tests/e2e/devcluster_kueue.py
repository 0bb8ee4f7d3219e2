"""Kueue for the test control plane: its CRDs, its webhooks registered by URL, its configuration.

Kueue normally runs in-cluster behind a Service with certificates it manages itself. Here its manager
runs beside the apiserver on 127.0.0.1, so its webhook configurations (from the module's
``config/components/webhook/manifests.yaml``) are rewritten to ``clientConfig.url`` with our CA, and
the serving pair is ours (internal cert management off). Only the webhooks of the resources the suite
uses are kept (Kueue's own kinds and RayJob/RayCluster): a webhook for a framework that is not enabled
would answer 404 and, with ``failurePolicy: Fail``, block every object of that kind. RayJob webhooks
get an object selector on the queue-name label: with ``manageJobsWithoutQueueName: false`` Kueue does
nothing to other RayJobs anyway, and the rest of the suite then never depends on Kueue.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path

import yaml

KEEP_PATH_PARTS = ("kueue-x-k8s-io", "ray-io-v1-rayjob", "ray-io-v1-raycluster")
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def crd_files(module: Path) -> list[Path]:
    return sorted((module / "config/components/crd/bases").glob("*.yaml"))


def webhook_configurations(module: Path, port: int, ca: Path) -> list[dict]:
    docs = [
        d for d in yaml.safe_load_all((module / "config/components/webhook/manifests.yaml").read_text()) if d
    ]
    bundle = base64.b64encode(ca.read_bytes()).decode()
    out = []
    for doc in docs:
        doc = copy.deepcopy(doc)
        doc["metadata"]["name"] = f"kueue-{doc['metadata']['name']}"
        kept = []
        for hook in doc.get("webhooks") or []:
            path = hook["clientConfig"]["service"]["path"]
            if not any(part in path for part in KEEP_PATH_PARTS):
                continue
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": bundle}
            if "ray-io" in path:
                hook["objectSelector"] = {"matchExpressions": [{"key": QUEUE_LABEL, "operator": "Exists"}]}
            hook["timeoutSeconds"] = 10
            kept.append(hook)
        doc["webhooks"] = kept
        out.append(doc)
    return out


def configuration(ports: dict[str, int], cert_dir: Path) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "config.kueue.x-k8s.io/v1beta2",
            "kind": "Configuration",
            "namespace": "kueue-system",
            "health": {"healthProbeBindAddress": f"127.0.0.1:{ports['kueue-probe']}"},
            "metrics": {"bindAddress": f"127.0.0.1:{ports['kueue-metrics']}"},
            "webhook": {"port": ports["kueue-webhook"], "host": "127.0.0.1", "certDir": str(cert_dir)},
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "manageJobsWithoutQueueName": False,
            "integrations": {"frameworks": ["ray.io/rayjob"]},
        },
        sort_keys=False,
    )
