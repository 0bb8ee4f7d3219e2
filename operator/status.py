"""The pure status mapper: (HeRLJob, RayJob, previous status, now) → the HeRLJob status to write.

KubeRay's RayJob has no conditions and forgets earlier attempts on retry or suspend (it wipes
``rayClusterName``, ``reason``, ``message`` and resets ``jobStatus``); this function mirrors what it
sees into our own attempt list before it is lost, keeps progress across attempts, and derives phase +
metav1-style conditions. ``jobDeploymentStatus`` is authoritative for terminal state (kuberay#2314:
``jobStatus`` can still read RUNNING after the deployment failed).

Pure: no I/O, the clock is an argument, so every KubeRay state combination is a table-driven test.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from herl.api.model import HeRLJob
from herl.errors import find_failure

JSON = dict[str, Any]
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
PHASES = ("Pending", "Queued", "Suspended", "Provisioning", "Running", "Retrying", "Succeeded", "Failed")
CONDITION_TYPES = (
    "Ready",
    "Queued",
    "Suspended",
    "ClusterProvisioning",
    "Running",
    "Retrying",
    "Succeeded",
    "Failed",
    "CheckpointAvailable",
    "SpecChangeIgnored",
    "ChildrenSynced",
)
_PHASE_CONDITION = {
    "Queued": "Queued",
    "Suspended": "Suspended",
    "Provisioning": "ClusterProvisioning",
    "Running": "Running",
    "Retrying": "Retrying",
    "Succeeded": "Succeeded",
    "Failed": "Failed",
}
JOB_STATUSES = ("", "PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED")
DEPLOYMENT_STATUSES = (
    "",
    "New",
    "Initializing",
    "Waiting",
    "Running",
    "Suspending",
    "Suspended",
    "Retrying",
    "Complete",
    "Failed",
    "ValidationFailed",
)
FAILURE_REASONS = (
    "",
    "SubmissionFailed",
    "DeadlineExceeded",
    "PreRunningDeadlineExceeded",
    "AppFailed",
    "JobDeploymentStatusTransitionGracePeriodExceeded",
    "JobStatusCheckTimeoutExceeded",
    "ValidationFailed",
)
MAX_MESSAGE = 1024
#: Failures that clear by themselves once the user fixes the cause (they never started a RayJob).
_RECOVERABLE = frozenset({"InvalidSpec", "RayJobConflict"})


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def clean_reason(text: str | None, default: str) -> str:
    """A metav1 reason (CamelCase, no spaces) from whatever a child reported."""
    cleaned = re.sub(r"[^A-Za-z0-9_]", "", text or "")
    cleaned = cleaned.lstrip("0123456789_")
    return cleaned[:128] or default


def child_failure(st: JSON) -> tuple[str, str]:
    """(reason, message) of a RayJob status: the trainer's own classified failure when its last line
    (``herl-failure reason=…``, herl.errors) is in the Ray job message KubeRay copied, else KubeRay's."""
    found = find_failure(st.get("message"))
    if found:
        return found
    return st.get("reason") or "", st.get("message") or ""


def _msg(text: str | None) -> str:
    text = text or ""
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


@dataclass(frozen=True)
class Observation:
    """What the reconciler saw besides the RayJob (all optional)."""

    invalid: tuple[tuple[str, str], ...] = ()  # (field path, message) from validate_document
    conflict: str | None = None  # a RayJob/ConfigMap with our name exists and is not ours
    ignored_fields: tuple[str, ...] = ()  # spec fields changed after start that cannot apply now
    child_error: tuple[str, str] | None = None  # (reason, message): a child create/patch was refused
    progress: JSON | None = None  # wire-format Progress pulled from the trainer
    checkpoint: JSON | None = None  # wire-format CheckpointStatus
    extra: JSON = field(default_factory=dict)


@dataclass(frozen=True)
class PhaseView:
    phase: str
    reason: str
    message: str = ""


