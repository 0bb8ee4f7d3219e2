"""The thin, idempotent, level-based reconciler.

Each pass reads the cached HeRLJob and RayJob (both kept current by kopf's watch events), calls the
pure builders and the status mapper, and applies the difference. The same function runs on every
watch event of either object and on a periodic resync, so a missed event, an operator restart or a
failed API call heals on the next pass. Creates are idempotent: a 409 means "exists", the object is
read back and adopted only if it is ours (owner uid / ``herl.dev/job`` label); otherwise the HeRLJob
fails with RayJobConflict. There is exactly one RayJob name per HeRLJob, so there is never a second
RayJob for an attempt.

Writes are minimal: status is patched only when something meaningful changed (event-driven passes
ignore clock-only fields such as GPU-hours, which the periodic pass refreshes), so our own status
write does not start an endless event → write loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from herl_operator import builders as b
from herl_operator import rbac
from herl_operator.kube import ApiError, KubeClient
from herl_operator.metrics import OperatorMetrics
from herl_operator.progress import ProgressPuller
from herl_operator.status import TERMINAL_PHASES, Observation, derive_status, iso, semantic

from herl.api.model import HeRLJob
from herl.api.validate import validate_document

JSON = dict[str, Any]
Key = tuple[str, str]
EventPoster = Callable[[JSON, str, str, str], None]
log = logging.getLogger("herl_operator")

ANNOTATION_SPEC_DIGEST = "herl.dev/spec-digest"
#: Spec fields the operator applies to a running job; every other change is reported, not applied.
SAFE_FIELDS = ("runPolicy", "queue")


def _now() -> datetime:
    return datetime.now(UTC)


def spec_digest(spec: JSON) -> dict[str, str]:
    """Short hashes of each spec field (two levels deep), to name which fields changed later."""
    out: dict[str, str] = {}
    for key, value in sorted(spec.items()):
        if isinstance(value, dict) and value:
            for sub, sv in sorted(value.items()):
                out[f"{key}.{sub}"] = hashlib.sha256(json.dumps(sv, sort_keys=True).encode()).hexdigest()[:10]
        else:
            out[key] = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]
    return out


def changed_fields(applied: dict[str, str], spec: JSON) -> tuple[str, ...]:
    """Spec fields (``spec.x.y``) that differ from what the RayJob was built from, minus the safe ones."""
    now = spec_digest(spec)
    keys = set(applied) | set(now)
    changed = sorted(k for k in keys if applied.get(k) != now.get(k) and k.split(".")[0] not in SAFE_FIELDS)
    return tuple(f"spec.{k}" for k in changed)


#: The RayJob spec fields a pass reads (status mapping, safe edits). The cache keeps only these, not
#: the pod templates: the full object is ~20 KB of Python objects per job, the slim one ~2 KB.
RAYJOB_SPEC_FIELDS = ("suspend", "backoffLimit", "activeDeadlineSeconds")


def _slim_meta(meta: JSON) -> JSON:
    return {k: v for k, v in meta.items() if k != "managedFields"}


def slim_rayjob(body: JSON) -> JSON:
    """What the reconciler caches of a RayJob: metadata (minus managedFields), status, and the
    spec fields in :data:`RAYJOB_SPEC_FIELDS` (a shallow copy: nothing in the cache is mutated)."""
    spec = body.get("spec") or {}
    out = {k: v for k, v in body.items() if k not in ("metadata", "spec")}
    out["metadata"] = _slim_meta(body.get("metadata") or {})
    out["spec"] = {k: spec[k] for k in RAYJOB_SPEC_FIELDS if k in spec}
    return out


def slim_herljob(body: JSON) -> JSON:
    """What the reconciler caches of a HeRLJob: everything but ``metadata.managedFields``."""
    meta = body.get("metadata")
    if not meta or "managedFields" not in meta:
        return body
    return {**body, "metadata": _slim_meta(meta)}


def is_ours(obj: JSON, name: str, uid: str | None) -> bool:
    meta = obj.get("metadata") or {}
    if (meta.get("labels") or {}).get(b.LABEL_JOB) != name:
        return False
    refs = [r for r in meta.get("ownerReferences") or [] if r.get("controller")]
    if uid and refs:
        return any(r.get("uid") == uid for r in refs)
    return True


#: Backoff of child creates after a permanent refusal (seconds): doubles from BASE up to MAX.
REFUSAL_BACKOFF_BASE = 5.0
REFUSAL_BACKOFF_MAX = 300.0


@dataclass(frozen=True)
class Refusal:
    count: int
    retry_at: float  # time.monotonic()
    reason: str
    message: str


def _permanent(exc: ApiError) -> bool:
    """A 4xx that retrying at once will not fix (409 is handled as "exists" where it can occur)."""
    return 400 <= exc.status < 500 and exc.status not in (408, 409, 429)


@dataclass
class Config:
    resync_seconds: float = 30.0
    resync_concurrency: int = 16
    submission_mode: str = "K8sJobMode"  # RayJob spec.submissionMode (builders.SUBMISSION_MODES)


class Reconciler:
    def __init__(
        self,
        client: KubeClient,
        *,
        metrics: OperatorMetrics | None = None,
        puller: ProgressPuller | None = None,
        post_event: EventPoster | None = None,
        config: Config | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.client = client
        self.metrics = metrics or OperatorMetrics()
        self.puller = puller
        self.post_event = post_event or (lambda body, type_, reason, message: None)
        self.config = config or Config()
        self.clock = clock
        self.jobs: dict[Key, JSON] = {}
        self.rayjobs: dict[Key, JSON] = {}
        self._locks: dict[Key, asyncio.Lock] = {}
        self._valid: dict[Key, tuple[str, HeRLJob | None, tuple[tuple[str, str], ...]]] = {}
        # The last status we wrote, per job. The operator is the only writer of status, so this is
        # fresher than a watch event that may still carry an older echo of our own write.
        self.written: dict[Key, JSON] = {}
        self._refusals: dict[Key, Refusal] = {}
        self.last_resync: float = time.monotonic()

    # ---- cache feeding (from kopf watch events) --------------------------------------------------

    def observe_herljob(self, event_type: str | None, body: JSON) -> Key:
        meta = body.get("metadata") or {}
        key = (meta.get("namespace") or "default", meta.get("name") or "")
        if event_type == "DELETED":
            self.jobs.pop(key, None)
        else:
            self.jobs[key] = slim_herljob(body)
        return key

    def observe_rayjob(self, event_type: str | None, body: JSON) -> Key | None:
        meta = body.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(b.LABEL_JOB)
        if not owner:
            return None
        key = (meta.get("namespace") or "default", owner)
        if event_type == "DELETED":
            if self.rayjobs.get(key, {}).get("metadata", {}).get("name") == meta.get("name"):
                self.rayjobs.pop(key, None)
        else:
            self.rayjobs[key] = slim_rayjob(body)
        return key

    def _lock(self, key: Key) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def _validate(self, key: Key, body: JSON) -> tuple[HeRLJob | None, tuple[tuple[str, str], ...]]:
        spec = body.get("spec")
        meta = body.get("metadata") or {}
        doc = {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
            "spec": spec,
        }
        fingerprint = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
        cached = self._valid.get(key)
        if cached and cached[0] == fingerprint:
            return cached[1], cached[2]
        job, findings = validate_document(doc, f"{key[0]}/{key[1]}")
        problems = tuple((f.path, f.message) for f in findings)
        self._valid[key] = (fingerprint, job, problems)
        return job, problems

    # ---- the reconcile pass ----------------------------------------------------------------------

    async def reconcile(self, key: Key, *, periodic: bool = False) -> str:
        """One pass for one HeRLJob; returns the result label ("success", "error" or "skipped")."""
        started = time.perf_counter()
        result = "success"
        async with self._lock(key):
            body = self.jobs.get(key)
            if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
                return "skipped"
            try:
                await self._reconcile(key, body, periodic)
            except Exception as exc:
                result = "error"
                log.warning(
                    "reconcile of %s/%s failed: %s",
                    key[0],
                    key[1],
                    exc,
                    extra={"object": {"namespace": key[0], "name": key[1]}},
                )
        self.metrics.observe_reconcile(result, time.perf_counter() - started)
        return result

    async def _reconcile(self, key: Key, body: JSON, periodic: bool) -> None:
        ns, name = key
        meta = body.get("metadata") or {}
        uid = meta.get("uid")
        generation = meta.get("generation")
        prev = self.written.get(key) or body.get("status") or {}
        now = self.clock()
        job, invalid = self._validate(key, body)
        rayjob = self.rayjobs.get(key)
        obs_kw: JSON = {}

        if job is None:
            obs_kw["invalid"] = invalid or (("spec", "invalid"),)
        else:
            ctx = b.Context(namespace=ns, uid=uid, submission_mode=self.config.submission_mode)
            prev_phase = prev.get("phase")
            prev_reason = next(
                (
                    c.get("reason")
                    for c in prev.get("conditions") or []
                    if c.get("type") == "Failed" and c.get("status") == "True"
                ),
                None,
            )
            terminal = prev_phase in TERMINAL_PHASES and prev_reason not in ("InvalidSpec", "RayJobConflict")
            if rayjob is None and not terminal:
                refused = self._refusals.get(key)
                if refused is not None and time.monotonic() < refused.retry_at:
                    obs_kw["child_error"] = (refused.reason, refused.message)  # still backing off
                else:
                    try:
                        rayjob, conflict = await self._ensure_children(job, ctx, body)
                    except ApiError as exc:
                        if not _permanent(exc):
                            raise
                        obs_kw["child_error"] = self._refused(key, body, "Create", exc)
                    else:
                        self._refusals.pop(key, None)
                        if conflict:
                            obs_kw["conflict"] = conflict
            elif rayjob is not None and not is_ours(rayjob, name, uid):
                obs_kw["conflict"] = f"RayJob {ns}/{rayjob['metadata'].get('name')} exists and is not ours"
                rayjob = None
            if rayjob is not None and "conflict" not in obs_kw:
                try:
                    rayjob, ignored = await self._apply_safe_edits(job, rayjob, body)
                except ApiError as exc:
                    if not _permanent(exc):
                        raise
                    obs_kw["child_error"] = self._refused(key, body, "Patch", exc)
                    ignored = ()
                else:
                    self._refusals.pop(key, None)  # in sync again: a later refusal gets its Event
                if ignored:
                    obs_kw["ignored_fields"] = ignored
                running = (rayjob.get("status") or {}).get("jobDeploymentStatus") == "Running"
                if periodic and running and self.puller is not None and job.spec.metrics_.enabled:
                    progress, ck_step = await self.puller.pull(ns, name, rayjob, job.spec.metrics_.port, now)
                    if progress:
                        obs_kw["progress"] = progress
                    if ck_step is not None and ck_step > 0:
                        obs_kw["checkpoint"] = self._checkpoint(job, ns, uid, ck_step, prev, now)

        status = derive_status(job, rayjob, prev, now, generation=generation, obs=Observation(**obs_kw))

        if (
            job is not None
            and rayjob is not None
            and status.get("phase") == "Failed"
            and _failed_reason(status) == "BudgetExceeded"
        ):
            rstatus = (rayjob.get("status") or {}).get("jobDeploymentStatus")
            if rstatus not in ("Complete", "Failed"):
                await self.client.delete(rbac.RAYJOBS, ns, rayjob["metadata"]["name"])
                self.rayjobs.pop(key, None)

        changed = semantic(_drop_none(status)) != semantic(_drop_none(prev))
        if changed or (periodic and _drop_none(status) != _drop_none(prev)):
            patch = dict(status)
            for k in prev:
                if k not in status:
                    patch[k] = None
            await self.client.patch(rbac.HERLJOBS_STATUS, ns, name, {"status": patch})
            self.written[key] = status
            self._announce(body, prev, status)
        self._export(key, status)

    def _refused(self, key: Key, body: JSON, verb: str, exc: ApiError) -> tuple[str, str]:
        """A permanent refusal of a child create/patch (403 RBAC, 422 schema, a denying webhook):
        remember it for the status (condition ChildrenSynced=False), post one Event per distinct
        message, and back off exponentially (5 s … 5 min) before the next create."""
        reason = f"RayJob{verb}Refused"
        message = f"the API server refused to {verb.lower()} a child of this job: {exc.status} {exc.reason}: {exc.message}"
        old = self._refusals.get(key)
        count = old.count + 1 if old else 1
        delay = min(REFUSAL_BACKOFF_MAX, REFUSAL_BACKOFF_BASE * 2 ** (count - 1))
        self._refusals[key] = Refusal(count, time.monotonic() + delay, reason, message[:1000])
        # A namespace being deleted refuses new content: its HeRLJobs go next; not worth a Warning.
        terminating = "because it is being terminated" in exc.message
        if (old is None or old.message != message[:1000]) and not terminating:
            self.post_event(body, "Warning", reason, message[:1000])
            log.warning("%s/%s: %s", key[0], key[1], message)
        return reason, message[:1000]

    def _checkpoint(
        self, job: HeRLJob, ns: str, uid: str | None, step: int, prev: JSON, now: datetime
    ) -> JSON:
        ck = job.spec.checkpoints_
        root = (
            ck.uri.rstrip("/")
            if ck.uri
            else (
                f"pvc://{ck.pvc.claim_name}/{b.checkpoint_subpath(job, ns, uid)}"
                if ck.pvc
                else b.CHECKPOINT_MOUNT
            )
        )
        old = prev.get("lastCheckpoint") or {}
        when = old.get("time") if old.get("step") == step else iso(now)
        return {"step": step, "path": f"{root}/{job.spec.checkpoint_relpath(step)}", "time": when}

    async def _ensure_children(
        self, job: HeRLJob, ctx: b.Context, body: JSON
    ) -> tuple[JSON | None, str | None]:
        ns, name = ctx.namespace, job.metadata.name
        cm = b.build_configmap(job, ctx, body.get("spec"))
        try:
            await self.client.create(rbac.CONFIGMAPS, ns, cm)
        except ApiError as exc:
            if exc.status != 409:
                raise
            existing = await self.client.get(rbac.CONFIGMAPS, ns, cm["metadata"]["name"])
            if existing is not None and not is_ours(existing, name, ctx.uid):
                return None, f"ConfigMap {ns}/{cm['metadata']['name']} exists and is not ours"
        rj = b.build_rayjob(job, ctx)
        rj["metadata"].setdefault("annotations", {})[ANNOTATION_SPEC_DIGEST] = json.dumps(
            spec_digest(body.get("spec") or {}), sort_keys=True, separators=(",", ":")
        )
        try:
            created = await self.client.create(rbac.RAYJOBS, ns, rj)
            self.post_event(body, "Normal", "RayJobCreated", f"created RayJob {rj['metadata']['name']}")
        except ApiError as exc:
            if exc.status != 409:
                raise
            created = await self.client.get(rbac.RAYJOBS, ns, rj["metadata"]["name"])
            if created is None:
                return None, None  # deleted in between; the next pass creates it
            if not is_ours(created, name, ctx.uid):
                return None, f"RayJob {ns}/{rj['metadata']['name']} exists and is not ours"
        created = slim_rayjob(created or rj)
        self.rayjobs[(ns, name)] = created
        return created, None

    async def _apply_safe_edits(self, job: HeRLJob, rayjob: JSON, body: JSON) -> tuple[JSON, tuple[str, ...]]:
        ns = (rayjob.get("metadata") or {}).get("namespace") or body["metadata"].get("namespace") or "default"
        rname = rayjob["metadata"]["name"]
        meta = rayjob.get("metadata") or {}
        rspec = rayjob.get("spec") or {}
        annotations = meta.get("annotations") or {}
        patch: JSON = {}
        rp = job.spec.run_policy_
        ours_suspended = annotations.get(b.ANNOTATION_SUSPENDED_BY_US) == "true"
        terminal = (rayjob.get("status") or {}).get("jobDeploymentStatus") in ("Complete", "Failed")
        if not terminal and job.spec.queue is not None:
            # Under Kueue a suspended admitted RayJob is unsuspended again ("Job admitted, unsuspending"):
            # suspending it ourselves starts a fight that creates and deletes GPU clusters in a loop
            # (seen on the real cluster: 13 attempts in 20 s). Kueue's own way is Workload.spec.active.
            deactivated = annotations.get(b.ANNOTATION_WORKLOAD_DEACTIVATED) == "true"
            if rp.suspend != deactivated and await self._set_workload_active(ns, rayjob, not rp.suspend):
                patch.setdefault("metadata", {}).setdefault("annotations", {})[
                    b.ANNOTATION_WORKLOAD_DEACTIVATED
                ] = "true" if rp.suspend else "false"
                self.post_event(
                    body,
                    "Normal",
                    "Suspending" if rp.suspend else "Resuming",
                    "spec.runPolicy.suspend is true: Kueue workload deactivated (evicts the cluster)"
                    if rp.suspend
                    else "spec.runPolicy.suspend is false: Kueue workload active again (queued "
                    "for admission; resumes from checkpoint)",
                )
        if not terminal and job.spec.queue is None:
            if rp.suspend and not (rspec.get("suspend") and ours_suspended):
                patch.setdefault("spec", {})["suspend"] = True
                patch.setdefault("metadata", {}).setdefault("annotations", {})[
                    b.ANNOTATION_SUSPENDED_BY_US
                ] = "true"
                self.post_event(
                    body, "Normal", "Suspending", "spec.runPolicy.suspend is true: stopping the cluster"
                )
            elif not rp.suspend and ours_suspended:
                patch.setdefault("metadata", {}).setdefault("annotations", {})[
                    b.ANNOTATION_SUSPENDED_BY_US
                ] = "false"
                patch.setdefault("spec", {})["suspend"] = False
                self.post_event(
                    body, "Normal", "Resuming", "spec.runPolicy.suspend is false: resuming from checkpoint"
                )
        if not terminal:
            if rspec.get("backoffLimit") != rp.backoff_limit:
                patch.setdefault("spec", {})["backoffLimit"] = rp.backoff_limit
            if (
                rp.attempt_deadline_seconds
                and rspec.get("activeDeadlineSeconds") != rp.attempt_deadline_seconds
            ):
                patch.setdefault("spec", {})["activeDeadlineSeconds"] = rp.attempt_deadline_seconds
            want = b.queue_labels(job)
            have = {
                k: v for k, v in (meta.get("labels") or {}).items() if k in (b.KUEUE_QUEUE, b.KUEUE_PRIORITY)
            }
            if want != have:
                labels = {k: want.get(k) for k in (b.KUEUE_QUEUE, b.KUEUE_PRIORITY) if k in want or k in have}
                patch.setdefault("metadata", {})["labels"] = labels
        if patch:
            updated = await self.client.patch(rbac.RAYJOBS, ns, rname, patch)
            if updated:
                rayjob = slim_rayjob(updated)
                self.rayjobs[(ns, job.metadata.name)] = rayjob
        try:
            applied = json.loads(annotations.get(ANNOTATION_SPEC_DIGEST) or "{}")
        except ValueError:
            applied = {}
        ignored = changed_fields(applied, body.get("spec") or {}) if applied else ()
        return rayjob, ignored

    async def _set_workload_active(self, ns: str, rayjob: JSON, active: bool) -> bool:
        """Set spec.active of the Kueue Workload(s) of ``rayjob``; False when Kueue has made none yet
        (the next pass tries again)."""
        uid = (rayjob.get("metadata") or {}).get("uid")
        if not uid:
            return False
        selector = f"kueue.x-k8s.io/job-uid={uid}"
        v1beta1 = False
        workloads = await self.client.list(rbac.WORKLOADS, ns, selector)
        if not workloads:  # Kueue < 0.15 serves only v1beta1
            workloads = await self.client.list(rbac.WORKLOADS_V1BETA1, ns, selector)
            v1beta1 = bool(workloads)
        for wl in workloads:
            if (wl.get("spec") or {}).get("active", True) == active:
                continue
            name, patch = wl["metadata"]["name"], {"spec": {"active": active}}
            if v1beta1:
                await self.client.patch(rbac.WORKLOADS_V1BETA1, ns, name, patch)
            else:
                await self.client.patch(rbac.WORKLOADS, ns, name, patch)
        return bool(workloads)

    def _announce(self, body: JSON, prev: JSON, status: JSON) -> None:
        old, new = prev.get("phase"), status.get("phase")
        if old != new:
            cond = next(
                (
                    c
                    for c in status.get("conditions") or []
                    if c["type"] == {"Provisioning": "ClusterProvisioning"}.get(new, new)
                ),
                None,
            )
            reason = (cond or {}).get("reason") or new or "Unknown"
            message = f"phase {old or 'none'} → {new}: {status.get('message') or ''}".strip()
            self.post_event(body, "Warning" if new in ("Failed", "Retrying") else "Normal", reason, message)
            log.info(
                "%s/%s phase %s → %s (%s)",
                body["metadata"].get("namespace"),
                body["metadata"].get("name"),
                old,
                new,
                reason,
                extra={
                    "object": {
                        "namespace": body["metadata"].get("namespace"),
                        "name": body["metadata"].get("name"),
                    }
                },
            )
        old_retries = sum(1 for a in prev.get("attempts") or [] if a.get("result") == "Retried")
        new_retries = sum(1 for a in status.get("attempts") or [] if a.get("result") == "Retried")
        if new_retries > old_retries:
            self.metrics.retries.inc(new_retries - old_retries)
        ignored_old = _cond(prev, "SpecChangeIgnored")
        ignored_new = _cond(status, "SpecChangeIgnored")
        if ignored_new.get("status") == "True" and ignored_new.get("message") != ignored_old.get("message"):
            self.post_event(body, "Warning", "SpecChangeIgnored", ignored_new.get("message", ""))

    def _export(self, key: Key, status: JSON) -> None:
        reward = (status.get("progress") or {}).get("rewardMean")
        self.metrics.set_job(
            key[0], key[1], status.get("phase"), float(status.get("gpuHours") or 0.0), reward
        )

    # ---- deletion and resync ---------------------------------------------------------------------

    async def cleanup(self, body: JSON) -> None:
        """The HeRLJob is gone: remove our children (the garbage collector would too, via owner
        references; doing it ourselves also covers clusters/emulators without GC), start the
        checkpoint cleanup Job when retention is Delete, and drop per-job metric series."""
        meta = body.get("metadata") or {}
        ns, name = meta.get("namespace") or "default", meta.get("name") or ""
        key = (ns, name)
        async with self._lock(key):
            self.jobs.pop(key, None)
            rayjob = self.rayjobs.pop(key, None)
            uid = meta.get("uid")
            rname = b.rayjob_name(name)
            if rayjob is None or is_ours(rayjob, name, uid):
                await self.client.delete(rbac.RAYJOBS, ns, rname)
            await self.client.delete(rbac.CONFIGMAPS, ns, b.configmap_name(name))
            job, _ = self._validate(key, body)
            if job is not None:
                cleanup = b.build_cleanup_job(job, b.Context(namespace=ns, uid=uid))
                if cleanup is not None:
                    with contextlib.suppress(ApiError):
                        await self.client.create(rbac.JOBS, ns, cleanup)
            self._valid.pop(key, None)
            self.written.pop(key, None)
            self._refusals.pop(key, None)
            self.metrics.remove_job(ns, name)
            if self.puller is not None:
                self.puller.forget(key)
        self._locks.pop(key, None)

    async def resync_once(self) -> None:
        sem = asyncio.Semaphore(self.config.resync_concurrency)

        async def one(key: Key) -> None:
            async with sem:
                await self.reconcile(key, periodic=True)

        await asyncio.gather(*(one(k) for k in list(self.jobs)))
        self.last_resync = time.monotonic()

    async def resync_forever(self) -> None:
        """The periodic level-based pass (our own loop rather than kopf timers: kopf adds a finalizer
        for every timer, which would block deletion whenever the operator is down)."""
        while True:
            await asyncio.sleep(self.config.resync_seconds)
            try:
                await self.resync_once()
            except Exception as exc:
                log.warning("resync failed: %s", exc)


def _drop_none(d: JSON) -> JSON:
    return {k: v for k, v in (d or {}).items() if v is not None}


def _cond(status: JSON, ctype: str) -> JSON:
    return next((c for c in status.get("conditions") or [] if c.get("type") == ctype), {})


def _failed_reason(status: JSON) -> str | None:
    return _cond(status, "Failed").get("reason") if _cond(status, "Failed").get("status") == "True" else None
