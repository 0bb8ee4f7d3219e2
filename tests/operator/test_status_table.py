"""Table-driven: every KubeRay jobStatus × jobDeploymentStatus × reason maps to a defined phase and
conditions; retry and suspend/resume sequences keep attempts and progress."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from herl_operator import status as s
from op_helpers import SAMPLES

from herl.api.model import HeRLJobStatus
from herl.api.validate import validate_document

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _job(queue: bool = True, suspend: bool = False, budget: int | None = None) -> Any:
    doc = yaml.safe_load((SAMPLES / "if-qwen2.5-7b.yaml").read_text())
    if not queue:
        del doc["spec"]["queue"]
    doc["spec"]["runPolicy"]["suspend"] = suspend
    if budget is None:
        doc["spec"]["runPolicy"].pop("totalBudgetSeconds", None)
    else:
        doc["spec"]["runPolicy"]["totalBudgetSeconds"] = budget
    job, findings = validate_document(doc)
    assert job is not None, findings
    return job


def _rj(jds: str, js: str = "", reason: str = "", suspend: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "rj"},
        "spec": {"suspend": suspend},
        "status": {
            "jobDeploymentStatus": jds,
            "jobStatus": js,
            "reason": reason,
            "startTime": "2026-03-01T11:00:00Z",
            "rayClusterName": "c1",
            **extra,
        },
    }


EXPECTED_TERMINAL = {"Complete": None, "Failed": "Failed", "ValidationFailed": "Failed"}


@pytest.mark.parametrize(
    ("jds", "js", "reason"), list(itertools.product(s.DEPLOYMENT_STATUSES, s.JOB_STATUSES, s.FAILURE_REASONS))
)
@pytest.mark.parametrize("queue", [True, False])
def test_every_kuberay_combination_maps_to_a_defined_phase(
    jds: str, js: str, reason: str, queue: bool
) -> None:
    job = _job(queue=queue)
    st = s.derive_status(
        job, _rj(jds, js, reason, suspend=queue and jds in ("", "New")), {}, NOW, generation=3
    )
    HeRLJobStatus.model_validate(st)  # fits the CRD's status schema (nothing pruned → no write loops)
    assert st["phase"] in s.PHASES
    assert st["observedGeneration"] == 3
    conds = {c["type"]: c for c in st["conditions"]}
    assert set(conds) == set(s.CONDITION_TYPES)
    assert all(c["observedGeneration"] == 3 and c["reason"] for c in conds.values())
    true_phase_conds = [
        t
        for t in ("Queued", "Suspended", "ClusterProvisioning", "Running", "Retrying", "Succeeded", "Failed")
        if conds[t]["status"] == "True"
    ]
    assert len(true_phase_conds) <= 1
    # jobDeploymentStatus is authoritative for terminal state (kuberay#2314).
    if jds in ("Failed", "ValidationFailed"):
        assert st["phase"] == "Failed"
    if jds == "Complete":
        assert st["phase"] == ("Succeeded" if js == "SUCCEEDED" else "Failed")
    if jds not in ("Complete", "Failed", "ValidationFailed"):
        assert st["phase"] not in s.TERMINAL_PHASES
    if jds == "Failed" and reason:
        assert conds["Failed"]["reason"] == reason
    if jds == "Retrying":
        assert st["phase"] == "Retrying"
    if jds in ("Suspended", "Suspending"):
        assert st["phase"] == ("Queued" if queue else "Suspended")
    if st["phase"] == "Running":
        assert conds["Ready"]["status"] == "True"


def test_user_suspend_wins_over_queue_and_no_rayjob_is_pending() -> None:
    st = s.derive_status(_job(suspend=True), _rj("Suspended"), {}, NOW)
    assert st["phase"] == "Suspended" and s._cond if False else True
    assert next(c for c in st["conditions"] if c["type"] == "Suspended")["reason"] == "SuspendedByUser"
    assert s.derive_status(_job(), None, {}, NOW)["phase"] == "Pending"


def _step(
    job: Any, rj: dict[str, Any] | None, prev: dict[str, Any], minutes: int, **kw: Any
) -> dict[str, Any]:
    return s.derive_status(job, rj, prev, NOW + timedelta(minutes=minutes), **kw)


def test_retry_then_suspend_resume_keeps_attempts_progress_and_transition_times() -> None:
    job = _job(queue=False)
    prog = {"step": 10, "totalSteps": 100, "rewardMean": 0.5}
    st = _step(job, _rj("Initializing", startTime="2026-03-01T12:00:00Z", rayClusterName="c1"), {}, 0)
    st = _step(
        job,
        _rj("Running", "RUNNING", startTime="2026-03-01T12:00:00Z", rayClusterName="c1"),
        st,
        1,
        obs=s.Observation(progress=prog),
    )
    running_since = next(c for c in st["conditions"] if c["type"] == "Running")["lastTransitionTime"]
    st = _step(job, _rj("Running", "RUNNING", startTime="2026-03-01T12:00:00Z", rayClusterName="c1"), st, 5)
    assert next(c for c in st["conditions"] if c["type"] == "Running")["lastTransitionTime"] == running_since
    # KubeRay wipes cluster name, reason, message on Retrying.
    st = _step(job, _rj("Retrying", "", rayClusterName="", startTime="", failed=1), st, 10)
    assert st["phase"] == "Retrying" and st["attempts"][0]["result"] == "Retried"
    st = _step(
        job, _rj("Initializing", startTime="2026-03-01T12:11:00Z", rayClusterName="c2", failed=1), st, 11
    )
    st = _step(
        job,
        _rj("Running", "RUNNING", startTime="2026-03-01T12:11:00Z", rayClusterName="c2", failed=1),
        st,
        12,
    )
    st = _step(job, _rj("Suspended", "", rayClusterName="", startTime="", failed=1, suspend=True), st, 20)
    assert st["phase"] == "Suspended"
    st = _step(
        job, _rj("Initializing", startTime="2026-03-01T12:30:00Z", rayClusterName="c3", failed=1), st, 30
    )
    st = _step(
        job,
        _rj(
            "Complete",
            "SUCCEEDED",
            startTime="2026-03-01T12:30:00Z",
            rayClusterName="c3",
            endTime="2026-03-01T13:00:00Z",
            failed=1,
        ),
        st,
        61,
    )
    assert st["phase"] == "Succeeded"
    assert [a["result"] for a in st["attempts"]] == ["Retried", "Suspended", "Succeeded"]
    assert st["attemptCount"] == 3 and st["progress"] == prog
    gpus = job.spec.resources_.workers * job.spec.resources_.gpus_per_worker
    # 10 + 9 + 30 minutes of attempts × GPUs
    assert st["gpuHours"] == pytest.approx(gpus * (10 + 9 + 30) / 60, rel=1e-3)
    HeRLJobStatus.model_validate(st)
    # Terminal and stable: a later pass changes nothing meaningful.
    again = _step(
        job,
        _rj(
            "Complete",
            "SUCCEEDED",
            startTime="2026-03-01T12:30:00Z",
            rayClusterName="c3",
            endTime="2026-03-01T13:00:00Z",
            failed=1,
        ),
        st,
        90,
    )
    assert s.semantic(again) == s.semantic(st) and again["gpuHours"] == st["gpuHours"]


def test_budget_exceeded_is_terminal_and_sticky() -> None:
    job = _job(queue=False, budget=600)
    st = _step(job, _rj("Running", "RUNNING", startTime="2026-03-01T12:00:00Z"), {}, 5)
    assert st["phase"] == "Running"
    st = _step(job, _rj("Running", "RUNNING", startTime="2026-03-01T12:00:00Z"), st, 11)
    failed = next(c for c in st["conditions"] if c["type"] == "Failed")
    assert st["phase"] == "Failed" and failed["reason"] == "BudgetExceeded"
    assert st["attempts"][-1]["result"] == "Failed"
    st2 = _step(job, None, st, 20)  # the operator deleted the RayJob
    assert st2["phase"] == "Failed" and s.semantic(st2) == s.semantic(st)


def test_invalid_spec_and_recovery() -> None:
    st = s.derive_status(
        None, None, {}, NOW, obs=s.Observation(invalid=(("spec.resources.workers", "too low"),))
    )
    failed = next(c for c in st["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "InvalidSpec" and "spec.resources.workers" in failed["message"]
    fixed = s.derive_status(_job(), None, st, NOW)
    assert fixed["phase"] == "Pending"


def test_missed_events_operator_down_during_whole_attempt() -> None:
    st = s.derive_status(
        _job(), _rj("Complete", "FAILED", message="boom", endTime="2026-03-01T11:30:00Z"), {}, NOW
    )
    assert st["phase"] == "Failed" and st["attempts"][0]["result"] == "Failed"
    assert next(c for c in st["conditions"] if c["type"] == "Failed")["reason"] == "AppFailed"


def test_hostile_reasons_and_long_messages_are_sanitised() -> None:
    st = s.derive_status(
        _job(), _rj("Failed", "RUNNING", reason="bad reason; $(x)", message="m" * 50000), {}, NOW
    )
    HeRLJobStatus.model_validate(st)
    failed = next(c for c in st["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "badreasonx" and len(failed["message"]) <= s.MAX_MESSAGE


@pytest.mark.parametrize("queue", [True, False])
def test_created_suspended_passes_initializing_without_provisioning_or_attempt(queue: bool) -> None:
    """KubeRay 1.4–1.7: a RayJob created with suspend=true goes New → Initializing → Suspending →
    Suspended. No Provisioning flap and no phantom attempt on the way."""
    job = _job(queue=queue, suspend=not queue)
    prev: dict[str, Any] = {}
    phases = []
    for minute, jds in enumerate(("New", "Initializing", "Suspending", "Suspended")):
        prev = _step(job, _rj(jds, suspend=True, rayClusterName=""), prev, minute)
        phases.append(prev["phase"])
    want = "Queued" if queue else "Suspended"
    assert phases == [want] * 4
    assert prev["attemptCount"] == 0 and "attempts" not in prev
    # Unsuspended (Kueue admits, or the user resumes): Initializing now provisions; one attempt opens.
    prev = _step(_job(queue=queue), _rj("Initializing", suspend=False), prev, 5)
    assert prev["phase"] == "Provisioning" and prev["attemptCount"] == 1


def test_attempts_are_bounded_and_gpu_hours_and_budget_stay_exact() -> None:
    job = _job(queue=False)
    attempts = [
        {
            "index": i,
            "rayJobName": "rj",
            "result": "Retried",
            "startTime": s.iso(NOW + timedelta(hours=i)),
            "endTime": s.iso(NOW + timedelta(hours=i, minutes=30)),
            "gpuSeconds": 0.0,
        }
        for i in range(s.MAX_ATTEMPTS + 8)
    ]
    prev = {"phase": "Retrying", "attempts": attempts}
    st = s.derive_status(job, _rj("Retrying", suspend=False), prev, NOW + timedelta(days=3))
    assert len(st["attempts"]) == s.MAX_ATTEMPTS
    assert st["attemptCount"] == s.MAX_ATTEMPTS + 8
    assert st["attempts"][0]["reason"] == "AttemptsFolded"
    # 40 half-hour attempts on 4 GPUs = 80 GPU-hours, folded or not.
    assert st["gpuHours"] == pytest.approx((s.MAX_ATTEMPTS + 8) * 0.5 * 4)
    HeRLJobStatus.model_validate(st)
    # A new attempt continues the numbering after the fold.
    st2 = s.derive_status(
        job,
        _rj("Running", "RUNNING", startTime=s.iso(NOW + timedelta(days=4)), rayClusterName="c9"),
        st,
        NOW + timedelta(days=4),
    )
    assert st2["attempts"][-1]["index"] == s.MAX_ATTEMPTS + 8
    assert st2["attemptCount"] == s.MAX_ATTEMPTS + 9


def test_refused_child_create_gives_pending_with_condition() -> None:
    obs = s.Observation(child_error=("RayJobCreateRefused", "403 Forbidden: no"))
    st = s.derive_status(_job(queue=False), None, {}, NOW, generation=3, obs=obs)
    assert st["phase"] == "Pending"
    cond = next(c for c in st["conditions"] if c["type"] == "ChildrenSynced")
    assert (cond["status"], cond["reason"], cond["observedGeneration"]) == ("False", "RayJobCreateRefused", 3)
    ok = s.derive_status(_job(queue=False), _rj("Running", "RUNNING"), st, NOW)
    assert next(c for c in ok["conditions"] if c["type"] == "ChildrenSynced")["status"] == "True"


def test_infinite_progress_never_reaches_status() -> None:
    from herl_operator.progress import parse_metrics

    text = (
        "# TYPE herl_reward_score_mean gauge\n"
        'herl_reward_score_mean{herl_job="j",namespace="n"} +Inf\n'
        "# TYPE herl_training_step gauge\n"
        'herl_training_step{herl_job="j",namespace="n"} Inf\n'
        "# TYPE herl_training_total_steps gauge\n"
        'herl_training_total_steps{herl_job="j",namespace="n"} 100\n'
    )
    progress, _ = parse_metrics(text, "j", "n")
    assert progress == {"totalSteps": 100}


def test_new_between_attempts_stays_retrying() -> None:
    """KubeRay 1.6.1 (real cluster): Retrying → New → Initializing for the next attempt. New with
    failed > 0 is still Retrying, not a fresh Pending job."""
    job = _job(queue=False)
    prev = _step(job, _rj("Running", "RUNNING"), {}, 0)
    prev = _step(job, _rj("Retrying", failed=1, reason="AppFailed"), prev, 1)
    assert prev["phase"] == "Retrying"
    between = _rj("New", failed=1, rayClusterName="", startTime="")
    prev = _step(job, between, prev, 2)
    assert prev["phase"] == "Retrying" and prev["attemptCount"] == 1
    assert s.derive_status(job, _rj("New"), {}, NOW)["phase"] == "Pending"


def test_suspended_while_initializing_closes_the_attempt_with_the_phase() -> None:
    """Seen on the real cluster: a user suspend while the cluster initializes showed phase Suspended
    with the attempt still Running until KubeRay reached Suspending."""
    job = _job(queue=False, suspend=True)
    prev = _step(_job(queue=False), _rj("Initializing"), {}, 0)
    assert prev["attempts"][-1]["result"] == "Running"
    st = _step(job, _rj("Initializing", suspend=True), prev, 1)
    assert st["phase"] == "Suspended" and st["attempts"][-1]["result"] == "Suspended"
    st = _step(job, _rj("Suspended", suspend=True, rayClusterName=""), st, 2)
    assert st["attemptCount"] == 1 and st["attempts"][-1]["result"] == "Suspended"