def map_rayjob(job: HeRLJob | None, rayjob: JSON | None) -> PhaseView:
    """Phase from the RayJob alone (the table the tests enumerate)."""
    if rayjob is None:
        return PhaseView("Pending", "Creating", "creating the RayJob")
    st = rayjob.get("status") or {}
    jds = st.get("jobDeploymentStatus") or ""
    js = st.get("jobStatus") or ""
    reason, message = child_failure(st)
    message = _msg(message)
    user_suspend = bool(job and job.spec.run_policy_.suspend)
    queued = bool(job and job.spec.queue is not None)
    suspended_spec = bool((rayjob.get("spec") or {}).get("suspend"))

    if jds == "Complete":
        if js == "SUCCEEDED":
            return PhaseView("Succeeded", "Succeeded", "the trainer finished")
        why = {"FAILED": "AppFailed", "STOPPED": "Stopped"}.get(js, "CompleteWithoutSuccess")
        if js == "FAILED" and find_failure(st.get("message")):
            why = clean_reason(reason, why)
        return PhaseView("Failed", why, message or f"Ray job ended with jobStatus {js or 'unknown'}")
    if jds == "Failed":
        return PhaseView(
            "Failed",
            clean_reason(reason, "DeploymentFailed"),
            message or "KubeRay reports the deployment failed",
        )
    if jds == "ValidationFailed":
        return PhaseView("Failed", "RayJobValidationFailed", message or "KubeRay rejected the RayJob")
    if jds == "Retrying":
        return PhaseView("Retrying", "Retrying", message or "attempt failed; KubeRay starts a new cluster")
    # KubeRay 1.4–1.7 take a RayJob *created* suspended through New → Initializing → Suspending →
    # Suspended (rayjob_controller.go): while spec.suspend is set, Initializing provisions nothing.
    if jds in ("Suspending", "Suspended") or (jds in ("", "New", "Initializing") and suspended_spec):
        if user_suspend:
            return PhaseView("Suspended", "SuspendedByUser", "spec.runPolicy.suspend is true")
        if queued:
            return PhaseView("Queued", "WaitingForAdmission", "waiting for Kueue to admit the workload")
        return PhaseView("Suspended", "Suspended", "the RayJob is suspended")
    if jds in ("", "New") and int(st.get("failed") or 0) > 0:
        # Between attempts KubeRay resets the RayJob to New (seen on KubeRay 1.6.1): still retrying,
        # not a fresh job waiting for KubeRay.
        return PhaseView("Retrying", "Retrying", message or "attempt failed; KubeRay starts a new cluster")
    if jds in ("", "New"):
        return PhaseView("Pending", "WaitingForKubeRay", "the RayJob is created; KubeRay has not started it")
    if jds in ("Initializing", "Waiting"):
        return PhaseView("Provisioning", jds, message or "creating the Ray cluster")
    if jds == "Running":
        if js in ("", "PENDING"):
            return PhaseView("Provisioning", "JobPending", "the cluster is up; the Ray job is pending")
        if js == "RUNNING":
            return PhaseView("Running", "Running", "training")
        return PhaseView("Running", "Finishing", f"Ray job reached {js}; waiting for KubeRay to complete")
    return PhaseView("Pending", "UnknownDeploymentStatus", f"unknown jobDeploymentStatus {jds!r}")


def _gpus(job: HeRLJob | None) -> int:
    return job.spec.gpu_count if job is not None else 0


def _close(
    att: JSON,
    result: str,
    now: datetime,
    reason: str | None = None,
    message: str | None = None,
    end: str | None = None,
) -> None:
    att["result"] = result
    att["endTime"] = end or iso(now)
    if reason:
        att["reason"] = reason
    if message:
        att["message"] = _msg(message)


