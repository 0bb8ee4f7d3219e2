"""Where the trainer's metrics live on a KubeRay cluster, and how the scrape finds them.

Decision (docs/metrics.md, "On the cluster"): a prometheus_client endpoint in the process that runs the
training loop (veRL's TaskRunner actor), with that actor pinned to the Ray head, scraped through a
named container port on the head pod. Not Ray's metrics agent (``ray.util.metrics`` on port 8080):
that path renames every series ``ray_herl_*``, adds per-process tags (WorkerId, SessionName, ...) that
change on every restart, batches exports (~10 s), and cannot be exercised against a real Prometheus in
CPU CI, whereas this path is byte-for-byte the exporter the tests scrape.

This module holds the agreed constants and small builders the operator and the veRL plugin use.
"""

from __future__ import annotations

from typing import Any

from herl.api.model import API_GROUP
from herl.metrics.publisher import ENV_ADDR, ENV_JOB, ENV_NAMESPACE, ENV_PORT

#: Default port of the trainer's /metrics on the head pod (matches herl.api MetricsSpec.port).
DEFAULT_PORT = 9400
#: Name of the container port on the Ray head (≤ 15 chars, IANA_SVC_NAME); the PodMonitor selects it.
PORT_NAME = "herl-metrics"
#: Ray's built-in custom resource that exists only on the head node: a tiny demand pins an actor there.
HEAD_RESOURCE = "node:__internal_head__"
#: Pod label the operator puts on every pod of a HeRLJob (value: the job name).
JOB_POD_LABEL = f"{API_GROUP}/job"


def head_pinning_options() -> dict[str, Any]:
    """``ActorClass.options(**head_pinning_options())`` schedules the TaskRunner on the Ray head.

    Why the head: its pod is the one with the stable Service, the ``herl-metrics`` port and the
    PodMonitor; a TaskRunner on a worker would export where nothing scrapes. The head then needs at
    least the TaskRunner's CPU (``rayStartParams.num-cpus >= 1``).
    """
    return {"resources": {HEAD_RESOURCE: 0.001}}


def trainer_env(herl_job: str, namespace: str, port: int = DEFAULT_PORT) -> list[dict[str, Any]]:
    """Env vars the operator puts on the Ray head container so :func:`herl.metrics.publish_step` labels
    the series and serves on ``port`` (all addresses, for the pod IP)."""
    return [
        {"name": ENV_JOB, "value": herl_job},
        {"name": ENV_NAMESPACE, "value": namespace},
        {"name": ENV_PORT, "value": str(port)},
        {"name": ENV_ADDR, "value": "0.0.0.0"},
    ]


def head_container_port(port: int = DEFAULT_PORT) -> dict[str, Any]:
    """The extra container port on the Ray head."""
    return {"name": PORT_NAME, "containerPort": port, "protocol": "TCP"}


def pod_monitor(
    name: str = "herl-trainer", namespace: str | None = None, interval: str = "30s"
) -> dict[str, Any]:
    """A PodMonitor scraping ``herl-metrics`` on Ray head pods of HeRLJobs.

    ``honorLabels: true`` keeps our ``namespace``/``herl_job`` labels instead of renaming a clash to
    ``exported_namespace``; selecting by the :data:`JOB_POD_LABEL` pod label (set by the operator) keeps
    other Ray clusters out. The ``ray.io/cluster`` label is copied as ``ray_io_cluster`` like the
    KubeRay PodMonitors do, so Ray's own dashboards can be cross-linked.
    """
    meta: dict[str, Any] = {
        "name": name,
        "labels": {"app.kubernetes.io/name": "herl", "app.kubernetes.io/component": "trainer-metrics"},
    }
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": meta,
        "spec": {
            "selector": {
                "matchExpressions": [
                    {"key": "ray.io/node-type", "operator": "In", "values": ["head"]},
                    {"key": JOB_POD_LABEL, "operator": "Exists"},
                ]
            },
            "namespaceSelector": {"any": True},
            "podMetricsEndpoints": [
                {
                    "port": PORT_NAME,
                    "path": "/metrics",
                    "interval": interval,
                    "honorLabels": True,
                    "relabelings": [
                        {
                            "sourceLabels": ["__meta_kubernetes_pod_label_ray_io_cluster"],
                            "targetLabel": "ray_io_cluster",
                        }
                    ],
                }
            ],
        },
    }
