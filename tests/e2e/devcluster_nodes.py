"""The test cluster's nodes (kwok-managed GPU and CPU nodes) and kwok's Stage set.

GPU nodes look like a managed GPU pool: ``nvidia.com/gpu`` capacity, the GPU product label that
NVIDIA's feature discovery sets, and the taint GPU pools carry, so the real kube-scheduler must honour
our selector, toleration and GPU request to place a worker there. The CPU node has no taint: a pod
without a toleration (the Ray head) can only land there.
"""

from __future__ import annotations

from pathlib import Path

import yaml

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
GPUS_PER_NODE = 8

#: kwok's own Stage files (module sigs.k8s.io/kwok, kustomize/stage/...): supplying any Stage turns
#: kwok's built-in defaults off, so the full set is listed: node initialise + lease heartbeat, and
#: pod ready / complete / delete.
KWOK_STAGES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)


def stages_manifest(kwok_module: Path) -> str:
    return "\n---\n".join((kwok_module / rel).read_text() for rel in KWOK_STAGES)


def _node(name: str, gpu: bool) -> dict:
    capacity = {
        "cpu": "32" if gpu else "16",
        "memory": "256Gi" if gpu else "64Gi",
        "pods": "110",
        "ephemeral-storage": "500Gi",
    }
    labels = {
        "type": "kwok",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node-role.herl.dev/pool": "gpu" if gpu else "cpu",
    }
    spec: dict = {}
    if gpu:
        capacity["nvidia.com/gpu"] = str(GPUS_PER_NODE)
        labels[GPU_PRODUCT_LABEL] = GPU_PRODUCT
        spec["taints"] = [GPU_TAINT]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": spec,
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
            },
        },
    }


def nodes_manifest(gpu_nodes: tuple[str, ...], cpu_nodes: tuple[str, ...]) -> str:
    docs = [_node(n, True) for n in gpu_nodes] + [_node(n, False) for n in cpu_nodes]
    return yaml.safe_dump_all(docs, sort_keys=False)
