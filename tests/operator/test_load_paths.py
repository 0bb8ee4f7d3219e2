"""What the load work relies on: the slim caches, kopf's diff base switched off, the RayJob cache
primed before any handler runs (no create attempts for existing jobs after a restart)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import kopf
import pytest
from herl_operator import builders as b
from herl_operator import rbac
from herl_operator.handlers import NoDiffBase, build_registry
from herl_operator.reconcile import RAYJOB_SPEC_FIELDS, slim_herljob, slim_rayjob
from herl_operator.status import derive_status
from op_helpers import eventually, running_operator, sample

from herl.api.validate import validate_document

pytestmark = pytest.mark.timeout(60)
NS = "ml-team"


def _job(name: str, uid: str) -> dict[str, Any]:
    doc = sample("if-qwen2.5-7b")
    doc["metadata"].update(name=name, namespace=NS, uid=uid, generation=1)
    return doc


def test_no_changing_handlers_so_the_diff_base_is_never_needed() -> None:
    registry, _ = build_registry()
    assert not registry._changing.get_all_handlers()  # on.create/update/delete/resume/field
    assert not registry._spawning.get_all_handlers()  # timers/daemons
    storage = NoDiffBase()
    body = kopf.Body({"metadata": {"name": "x"}, "spec": {"a": 1}})
    assert storage.build(body=body) is None and storage.fetch(body=body) is None


def _full_rayjob(status: dict[str, Any], suspend: bool = False) -> dict[str, Any]:
    job, _ = validate_document(_job("j", "uid-j"), "j")
    assert job is not None
    rj = b.build_rayjob(job, b.Context(namespace=NS, uid="uid-j"))
    rj["metadata"]["managedFields"] = [{"manager": "kuberay", "fieldsV1": {"f:status": {}}}]
    rj["spec"]["suspend"] = suspend
    rj["status"] = status
    return rj


@pytest.mark.parametrize(
    ("status", "suspend"),
    [
        ({}, False),
        ({}, True),
        (
            {
                "jobDeploymentStatus": "Initializing",
                "startTime": "2026-01-01T00:00:00Z",
                "rayClusterName": "c1",
            },
            False,
        ),
        (
            {
                "jobDeploymentStatus": "Running",
                "jobStatus": "RUNNING",
                "startTime": "2026-01-01T00:00:00Z",
                "rayClusterName": "c1",
                "dashboardURL": "c1-head-svc:8265",
            },
            False,
        ),
        ({"jobDeploymentStatus": "Retrying", "failed": 1}, False),
        ({"jobDeploymentStatus": "Suspended"}, True),
        (
            {
                "jobDeploymentStatus": "Failed",
                "jobStatus": "FAILED",
                "reason": "DeadlineExceeded",
                "message": "too slow",
                "startTime": "2026-01-01T00:00:00Z",
                "endTime": "2026-01-01T01:00:00Z",
            },
            False,
        ),
        (
            {
                "jobDeploymentStatus": "Complete",
                "jobStatus": "SUCCEEDED",
                "startTime": "2026-01-01T00:00:00Z",
                "endTime": "2026-01-01T01:00:00Z",
            },
            False,
        ),
    ],
)
def test_slim_rayjob_derives_the_same_status(status: dict[str, Any], suspend: bool) -> None:
    full = _full_rayjob(status, suspend)
    before = copy.deepcopy(full)
    slim = slim_rayjob(full)
    assert full == before  # the source is not modified
    assert "managedFields" not in slim["metadata"] and "rayClusterSpec" not in slim["spec"]
    assert set(slim["spec"]) <= set(RAYJOB_SPEC_FIELDS)
    assert slim["metadata"]["labels"] == full["metadata"]["labels"]
    assert slim["metadata"].get("annotations") == full["metadata"].get("annotations")
    job, _ = validate_document(_job("j", "uid-j"), "j")
    now = datetime(2026, 1, 1, 2, tzinfo=UTC)
    assert derive_status(job, slim, {}, now, generation=1) == derive_status(job, full, {}, now, generation=1)


def test_slim_herljob_drops_only_managed_fields() -> None:
    doc = _job("j", "uid-j")
    assert slim_herljob(doc) is doc  # nothing to drop: the same object
    doc["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    slim = slim_herljob(doc)
    assert "managedFields" not in slim["metadata"] and "managedFields" in doc["metadata"]
    assert {k: v for k, v in doc.items() if k != "metadata"} == {
        k: v for k, v in slim.items() if k != "metadata"
    }


async def test_restart_finds_existing_rayjobs_before_any_handler_runs(kmock: Any, api: Any) -> None:
    names = [f"job-{i}" for i in range(5)]
    async with running_operator(str(kmock.url)) as rt:
        for i, name in enumerate(names):
            await api.create(rbac.HERLJOBS, NS, _job(name, f"uid-{i}"))
        await eventually(
            lambda: all(n in {k[1] for k in rt.reconciler.written} for n in names),
            what="every job reconciled",
        )
    async with running_operator(str(kmock.url)) as rt2:
        await eventually(
            lambda: rt2.metrics.reconciles.labels(result="success")._value.get() >= len(names),
            what="every job reconciled after restart",
        )
        assert len(rt2.reconciler.rayjobs) == len(names)
        # The initial RayJob listing is cached before any HeRLJob is reconciled: no create is
        # tried (no 409, no read back) for jobs that already have their children.
        assert rt2.client.calls[("create", "rayjobs")] == 0
        assert rt2.client.calls[("create", "configmaps")] == 0
        assert rt2.client.calls[("get", "rayjobs")] == 0
