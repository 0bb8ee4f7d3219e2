from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SAMPLES = sorted((REPO / "manifests" / "samples").glob("*.yaml"))


#: The corpus of invalid HeRLJobs: each is one mistake a user could make. Used by tests/api (herl
#: validate and the generated CRD offline) and tests/e2e (the real apiserver).
# (case id, edits to the base document, field path that must be named)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("group-size-too-small", {"spec.algorithm.groupSize": 1}, "spec.algorithm.groupSize"),
    ("group-size-not-a-number", {"spec.algorithm.groupSize": "eight"}, "spec.algorithm.groupSize"),
    ("learning-rate-zero", {"spec.algorithm.learningRate": 0}, "spec.algorithm.learningRate"),
    ("dual-clip-not-above-one", {"spec.algorithm.dualClipC": 1.0}, "spec.algorithm.dualClipC"),
    (
        "incorporation-unknown",
        {"spec.algorithm.hindsight.incorporation": "prepend"},
        "spec.algorithm.hindsight.incorporation",
    ),
    (
        "bonus-alpha-above-one",
        {"spec.algorithm.hindsight.bonus": {"alpha": 1.5}},
        "spec.algorithm.hindsight.bonus.alpha",
    ),
    ("unknown-field-typo", {"spec.algorithm.groupsize": 8}, "spec.algorithm.groupsize"),
    ("unknown-preset", {"spec.preset": "official"}, "spec.preset"),
    ("missing-model", {"spec.model": ...}, "spec.model"),
    ("model-path-with-space", {"spec.model.path": "/models/my model"}, "spec.model.path"),
    ("name-too-long", {"metadata.name": "a" * 41}, "metadata.name"),
    ("name-with-dot", {"metadata.name": "my.job"}, "metadata.name"),
    ("train-data-missing", {"spec.data.train": ...}, "spec.data.train"),
    ("synthetic-settings-for-parquet", {"spec.data.synthetic": {"numPrompts": 8}}, "spec.data.synthetic"),
    ("mini-batch-not-dividing", {"spec.algorithm.miniBatchSize": 48}, "spec.algorithm.miniBatchSize"),
    ("judge-missing-for-rubric", {"spec.reward": {"type": "rubric-judge"}}, "spec.reward.judge"),
    (
        "judge-endpoint-not-http",
        {"spec.reward": {"type": "rubric-judge", "judge": {"endpoint": "ftp://x"}}},
        "spec.reward.judge.endpoint",
    ),
    (
        "secret-ref-without-key",
        {
            "spec.reward": {
                "type": "rubric-judge",
                "judge": {"endpoint": "https://x/v1", "apiKeySecretRef": {"name": "s"}},
            }
        },
        "spec.reward.judge.apiKeySecretRef.key",
    ),
    ("hindsight-prompt-does-not-fit", {"spec.data.maxPromptLength": 1024}, "spec.data.maxPromptLength"),
    (
        "revision-longer-than-response",
        {"spec.algorithm.hindsight.revision": {"maxTokens": 4096}},
        "spec.algorithm.hindsight.revision.maxTokens",
    ),
    (
        "tensor-parallel-not-dividing",
        {"spec.resources": {"gpusPerWorker": 4, "tensorParallel": 3}},
        "spec.resources.tensorParallel",
    ),
    ("image-with-shell", {"spec.resources": {"image": "repo/img:$(id)"}}, "spec.resources.image"),
    (
        "shared-memory-not-a-quantity",
        {"spec.resources": {"sharedMemory": "lots"}},
        "spec.resources.sharedMemory",
    ),
    (
        "two-checkpoint-stores",
        {"spec.checkpoints": {"pvc": {"claimName": "ckpt"}, "uri": "s3://b/p"}},
        "spec.checkpoints",
    ),
    ("checkpoint-uri-scheme", {"spec.checkpoints": {"uri": "http://b/p"}}, "spec.checkpoints.uri"),
    ("engine-unknown", {"spec.engine": "trl"}, "spec.engine"),
    (
        "local-engine-with-several-workers",
        {"spec.engine": "local", "spec.resources": {"workers": 2}},
        "spec.resources.workers",
    ),
    ("head-gpus-with-verl", {"spec.resources": {"head": {"gpus": 1}}}, "spec.resources.head.gpus"),
    (
        "submission-mode-unknown",
        {"spec.runPolicy": {"submissionMode": "Job"}},
        "spec.runPolicy.submissionMode",
    ),
    (
        "budget-below-attempt",
        {"spec.runPolicy": {"totalBudgetSeconds": 60, "attemptDeadlineSeconds": 600}},
        "spec.runPolicy.totalBudgetSeconds",
    ),
    ("queue-name-uppercase", {"spec.queue": {"name": "TeamA"}}, "spec.queue.name"),
    (
        "override-reserved-key",
        {"spec.verlOverrides": ["trainer.default_local_dir=/tmp/x"]},
        "spec.verlOverrides",
    ),
    ("override-with-newline", {"spec.verlOverrides": ["a.b=1\nrm -rf /"]}, "spec.verlOverrides[0]"),
    (
        "env-value-and-secret",
        {"spec.env": [{"name": "A", "value": "1", "secretKeyRef": {"name": "s", "key": "k"}}]},
        "spec.env",
    ),
    ("metrics-port-privileged", {"spec.metrics": {"port": 80}}, "spec.metrics.port"),
]


def base_doc() -> dict[str, Any]:
    return {
        "apiVersion": "herl.dev/v1alpha1",
        "kind": "HeRLJob",
        "metadata": {"name": "demo"},
        "spec": {"model": {"path": "/models/qwen"}, "data": {"train": "/data/train.parquet"}},
    }


def with_changes(doc: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Apply {"spec.a.b": value} edits (a value of ... deletes the key)."""
    out = copy.deepcopy(doc)
    for dotted, value in changes.items():
        node = out
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if value is ...:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    return out


@cache
def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load((REPO / "manifests" / "crds" / "herl.dev_herljobs.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.fixture
def repo() -> Path:
    return REPO
