"""``herl status`` text: one line per HeRLJob, or a detailed view of one, from the HeRLJob's status alone.

Pure (objects in, text out), so every field is tested without a cluster. The status is written by the
operator (:mod:`herl_operator.status`): phase and conditions, attempts, GPU-hours, ``progress`` pulled
from the trainer's /metrics, and the last checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

JSON = Mapping[str, Any]


def _age(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return "-"
    try:
        t = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return "-"
    s = max(0, int((now - t).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def _num(value: Any, fmt: str = "{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def step_text(progress: JSON | None) -> str:
    p = progress or {}
    if "step" not in p:
        return "-"
    total = p.get("totalSteps")
    return f"{p['step']}/{total}" if total else str(p["step"])


COLUMNS = ("NAME", "PHASE", "STEP", "REWARD", "HINDSIGHT", "ATTEMPTS", "GPU-H", "CHECKPOINT", "AGE")


def row(job: JSON, now: datetime) -> list[str]:
    st = job.get("status") or {}
    p = st.get("progress") or {}
    ck = st.get("lastCheckpoint") or {}
    return [
        job["metadata"]["name"],
        st.get("phase") or "Pending",
        step_text(p),
        _num(p.get("rewardMean")),
        _num(p.get("hindsightSuccessRate"), "{:.2f}"),
        str(st.get("attemptCount", 0)),
        _num(st.get("gpuHours"), "{:.2f}"),
        f"step {ck['step']}" if "step" in ck else "-",
        _age(job["metadata"].get("creationTimestamp"), now),
    ]


def table(jobs: Sequence[JSON], *, with_namespace: bool, now: datetime | None = None) -> str:
    """kubectl-style columns, one line per job."""
    now = now or datetime.now(UTC)
    head = (["NAMESPACE"] if with_namespace else []) + list(COLUMNS)
    rows = [([j["metadata"].get("namespace", "")] if with_namespace else []) + row(j, now) for j in jobs]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join(
        "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [head, *rows]
    )


def detail(job: JSON, now: datetime | None = None) -> str:
    """Everything ``herl status NAME`` shows: phase and message, progress, attempts, checkpoint, conditions."""
    now = now or datetime.now(UTC)
    md, st = job["metadata"], job.get("status") or {}
    p = st.get("progress") or {}
    lines = [
        f"HeRLJob {md.get('namespace', '')}/{md['name']}",
        f"  phase:       {st.get('phase') or 'Pending'}"
        + (f" — {st['message']}" if st.get("message") else ""),
        f"  step:        {step_text(p)}"
        + (f" (epoch {p['epoch']})" if p.get("epoch") is not None else "")
        + (f", updated {_age(p.get('updatedAt'), now)} ago" if p.get("updatedAt") else ""),
        f"  reward:      mean {_num(p.get('rewardMean'))}, all constraints met {_num(p.get('allMetRate'), '{:.2f}')}",
        f"  hindsight:   success rate {_num(p.get('hindsightSuccessRate'), '{:.2f}')}",
        f"  GPU-hours:   {_num(st.get('gpuHours'), '{:.2f}')} over {st.get('attemptCount', 0)} attempt(s)",
    ]
    ck = st.get("lastCheckpoint")
    lines.append(
        f"  checkpoint:  step {ck['step']} at {ck.get('path', '?')}"
        if ck
        else "  checkpoint:  none reported yet"
    )
    if st.get("rayJobName"):
        lines.append(f"  RayJob:      {st['rayJobName']}")
    if st.get("dashboardURL"):
        lines.append(f"  dashboard:   {st['dashboardURL']}")
    attempts = st.get("attempts") or []
    if attempts:
        lines.append("  attempts:")
        for a in attempts:
            span = f"{a.get('startTime', '?')} → {a.get('endTime') or 'now'}"
            why = f" {a['reason']}" if a.get("reason") else ""
            msg = f": {a['message']}" if a.get("message") else ""
            lines.append(
                f"    #{a.get('index', '?')} {a.get('result', '?')}{why} ({span}, "
                f"{float(a.get('gpuSeconds') or 0) / 3600:.2f} GPU-h, cluster {a.get('rayClusterName') or '-'}){msg}"
            )
    conds = st.get("conditions") or []
    if conds:
        lines.append("  conditions:")
        for c in conds:
            msg = f": {c['message']}" if c.get("message") else ""
            lines.append(f"    {c['type']:<20}{c['status']:<6}{c.get('reason', '')}{msg}")
    return "\n".join(lines)
