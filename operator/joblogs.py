"""``herl logs NAME [-f]``: the trainer's log of a HeRLJob's current attempt, through KubeRay's objects.

The trainer is the Ray job that KubeRay submits to the attempt's Ray cluster. The RayJob's status names
both (``rayClusterName``, ``jobId``, the submission id), so the log is read from the Ray dashboard on the
cluster's head Service, through the apiserver's service proxy (the user's credentials, no port-forward):

    GET /api/v1/namespaces/{ns}/services/{head-svc}:dashboard/proxy/api/jobs/{jobId}/logs
    (WebSocket) .../api/jobs/{jobId}/logs/tail     for -f: chunks until the job ends

When the dashboard cannot answer (head restarting, a proxy that refuses), the head pod's own log (the
``ray-head`` container: ``ray start`` plus the driver of K8sJobMode's submitter) is the fallback.
A job without a Ray cluster and a submission id yet has no log: :class:`NotStarted` says so (exit 3).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from herl_operator.builders import rayjob_name
from herl_operator.userclient import UserClient, call, get_herljob

from herl.errors import UserError

#: ``herl logs`` exit code when the job has not started (no log yet); 0 = log shown, 1 = an error.
NOT_STARTED = 3
RAY_GROUP, RAY_VERSION = "ray.io", "v1"
DASHBOARD_PORT = "dashboard"


class NotStarted(UserError):
    """The job has no trainer log yet (no Ray cluster or no submitted Ray job)."""

    exit_code = NOT_STARTED


@dataclass(frozen=True)
class LogTarget:
    """Where the current attempt's trainer log lives."""

    namespace: str
    job: str
    phase: str
    rayjob: str
    cluster: str
    submission_id: str
    attempt: int


def find_target(uc: UserClient, namespace: str, name: str) -> LogTarget:
    """The current attempt's Ray cluster and submission id, or :class:`NotStarted` naming the phase."""
    from kubernetes import client

    job = get_herljob(uc, namespace, name)
    st = job.get("status") or {}
    phase = st.get("phase") or "Pending"
    rj_name = st.get("rayJobName") or rayjob_name(name)
    api = client.CustomObjectsApi(uc.api)
    try:
        rayjob = call(
            api.get_namespaced_custom_object,
            f"RayJob {rj_name!r} in namespace {namespace!r}",
            RAY_GROUP,
            RAY_VERSION,
            namespace,
            "rayjobs",
            rj_name,
        )
    except UserError as exc:
        if "not found" not in str(exc):
            raise
        rayjob = {}
    rst = rayjob.get("status") or {}
    cluster, sid = rst.get("rayClusterName"), rst.get("jobId")
    if not cluster or not sid:
        why = f" ({st['message']})" if st.get("message") else ""
        raise NotStarted(
            f"HeRLJob {namespace}/{name} has not started yet: phase {phase}{why}; there is no trainer log "
            f"until KubeRay has created its Ray cluster and submitted the Ray job. "
            f"Watch it with `herl status {name} -n {namespace}`."
        )
    return LogTarget(namespace, name, phase, rj_name, cluster, sid, int(st.get("attemptCount") or 1) - 1)


def head_service(uc: UserClient, t: LogTarget) -> str:
    """The cluster's head Service: found by KubeRay's labels, else KubeRay's naming (``<cluster>-head-svc``)."""
    from kubernetes import client

    svcs = call(
        client.CoreV1Api(uc.api).list_namespaced_service,
        f"the head Service of Ray cluster {t.cluster!r}",
        t.namespace,
        label_selector=f"ray.io/cluster={t.cluster},ray.io/node-type=head",
    )
    return svcs.items[0].metadata.name if svcs.items else f"{t.cluster}-head-svc"


def proxy_path(t: LogTarget, service: str, tail: bool = False) -> str:
    return (
        f"/api/v1/namespaces/{t.namespace}/services/{service}:{DASHBOARD_PORT}/proxy"
        f"/api/jobs/{t.submission_id}/logs" + ("/tail" if tail else "")
    )


