"""Helpers of the real-training e2e tests: a head placed on the test kubelet's node, a hostPath PVC for
checkpoints, the tiny model, and a look inside the running pod (its trainer process, its files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from devcluster import TEST_KUBELET_NODE, DevCluster
from e2e_support import Kube, wait_for
from testkubelet import NODE_LABEL, NODE_TAINT

from herl.engine.tiny import tiny_job

JSON = dict[str, Any]

#: The head on the test kubelet's node (its pods really run); workers stay on kwok's GPU nodes.
REAL_HEAD: JSON = {
    "cpu": "1",
    "memory": "4Gi",
    "nodeSelector": {NODE_LABEL: "test-kubelet"},
    "tolerations": [{"key": NODE_TAINT["key"], "operator": "Exists", "effect": "NoSchedule"}],
}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def checkpoint_claim(kube: Kube, cluster: DevCluster, namespace: str) -> tuple[str, Path]:
    """A PersistentVolume on a host folder, bound to a claim ``checkpoints`` in ``namespace``."""
    folder = cluster.folder / "volumes" / namespace
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o777)  # the trainer image runs as a non-root user (no fsGroup support here)
    pv, claim = f"ckpt-{namespace}", "checkpoints"
    kube.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": pv},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "e2e-host",
                    "hostPath": {"path": str(folder), "type": "DirectoryOrCreate"},
                    "claimRef": {"namespace": namespace, "name": claim},
                },
            },
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": namespace},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "e2e-host",
                    "volumeName": pv,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        ]
    )
    wait_for(
        f"PVC {claim} Bound",
        lambda: (
            ((kube.get("pvc", claim, namespace=namespace) or {}).get("status") or {}).get("phase") == "Bound"
        ),
        60,
    )
    return claim, folder


def local_job(name: str, namespace: str, model: Path, claim: str | None, steps: int, **spec: Any) -> JSON:
    """A HeRLJob for the local engine on the tiny model (about a second a step), its head on the test
    kubelet's node, submitted over HTTP, with checkpoints on ``claim``."""
    checkpoints: JSON = {
        "saveEverySteps": 1,
        "keepLast": 2,
        **({"pvc": {"claimName": claim}} if claim else {}),
    }
    doc = tiny_job(
        model,
        name,
        engine="local",
        resources={"head": REAL_HEAD},
        runPolicy={"submissionMode": "HTTPMode", "backoffLimit": 2},
        checkpoints=checkpoints,
        metrics={"enabled": True, "port": 9400},
        **{"algorithm.totalSteps": steps},
        **spec,
    )
    doc["metadata"]["namespace"] = namespace
    return doc


def running_head(kube: Kube, namespace: str, timeout: float = 180) -> JSON:
    """The head pod once it runs Ready on the test kubelet's node."""

    def ready() -> JSON | None:
        for pod in kube.items("pods", namespace=namespace, selector="ray.io/node-type=head"):
            st = pod.get("status") or {}
            conds = {c["type"]: c["status"] for c in st.get("conditions") or []}
            if pod["spec"].get("nodeName") == TEST_KUBELET_NODE and conds.get("Ready") == "True":
                return pod
        return None

    return wait_for(f"a Ready Ray head on {TEST_KUBELET_NODE} in {namespace}", ready, timeout)


def checkpoint_at_least(kube: Kube, namespace: str, name: str, step: int, timeout: float = 240) -> JSON:
    """Wait until the operator reports a checkpoint at ``step`` or later; returns status.lastCheckpoint."""

    def seen() -> JSON | None:
        ckpt = kube.status(namespace, name).get("lastCheckpoint") or {}
        return ckpt if ckpt.get("step", 0) >= step else None

    return wait_for(f"{name}: a checkpoint at step >= {step}", seen, timeout)


def resume_points(log: str) -> list[int]:
    """The step each attempt resumed from, read from the local engine's train.log."""
    return [
        int(line.rsplit("(step ", 1)[1].rstrip(")")) for line in log.splitlines() if "resumed from" in line
    ]


def trainer_pids(namespace: str) -> list[int]:
    """Host pids of trainer processes of HeRLJobs in ``namespace`` (the pods' PID namespaces are
    nested in ours, so /proc shows them; the env names the job's namespace)."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"herl.train" in cmd and f"HERL_JOB_NAMESPACE={namespace}".encode() in env:
            out.append(int(proc.name))
    return out


def metrics_steps(folder: Path) -> list[int]:
    """The steps recorded in the local engine's metrics.jsonl (one line per trained step)."""
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [int(json.loads(line)["training/global_step"]) for line in lines if line.strip()]


def checkpoint_folder(volume: Path, namespace: str, name: str, uid: str) -> Path:
    """Where the operator puts a job's checkpoints on the volume (builders.checkpoint_subpath)."""
    return volume / "herl" / namespace / name / uid