def update_attempts(job: HeRLJob | None, rayjob: JSON | None, attempts: list[JSON], now: datetime) -> None:
    """Mirror the RayJob's current attempt into ``attempts`` (in place)."""
    if rayjob is None:
        return
    st = rayjob.get("status") or {}
    jds = st.get("jobDeploymentStatus") or ""
    js = st.get("jobStatus") or ""
    cluster, start = st.get("rayClusterName") or None, st.get("startTime") or None
    reason, message = (x or None for x in child_failure(st))
    open_ = attempts[-1] if attempts and attempts[-1].get("result") == "Running" else None
    # A folded entry (see fold_attempts) stands for attempts 0..index; counted as failed ones.
    failed_seen = sum(
        int(a.get("index", 0)) + 1 if a.get("reason") == "AttemptsFolded" else 1
        for a in attempts
        if a.get("result") in ("Retried", "Failed")
    )
    name = (rayjob.get("metadata") or {}).get("name")

    if jds == "Initializing" and (rayjob.get("spec") or {}).get("suspend"):
        # Created suspended, KubeRay passes Initializing on its way to Suspended: no attempt. Suspended
        # while initializing: the phase already says Suspended, so the attempt closes now too.
        if open_ is not None:
            _close(open_, "Suspended", now)
        return
    if jds in ("Initializing", "Running", "Waiting"):
        new = open_ is None or bool(
            (start and open_.get("startTime") and start != open_.get("startTime"))
            or (cluster and open_.get("rayClusterName") and cluster != open_.get("rayClusterName"))
        )
        if new:
            if open_ is not None:
                retried = int(st.get("failed") or 0) > failed_seen
                _close(open_, "Retried" if retried else "Suspended", now)
            att: JSON = {
                "index": int(attempts[-1].get("index", len(attempts) - 1)) + 1 if attempts else 0,
                "rayJobName": name,
                "startTime": start or iso(now),
                "result": "Running",
                "gpuSeconds": 0.0,
            }
            if cluster:
                att["rayClusterName"] = cluster
            attempts.append(att)
        else:
            assert open_ is not None
            if cluster:
                open_["rayClusterName"] = cluster
        cur = attempts[-1]
        if reason:
            cur["reason"] = clean_reason(reason, "Unknown")
        if message:
            cur["message"] = _msg(message)
        return
    if open_ is None:
        if jds in ("Complete", "Failed") and not attempts:
            # Finished before we ever saw it running (operator was down): record one attempt.
            attempts.append(
                {
                    "index": 0,
                    "rayJobName": name,
                    "startTime": start or iso(now),
                    "result": "Running",
                    "gpuSeconds": 0.0,
                }
            )
            open_ = attempts[-1]
        else:
            return
    if jds == "Retrying":
        _close(open_, "Retried", now, open_.get("reason") or clean_reason(reason, "AppFailed"), message)
    elif jds in ("Suspending", "Suspended"):
        _close(open_, "Suspended", now)
    elif jds == "Complete":
        ok = js == "SUCCEEDED"
        _close(
            open_,
            "Succeeded" if ok else "Failed",
            now,
            None if ok else map_rayjob(job, rayjob).reason,
            message,
            end=st.get("endTime"),
        )
    elif jds in ("Failed", "ValidationFailed"):
        _close(open_, "Failed", now, clean_reason(reason, "DeploymentFailed"), message, end=st.get("endTime"))


#: status.attempts keeps at most this many entries (an object's size is bounded by etcd's 1.5 MiB).
MAX_ATTEMPTS = 32


def fold_attempts(attempts: list[JSON], keep: int = MAX_ATTEMPTS) -> None:
    """Bound ``attempts`` in place: the oldest closed ones fold into one entry whose duration is the
    sum of theirs, so GPU-seconds and the total budget (both recomputed from timestamps) stay exact."""
    if len(attempts) <= keep:
        return
    n = len(attempts) - keep + 1
    folded = attempts[:n]
    seconds = 0.0
    for att in folded:
        start, end = parse_time(att.get("startTime")), parse_time(att.get("endTime"))
        if start and end:
            seconds += max(0.0, (end - start).total_seconds())
    first = folded[0]
    start = parse_time(first.get("startTime")) or datetime.now(UTC)
    summary: JSON = {
        "index": folded[-1].get("index", n - 1),
        "rayJobName": folded[-1].get("rayJobName"),
        "startTime": iso(start),
        "endTime": iso(start + timedelta(seconds=round(seconds))),
        "result": folded[-1].get("result") or "Retried",
        "reason": "AttemptsFolded",
        "message": f"attempts {first.get('index', 0)}–{folded[-1].get('index', n - 1)} folded into one "
        f"entry (status keeps {keep}); its duration is the sum of theirs",
        "gpuSeconds": 0.0,
    }
    attempts[:n] = [{k: v for k, v in summary.items() if v is not None}]


