"""kopf wiring: login, settings, watch events → the reconciler, probes, metrics, resync loop.

Handlers only feed caches and call :class:`~.reconcile.Reconciler`; they hold no logic. Only
``@kopf.on.event`` handlers and one ``@kopf.index`` (which stores nothing; it primes the RayJob cache
before any handler runs) are used (no on.create/update/delete, no kopf timers), so kopf stores no
progress annotations and adds **no finalizer**: deleting a HeRLJob never waits for the operator.
Cleanup runs on the DELETED watch event (best effort; owner references cover the rest).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import kopf
from herl_operator import builders as b
from herl_operator.kube import KubeClient
from herl_operator.metrics import OperatorMetrics
from herl_operator.progress import ProgressPuller, URLResolver, default_resolver
from herl_operator.reconcile import Config, Reconciler

from herl.api.model import API_GROUP, API_VERSION, PLURAL

log = logging.getLogger("herl_operator")


@dataclass
class OperatorConfig:
    """Knobs of one operator instance (CLI flags map onto these; tests shrink the intervals)."""

    server: str | None = None  # None: in-cluster service account, else kubeconfig (kopf's logins)
    resync_seconds: float = 30.0
    progress_seconds: float = 30.0
    metrics_port: int | None = 8080
    submission_mode: str = "K8sJobMode"
    progress_via: Literal["direct", "apiserver"] = "direct"
    url_resolver: URLResolver = default_resolver
    client_concurrency: int = 32
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Runtime:
    """Per-operator state, reachable from the handlers and from tests."""

    config: OperatorConfig
    metrics: OperatorMetrics
    reconciler: Reconciler | None = None
    client: KubeClient | None = None
    task: asyncio.Task[None] | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)


def _post_event(body: dict[str, Any], type_: str, reason: str, message: str) -> None:
    kopf.event(body, type=type_, reason=reason, message=message)


class NoDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff base, switched off: it is only read by on.create/update/delete/field handlers,
    which this operator does not use (``tests/operator`` asserts the registry has none), yet kopf
    builds it for every watch event (a deep copy of the whole object, then another to strip its
    progress fields): about a fifth of the operator's CPU under load. Nothing is ever stored."""

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return None

    def fetch(self, *, body: Any) -> Any:
        return None


def build_registry(config: OperatorConfig | None = None) -> tuple[kopf.OperatorRegistry, Runtime]:
    """A fresh kopf registry with every handler bound to a fresh :class:`Runtime`."""
    config = config or OperatorConfig()
    registry = kopf.OperatorRegistry()
    rt = Runtime(config=config, metrics=OperatorMetrics())

    def credentials(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo | None:
        """Read the credentials afresh: the service account's token file is rotated by the kubelet,
        and a kubeconfig may be rewritten, so every (re-)login reads them again."""
        if config.server:
            return kopf.ConnectionInfo(server=config.server, insecure=True)
        return kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
            settings=settings
        )

    @kopf.on.login(registry=registry)
    async def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo | None:
        """kopf runs this at start and again after any 401. The first login builds the client and
        the reconciler; a re-login only swaps the credentials of that same client, so the resync
        loop and the caches (bound to it) go on with the new token instead of the expired one. Async so
        it runs on the event loop (kopf runs sync handlers in a thread), where the client lives."""
        info = credentials(settings)
        if info is None:
            return None
        if rt.client is None:
            rt.client = KubeClient.from_connection(
                info,
                refresh=functools.partial(credentials, settings),
                max_concurrency=config.client_concurrency,
            )
            rt.reconciler = Reconciler(
                rt.client,
                metrics=rt.metrics,
                puller=ProgressPuller(
                    config.url_resolver,
                    min_interval=config.progress_seconds,
                    via=config.progress_via,
                    client=rt.client,
                ),
                post_event=_post_event,
                config=Config(resync_seconds=config.resync_seconds, submission_mode=config.submission_mode),
            )
        else:
            rt.client.update(info)
        return info

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.peering.standalone = True
        settings.watching.server_timeout = 120
        settings.watching.client_timeout = 150
        settings.watching.connect_timeout = 5
        settings.networking.request_timeout = 30
        settings.posting.level = logging.WARNING  # log lines are not echoed as Events; we post our own
        settings.persistence.diffbase_storage = NoDiffBase()
        # Server-side: list/watch only our RayJobs (the handlers' `labels=` filter is client-side, so
        # without this every RayJob of the cluster would be sent to us and deserialised).
        settings.watching.label_selectors["ray.io", "rayjobs"] = b.LABEL_JOB
        if config.metrics_port:
            rt.metrics.serve(config.metrics_port)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        if rt.task is not None:
            rt.task.cancel()
        if rt.reconciler is not None and rt.reconciler.puller is not None:
            await rt.reconciler.puller.close()
        if rt.client is not None:
            await rt.client.close()

    def _start_resync() -> None:
        if rt.task is None and rt.reconciler is not None:
            rt.task = asyncio.get_running_loop().create_task(rt.reconciler.resync_forever())
            rt.ready.set()

    @kopf.on.event(API_GROUP, API_VERSION, PLURAL, registry=registry)
    async def herljob_event(event: dict[str, Any], **_: Any) -> None:
        rec = rt.reconciler
        if rec is None:
            return
        _start_resync()
        body = event.get("object") or {}
        if event.get("type") == "DELETED":
            await rec.cleanup(body)
            return
        key = rec.observe_herljob(event.get("type"), body)
        await rec.reconcile(key)

    @kopf.index("ray.io", "v1", "rayjobs", labels={b.LABEL_JOB: kopf.PRESENT}, registry=registry)
    async def rayjob_cache(body: kopf.Body, **_: Any) -> None:
        """Feeds the RayJob cache; stores nothing in kopf's index. Being an *index* makes kopf hold
        every other handler until the initial RayJob listing has been seen, so after a restart each
        HeRLJob finds its RayJob cached and no create is tried (otherwise, for every existing job:
        two creates answered 409 and two reads back). Deletions reach the cache via rayjob_event."""
        if rt.reconciler is not None:
            rt.reconciler.observe_rayjob("MODIFIED", dict(body))

    @kopf.on.event("ray.io", "v1", "rayjobs", labels={b.LABEL_JOB: kopf.PRESENT}, registry=registry)
    async def rayjob_event(event: dict[str, Any], **_: Any) -> None:
        rec = rt.reconciler
        if rec is None:
            return
        key = rec.observe_rayjob(event.get("type"), event.get("object") or {})
        if key is not None and key in rec.jobs:
            await rec.reconcile(key)

    @kopf.on.probe(id="herljobs", registry=registry)
    async def probe_jobs(**_: Any) -> int:
        return len(rt.reconciler.jobs) if rt.reconciler else 0

    @kopf.on.probe(id="resync_age_seconds", registry=registry)
    async def probe_resync(**_: Any) -> float:
        """Liveness: a resync loop that stopped (age ≫ interval) shows here. Async on purpose: kopf
        runs sync probes in a worker thread, which has no event loop, and /healthz then fails."""
        if rt.reconciler is None:
            return 0.0
        return round(asyncio.get_running_loop().time() - rt.reconciler.last_resync, 1)

    return registry, rt
