"""A small fake Kubernetes apiserver (aiohttp, 127.0.0.1) for the user verbs' tests: the objects ``herl
status`` / ``herl logs`` read, the service proxy to a Ray dashboard (``/logs`` JSON and the ``/logs/tail``
WebSocket) and pod logs. It records every request's path and Authorization header."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

TOKEN = "t0ken"


@dataclass
class FakeCluster:
    herljobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    rayjobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    services: list[dict[str, Any]] = field(default_factory=list)
    pods: list[dict[str, Any]] = field(default_factory=list)
    dashboard_logs: dict[str, str] = field(default_factory=dict)  # submission id → log
    tail_chunks: list[str] = field(default_factory=list)
    dashboard_status: int = 200
    pod_log: str | None = None
    requests: list[tuple[str, str | None]] = field(default_factory=list)


def _status(code: int, message: str) -> web.Response:
    return web.json_response({"kind": "Status", "code": code, "message": message}, status=code)


def _labels_match(obj: dict[str, Any], selector: str | None) -> bool:
    labels = obj["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in (p.split("=", 1) for p in (selector or "").split(",") if p))


def make_app(fc: FakeCluster) -> web.Application:
    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        fc.requests.append((request.path, request.headers.get("Authorization")))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return _status(401, "Unauthorized")
        return await handler(request)

    async def herljob(request: web.Request) -> web.Response:
        key = (request.match_info["ns"], request.match_info["name"])
        obj = fc.herljobs.get(key)
        return web.json_response(obj) if obj else _status(404, f'herljobs.herl.dev "{key[1]}" not found')

    async def herljobs(request: web.Request) -> web.Response:
        ns = request.match_info.get("ns")
        items = [o for (n, _), o in fc.herljobs.items() if ns is None or n == ns]
        return web.json_response({"kind": "HeRLJobList", "items": items})

    async def rayjob(request: web.Request) -> web.Response:
        key = (request.match_info["ns"], request.match_info["name"])
        obj = fc.rayjobs.get(key)
        return web.json_response(obj) if obj else _status(404, f'rayjobs.ray.io "{key[1]}" not found')

    def _list(kind: str, objs: list[dict[str, Any]], request: web.Request) -> web.Response:
        sel = request.query.get("labelSelector")
        items = [
            o
            for o in objs
            if o["metadata"]["namespace"] == request.match_info["ns"] and _labels_match(o, sel)
        ]
        return web.json_response({"kind": kind, "apiVersion": "v1", "metadata": {}, "items": items})

    async def services(request: web.Request) -> web.Response:
        return _list("ServiceList", fc.services, request)

    async def pods(request: web.Request) -> web.Response:
        return _list("PodList", fc.pods, request)

    async def pod_log(request: web.Request) -> web.Response:
        if fc.pod_log is None:
            return _status(400, "the node's kubelet does not serve logs")
        return web.Response(text=fc.pod_log)

    async def dashboard(request: web.Request) -> web.StreamResponse:
        if fc.dashboard_status != 200:
            return _status(fc.dashboard_status, "no endpoints available for service")
        sid = request.match_info["sid"]
        if request.match_info.get("tail"):
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            for chunk in fc.tail_chunks:
                await ws.send_str(chunk)
            await ws.close()
            return ws
        if sid not in fc.dashboard_logs:
            return web.json_response({"detail": f"Job {sid} does not exist"}, status=404)
        return web.json_response({"logs": fc.dashboard_logs[sid]})

    app = web.Application(middlewares=[record])
    g = "/apis/herl.dev/v1alpha1"
    app.router.add_get(g + "/namespaces/{ns}/herljobs/{name}", herljob)
    app.router.add_get(g + "/namespaces/{ns}/herljobs", herljobs)
    app.router.add_get(g + "/herljobs", herljobs)
    app.router.add_get("/apis/ray.io/v1/namespaces/{ns}/rayjobs/{name}", rayjob)
    app.router.add_get("/api/v1/namespaces/{ns}/services", services)
    app.router.add_get("/api/v1/namespaces/{ns}/pods", pods)
    app.router.add_get("/api/v1/namespaces/{ns}/pods/{pod}/log", pod_log)
    app.router.add_get(
        "/api/v1/namespaces/{ns}/services/{svc}:dashboard/proxy/api/jobs/{sid}/logs{tail:(/tail)?}", dashboard
    )
    return app


@contextmanager
def serve(fc: FakeCluster, kubeconfig: Path, namespace: str = "team") -> Iterator[Path]:
    """Serve ``fc`` on a free port in a thread; write a kubeconfig for it (context namespace ``namespace``)."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(make_app(fc))
    ready = threading.Event()
    port: list[int] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        port.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port[0]}"}}],
        "users": [{"name": "me", "user": {"token": TOKEN}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me", "namespace": namespace}}],
    }
    kubeconfig.write_text(yaml.safe_dump(doc))
    try:
        yield kubeconfig
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def started_job(fc: FakeCluster, ns: str = "team", name: str = "train", phase: str = "Running") -> None:
    """A HeRLJob whose RayJob has a cluster (``c1``), a submission id, a head Service and a head pod."""
    fc.herljobs[(ns, name)] = {
        "apiVersion": "herl.dev/v1alpha1",
        "kind": "HeRLJob",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {"phase": phase, "rayJobName": name, "attemptCount": 2},
    }
    fc.rayjobs[(ns, name)] = {
        "metadata": {"name": name, "namespace": ns},
        "status": {"rayClusterName": "c1", "jobId": "raysubmit_1", "jobDeploymentStatus": "Running"},
    }
    head = {"ray.io/cluster": "c1", "ray.io/node-type": "head"}
    fc.services.append({"metadata": {"name": "c1-head-svc", "namespace": ns, "labels": head}, "spec": {}})
    fc.pods.append(
        {
            "metadata": {"name": "c1-head-abc", "namespace": ns, "labels": head},
            "spec": {"containers": [{"name": "ray-head", "image": "ray"}, {"name": "sidecar", "image": "x"}]},
        }
    )