def _account(job: HeRLJob | None, attempts: list[JSON], now: datetime) -> float:
    """Update gpuSeconds of every attempt; return wall seconds spent over all attempts."""
    gpus, spent = _gpus(job), 0.0
    for att in attempts:
        start = parse_time(att.get("startTime"))
        end = parse_time(att.get("endTime")) if att.get("result") != "Running" else now
        if start is None or end is None:
            continue
        seconds = max(0.0, (end - start).total_seconds())
        spent += seconds
        att["gpuSeconds"] = round(seconds * gpus, 3)  # recomputed from timestamps: closes are exact
    return spent


def _conditions(view: PhaseView, status: JSON, obs: Observation) -> list[tuple[str, str, str, str]]:
    out: list[tuple[str, str, str, str]] = []
    active = _PHASE_CONDITION.get(view.phase)
    ready = view.phase == "Running"
    out.append(
        ("Ready", "True" if ready else "False", view.reason if not ready else "Training", view.message)
    )
    for ctype in ("Queued", "Suspended", "ClusterProvisioning", "Running", "Retrying", "Succeeded", "Failed"):
        on = ctype == active
        out.append(
            (
                ctype,
                "True" if on else "False",
                view.reason if on else f"Phase{view.phase}",
                view.message if on else "",
            )
        )
    ck = status.get("lastCheckpoint")
    if ck:
        out.append(
            ("CheckpointAvailable", "True", "CheckpointSaved", f"step {ck.get('step')} at {ck.get('path')}")
        )
    else:
        out.append(("CheckpointAvailable", "False", "NoCheckpoint", "no checkpoint reported yet"))
    if obs.ignored_fields:
        out.append(
            (
                "SpecChangeIgnored",
                "True",
                "SpecChangeIgnored",
                _msg(
                    "changes to "
                    + ", ".join(obs.ignored_fields)
                    + " apply only to a new HeRLJob (the running trainer keeps its spec)"
                ),
            )
        )
    else:
        out.append(("SpecChangeIgnored", "False", "NoIgnoredChanges", ""))
    if obs.child_error:
        out.append(("ChildrenSynced", "False", obs.child_error[0], _msg(obs.child_error[1])))
    else:
        out.append(("ChildrenSynced", "True", "ChildrenInSync", ""))
    return out


def merge_conditions(
    previous: list[JSON] | None, new: list[tuple[str, str, str, str]], now: datetime, generation: int | None
) -> list[JSON]:
    """metav1 semantics: lastTransitionTime changes only when status flips."""
    prev = {c.get("type"): c for c in previous or []}
    out = []
    for ctype, status, reason, message in new:
        old = prev.get(ctype)
        ltt = (
            old["lastTransitionTime"]
            if old and old.get("status") == status and old.get("lastTransitionTime")
            else iso(now)
        )
        cond = {
            "type": ctype,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": ltt,
        }
        if generation is not None:
            cond["observedGeneration"] = generation
        out.append(cond)
    return out


