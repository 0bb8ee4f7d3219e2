"""Queued HeRLJobs under the real Kueue (v0.17.0, built from its Go module): admission when quota
frees, priority preemption and re-admission, a user suspend that Kueue does not undo (no fight),
and a queue change of a running job refused with a clear condition."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from e2e_support import JSON, Kube, OperatorProcess, condition, herljob, kueue_queue, wait_for
from herl_operator import builders as b

GPUS_IN_QUEUE = 2  # each test job asks for 2 workers × 1 GPU: one job fills the queue


@pytest.fixture()
def queue(kube: Kube, namespace: str) -> Iterator[str]:
    """A ClusterQueue of this test alone (2 GPUs, preemption of lower priorities) and a LocalQueue."""
    quota = {"cpu": "500", "memory": "4000Gi", "nvidia.com/gpu": str(GPUS_IN_QUEUE)}
    cq = kueue_queue(kube, namespace, "h100", quota)
    yield "team"
    kube.run("delete", "clusterqueue", cq, "--wait=false", check=False)


def _phase_is(kube: Kube, namespace: str, name: str, phase: str) -> JSON | None:
    st = kube.status(namespace, name)
    return st if st.get("phase") == phase else None


def _job(name: str, namespace: str, queue: str, priority: str | None = None) -> JSON:
    q = {"name": queue, **({"priorityClass": priority} if priority else {})}
    return herljob(name, namespace, runPolicy={"backoffLimit": 5}, queue=q)


def test_a_queued_job_is_admitted_when_quota_frees(
    kube: Kube, operator: OperatorProcess, namespace: str, queue: str
) -> None:
    kube.apply(_job("first", namespace, queue))
    wait_for("the first job admitted", lambda: _phase_is(kube, namespace, "first", "Provisioning"), 60)
    kube.apply(_job("second", namespace, queue))
    st = wait_for("the second job Queued", lambda: _phase_is(kube, namespace, "second", "Queued"), 60)
    assert condition({"status": st}, "Queued")["reason"] == "WaitingForAdmission"
    assert st["attemptCount"] == 0  # created suspended: no phantom attempt
    assert (kube.get("rayjob", "second", namespace=namespace) or {})["spec"]["suspend"] is True
    kube.delete("herljob", "first", namespace)
    st = wait_for("the second job admitted", lambda: _phase_is(kube, namespace, "second", "Provisioning"), 90)
    assert st["attemptCount"] == 1


def test_higher_priority_preempts_and_the_lower_is_readmitted(
    kube: Kube, operator: OperatorProcess, namespace: str, queue: str
) -> None:
    kube.apply(_job("low", namespace, queue, "low"))
    wait_for("the low job admitted", lambda: _phase_is(kube, namespace, "low", "Provisioning"), 60)
    kube.apply(_job("high", namespace, queue, "high"))
    wait_for("the high job admitted", lambda: _phase_is(kube, namespace, "high", "Provisioning"), 90)
    st = wait_for(
        "the low job preempted back to Queued", lambda: _phase_is(kube, namespace, "low", "Queued"), 60
    )
    assert st["attempts"][0]["result"] == "Suspended"  # preempted, not failed: no retry counted
    kube.delete("herljob", "high", namespace)
    st = wait_for(
        "the low job re-admitted with a new attempt",
        lambda: (
            (s := _phase_is(kube, namespace, "low", "Provisioning")) and s.get("attemptCount", 0) >= 2 and s
        ),
        90,
    )
    assert st["attempts"][-1].get("rayClusterName") != st["attempts"][0].get("rayClusterName")


def test_user_suspend_under_kueue_does_not_fight(
    kube: Kube, operator: OperatorProcess, namespace: str, queue: str
) -> None:
    """Kueue unsuspends an admitted RayJob that anyone else suspends; the operator therefore suspends
    through the Workload (spec.active=false). Before the fix this made 13 attempts in 20 s."""
    kube.apply(_job("pause-me", namespace, queue))
    wait_for("admitted", lambda: _phase_is(kube, namespace, "pause-me", "Provisioning"), 60)
    kube.merge_patch("herljob", "pause-me", namespace, {"spec": {"runPolicy": {"suspend": True}}})
    wait_for("Suspended", lambda: _phase_is(kube, namespace, "pause-me", "Suspended"), 60)
    rj = kube.get("rayjob", "pause-me", namespace=namespace)
    assert rj["metadata"]["annotations"][b.ANNOTATION_WORKLOAD_DEACTIVATED] == "true"
    workloads = kube.items("workloads", namespace=namespace)
    assert [w["spec"]["active"] for w in workloads] == [False]
    time.sleep(10)  # five resync passes of the operator, and Kueue's own reconciles
    st = kube.status(namespace, "pause-me")
    assert st["phase"] == "Suspended" and st["attemptCount"] == 1, st
    assert not kube.items("rayclusters", namespace=namespace)
    created = [e for e in kube.events(namespace, "pause-me") if e["reason"] == "CreatedRayCluster"]
    assert len(created) == 1, created  # one cluster ever: no create/delete loop

    kube.merge_patch("herljob", "pause-me", namespace, {"spec": {"runPolicy": {"suspend": False}}})
    st = wait_for(
        "re-admitted after the resume",
        lambda: (
            (s := _phase_is(kube, namespace, "pause-me", "Provisioning")) and s.get("attemptCount") == 2 and s
        ),
        90,
    )
    assert [w["spec"]["active"] for w in kube.items("workloads", namespace=namespace)] == [True]


def test_changing_the_queue_of_a_running_job_is_refused_clearly(
    kube: Kube, operator: OperatorProcess, namespace: str, queue: str
) -> None:
    kube.apply(_job("moving", namespace, queue))
    wait_for("admitted", lambda: _phase_is(kube, namespace, "moving", "Provisioning"), 60)
    kube.merge_patch("herljob", "moving", namespace, {"spec": {"queue": {"name": "elsewhere"}}})

    def refused() -> JSON | None:
        cur = kube.get("herljob", "moving", namespace=namespace) or {}
        c = condition(cur, "ChildrenSynced")
        gen = cur.get("metadata", {}).get("generation")
        ok = c.get("reason") == "RayJobPatchRefused" and cur["status"].get("observedGeneration") == gen
        return cur if ok else None

    cur = wait_for("RayJobPatchRefused naming Kueue's reason", refused, 60)
    assert "queue-name" in condition(cur, "ChildrenSynced")["message"]
    assert cur["status"]["phase"] in ("Provisioning", "Running", "Retrying")
    rj = kube.get("rayjob", "moving", namespace=namespace)
    assert rj["metadata"]["labels"][b.KUEUE_QUEUE] == queue