def _auth_headers(uc: UserClient, path: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    uc.api.update_params_for_auth(headers, [], ["BearerToken"], path, "GET", None)
    return headers


class DashboardError(Exception):
    """The dashboard (or the proxy to it) did not give the log."""


def dashboard_log(uc: UserClient, path: str, timeout: float = 15.0) -> str:
    """The whole log of the Ray job from the dashboard's ``/logs`` (JSON ``{"logs": ...}``)."""
    from urllib3.exceptions import HTTPError

    try:
        resp = uc.api.rest_client.request(
            "GET", uc.api.configuration.host + path, headers=_auth_headers(uc, path), _request_timeout=timeout
        )
        body = resp.read()
    except (HTTPError, OSError) as exc:
        raise DashboardError(f"{type(exc).__name__}: {exc}") from None
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    if resp.status != 200:
        raise DashboardError(f"HTTP {resp.status}: {text.strip()[:300]}")
    try:
        return str(json.loads(text)["logs"])
    except (ValueError, KeyError, TypeError):
        raise DashboardError(f"unexpected answer (not {{'logs': ...}}): {text.strip()[:300]}") from None


def dashboard_tail(uc: UserClient, path: str) -> Iterator[str]:
    """Chunks of the log from the dashboard's ``/logs/tail`` WebSocket until the job ends (it closes)."""
    from kubernetes.stream.ws_client import create_websocket, get_websocket_url
    from websocket import WebSocketConnectionClosedException, WebSocketException

    headers = _auth_headers(uc, path)
    headers["sec-websocket-protocol"] = "ray-logs"  # any value: the k8s channel protocols would confuse Ray
    try:
        ws = create_websocket(
            uc.api.configuration, get_websocket_url(uc.api.configuration.host + path), headers
        )
    except (WebSocketException, OSError) as exc:
        raise DashboardError(f"{type(exc).__name__}: {exc}") from None
    try:
        while True:
            try:
                msg = ws.recv()
            except WebSocketConnectionClosedException:
                return
            if not msg:
                return
            yield msg.decode("utf-8", "replace") if isinstance(msg, bytes) else msg
    finally:
        ws.close()


def head_pod_log(uc: UserClient, t: LogTarget, follow: bool) -> Iterator[str]:
    """The head pod's log (container ``ray-head``, else the first one), streamed when ``follow``."""
    from kubernetes import client

    core = client.CoreV1Api(uc.api)
    pods = call(
        core.list_namespaced_pod,
        f"the head pod of Ray cluster {t.cluster!r}",
        t.namespace,
        label_selector=f"ray.io/cluster={t.cluster},ray.io/node-type=head",
    )
    if not pods.items:
        raise DashboardError(f"no head pod with labels ray.io/cluster={t.cluster},ray.io/node-type=head")
    pod = pods.items[0]
    names = [c.name for c in pod.spec.containers]
    container = "ray-head" if "ray-head" in names else names[0]
    what = f"the log of pod {pod.metadata.name!r} (container {container})"
    resp = call(
        core.read_namespaced_pod_log,
        what,
        pod.metadata.name,
        t.namespace,
        container=container,
        follow=follow,
        _preload_content=False,
    )
    for chunk in resp.stream(4096) if follow else [resp.data]:
        yield chunk.decode("utf-8", "replace") if isinstance(chunk, bytes) else str(chunk)


def stream_logs(
    uc: UserClient, namespace: str, name: str, *, follow: bool, note: Callable[[str], None] | None = None
) -> Iterator[str]:
    """The trainer's log: the dashboard first, then the head pod's log; ``note`` hears which source."""
    note = note or (lambda m: print(m, file=sys.stderr, flush=True))
    t = find_target(uc, namespace, name)
    problems: list[str] = []
    try:
        svc = head_service(uc, t)
        note(
            f"herl logs: Ray job {t.submission_id} on cluster {t.cluster} (attempt {t.attempt}, phase {t.phase})"
        )
        if follow:
            yield from dashboard_tail(uc, proxy_path(t, svc, tail=True))
        else:
            yield dashboard_log(uc, proxy_path(t, svc))
        return
    except DashboardError as exc:
        problems.append(f"Ray dashboard: {exc}")
    try:
        chunks = head_pod_log(uc, t, follow)
        first = next(chunks, "")
    except (DashboardError, UserError) as exc:
        problems.append(f"head pod: {exc}")
    else:
        note(f"herl logs: the Ray dashboard did not answer ({problems[0]}); showing the head pod's log")
        yield first
        yield from chunks
        return
    detail = "; ".join(problems)
    if t.phase in ("Pending", "Queued", "Suspended", "Provisioning"):
        raise NotStarted(
            f"HeRLJob {namespace}/{name} is {t.phase}: the Ray cluster {t.cluster} is not serving logs yet "
            f"({detail})"
        )
    raise UserError(
        f"no log for HeRLJob {namespace}/{name} (Ray job {t.submission_id}): {detail}", exit_code=1
    )