def derive_status(
    job: HeRLJob | None,
    rayjob: JSON | None,
    previous: JSON | None,
    now: datetime,
    *,
    generation: int | None = None,
    obs: Observation | None = None,
) -> JSON:
    """The complete status to write (wire format, only fields the CRD's status schema has)."""
    obs = obs or Observation()
    prev = copy.deepcopy(previous or {})
    attempts: list[JSON] = prev.get("attempts") or []
    prev_failed = next(
        (c for c in prev.get("conditions") or [] if c.get("type") == "Failed" and c.get("status") == "True"),
        None,
    )

    if obs.invalid:
        detail = "; ".join(f"{p or '<document>'}: {m}" for p, m in obs.invalid)
        view = PhaseView("Failed", "InvalidSpec", _msg(f"invalid spec: {detail}"))
    elif obs.conflict:
        view = PhaseView("Failed", "RayJobConflict", _msg(obs.conflict))
    elif (
        prev.get("phase") in TERMINAL_PHASES
        and (prev_failed or {}).get("reason") not in _RECOVERABLE
        and (rayjob is None or (prev_failed or {}).get("reason") == "BudgetExceeded")
    ):
        # Terminal stays terminal: the RayJob may be gone (budget stop, manual delete).
        reason = (prev_failed or {}).get("reason") or prev["phase"]
        view = PhaseView(prev["phase"], reason, (prev_failed or {}).get("message", ""))
    elif obs.child_error and rayjob is None:
        view = PhaseView("Pending", obs.child_error[0], _msg(obs.child_error[1]))
    else:
        update_attempts(job, rayjob, attempts, now)
        view = map_rayjob(job, rayjob)

    fold_attempts(attempts)
    spent = _account(job, attempts, now)
    budget = job.spec.run_policy_.total_budget_seconds if job else None
    if budget and spent >= budget and view.phase not in TERMINAL_PHASES:
        view = PhaseView(
            "Failed",
            "BudgetExceeded",
            f"spent {int(spent)} s over all attempts; totalBudgetSeconds is {budget}",
        )
        if attempts and attempts[-1].get("result") == "Running":
            _close(attempts[-1], "Failed", now, "BudgetExceeded")

    status: JSON = {"phase": view.phase, "message": view.message or None}
    if generation is not None:
        status["observedGeneration"] = generation
    if rayjob is not None:
        status["rayJobName"] = (rayjob.get("metadata") or {}).get("name")
        url = (rayjob.get("status") or {}).get("dashboardURL")
        if url:
            status["dashboardURL"] = url
        elif prev.get("dashboardURL"):
            status["dashboardURL"] = prev["dashboardURL"]
    elif prev.get("rayJobName"):
        status["rayJobName"] = prev["rayJobName"]
    if attempts:
        status["attempts"] = attempts
    status["attemptCount"] = int(attempts[-1].get("index", len(attempts) - 1)) + 1 if attempts else 0
    first = attempts[0].get("startTime") if attempts else None
    if prev.get("startTime") or first:
        status["startTime"] = prev.get("startTime") or first
    if view.phase in TERMINAL_PHASES:
        end = attempts[-1].get("endTime") if attempts else None
        status["completionTime"] = prev.get("completionTime") or end or iso(now)
    status["gpuHours"] = round(sum(float(a.get("gpuSeconds") or 0) for a in attempts) / 3600.0, 6)
    progress = obs.progress or prev.get("progress")
    if progress:
        status["progress"] = progress
    ck = obs.checkpoint or prev.get("lastCheckpoint")
    if ck:
        status["lastCheckpoint"] = ck
    status["conditions"] = merge_conditions(
        prev.get("conditions"), _conditions(view, status, obs), now, generation
    )
    return {k: v for k, v in status.items() if v is not None}


#: Status fields that move with the clock alone; an event-driven reconcile does not write for them
#: (the periodic resync does), so our own status patch never triggers an endless write loop.
VOLATILE = ("gpuHours",)


def semantic(status: JSON | None) -> JSON:
    """``status`` without clock-driven fields, for "did anything meaningful change?"."""
    s = copy.deepcopy(status or {})
    for key in VOLATILE:
        s.pop(key, None)
    for att in s.get("attempts") or []:
        att.pop("gpuSeconds", None)
    for c in s.get("conditions") or []:
        c.pop("lastTransitionTime", None)
    return s
