from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SAMPLES = sorted((REPO / "manifests" / "samples").glob("*.yaml"))


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
