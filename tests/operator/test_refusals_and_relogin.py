"""A refused child create/patch still gets a status, and expired credentials are replaced.

Both were found by reading KubeRay's and kopf's sources against ours; the same behaviours are shown on
the real apiserver in tests/e2e (a denying admission webhook, a revoked ServiceAccount token).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from herl_operator import rbac
from herl_operator.kube import ApiError, KubeClient
from herl_operator.reconcile import Reconciler
from op_helpers import sample

JSON = dict[str, Any]


class RefusingClient:
    """Answers create with a fixed error and records every call (duck-types KubeClient)."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.calls: list[tuple[str, str]] = []
        self.patches: list[JSON] = []

    async def create(self, res: rbac.Resource, namespace: str, body: JSON) -> JSON:
        self.calls.append(("create", res.plural))
        raise ApiError(self.status, "Forbidden", 'admission webhook "deny.test" denied the request: no')

    async def get(self, res: rbac.Resource, namespace: str, name: str) -> JSON | None:
        self.calls.append(("get", res.plural))
        return None

    async def patch(self, res: rbac.Resource, namespace: str, name: str, patch: JSON) -> JSON | None:
        self.calls.append(("patch", res.rbac_resource))
        self.patches.append(copy.deepcopy(patch))
        return patch

    async def delete(self, res: rbac.Resource, namespace: str, name: str) -> bool:
        return False


def _job() -> JSON:
    doc = sample("local-smollm2")
    doc["metadata"].update({"namespace": "ns", "uid": "uid-1", "generation": 2})
    return doc


async def test_permanent_refusal_writes_status_event_and_backs_off() -> None:
    client = RefusingClient(403)
    events: list[tuple[str, str]] = []
    rec = Reconciler(client, post_event=lambda body, t, reason, msg: events.append((reason, msg)))  # type: ignore[arg-type]
    key = rec.observe_herljob("ADDED", _job())
    assert await rec.reconcile(key) == "success"
    status = client.patches[-1]["status"]
    cond = next(c for c in status["conditions"] if c["type"] == "ChildrenSynced")
    assert status["phase"] == "Pending" and cond["status"] == "False"
    assert cond["reason"] == "RayJobCreateRefused" and "deny.test" in cond["message"]
    refusals = [e for e in events if e[0] == "RayJobCreateRefused"]
    assert refusals == [("RayJobCreateRefused", cond["message"])]
    creates = sum(1 for c in client.calls if c[0] == "create")
    # Within the back-off the next passes do not create again, and post no second Event.
    await rec.reconcile(key)
    await rec.reconcile(key, periodic=True)
    assert sum(1 for c in client.calls if c[0] == "create") == creates
    assert len([e for e in events if e[0] == "RayJobCreateRefused"]) == 1


async def test_transient_error_is_not_reported_as_refusal() -> None:
    client = RefusingClient(503)
    rec = Reconciler(client)  # type: ignore[arg-type]
    key = rec.observe_herljob("ADDED", _job())
    assert await rec.reconcile(key) == "error"  # retried on the next pass, nothing written
    assert client.patches == []


@pytest.fixture()
async def token_server() -> Any:
    """A loopback server that accepts only the token "new" (the old one has expired)."""

    async def handler(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer new":
            return web.json_response({"reason": "Unauthorized", "message": "token expired"}, status=401)
        return web.json_response({"metadata": {"name": "x"}})

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/ns/configmaps/x", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


class Info:
    def __init__(self, server: str, token: str) -> None:
        self.server, self.token = server, token
        self.ca_path = self.ca_data = self.certificate_path = self.certificate_data = None
        self.private_key_path = self.private_key_data = self.scheme = None
        self.insecure = True


async def test_client_rereads_credentials_after_401(token_server: Any) -> None:
    url = str(token_server.make_url("/")).rstrip("/")
    reads: list[str] = []

    def refresh() -> Info:
        reads.append("read")
        return Info(url, "new")

    client = KubeClient.from_connection(Info(url, "old"), refresh=refresh)  # type: ignore[arg-type]
    try:
        assert await client.get(rbac.CONFIGMAPS, "ns", "x") == {"metadata": {"name": "x"}}
        assert reads == ["read"] and client.relogins == 1
        assert await client.get(rbac.CONFIGMAPS, "ns", "x") is not None
        assert reads == ["read"]  # the new token is kept: no re-read per call
    finally:
        await client.close()


async def test_without_refresh_a_401_is_raised(token_server: Any) -> None:
    url = str(token_server.make_url("/")).rstrip("/")
    client = KubeClient.from_connection(Info(url, "old"))  # type: ignore[arg-type]
    try:
        with pytest.raises(ApiError) as exc:
            await client.get(rbac.CONFIGMAPS, "ns", "x")
        assert exc.value.status == 401
    finally:
        await client.close()


async def test_login_reads_the_kubeconfig_and_a_relogin_keeps_the_client(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kopf's own login helpers need kopf's settings (a missing argument once made every real
    login fail); a second login swaps the token of the same client (the resync loop holds it)."""
    import kopf
    import yaml
    from herl_operator.handlers import OperatorConfig, build_registry

    def kubeconfig(token: str) -> None:
        (tmp_path / "kc").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "c",
                    "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                    "users": [{"name": "u", "user": {"token": token}}],
                    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                }
            )
        )

    kubeconfig("first")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kc"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    registry, rt = build_registry(OperatorConfig(metrics_port=None))
    login = next(h.fn for h in registry._activities.get_all_handlers() if h.fn.__name__ == "login")
    info = await login(settings=kopf.OperatorSettings(), logger=None)
    assert info.server == "https://127.0.0.1:6443" and info.token == "first"
    client = rt.client
    assert client is not None and client._headers["Authorization"] == "Bearer first"
    kubeconfig("second")
    await login(settings=kopf.OperatorSettings(), logger=None)
    assert rt.client is client and client._headers["Authorization"] == "Bearer second"
    assert client._refresh is not None and client._refresh().token == "second"


async def test_rayjobs_are_listed_and_watched_with_a_server_side_label_selector() -> None:
    """kopf's handler filters (`labels=`) are client-side; the selector in the watch request is what
    keeps the operator from receiving every RayJob of a shared cluster."""
    import kopf
    from herl_operator import builders
    from herl_operator.handlers import OperatorConfig, build_registry
    from kopf._cogs.structs import references

    registry, _ = build_registry(OperatorConfig(metrics_port=None))
    startup = next(h.fn for h in registry._activities.get_all_handlers() if h.fn.__name__ == "startup")
    settings = kopf.OperatorSettings()
    await startup(settings=settings)
    rayjobs = references.Resource("ray.io", "v1", "rayjobs", kind="RayJob", namespaced=True)
    herljobs = references.Resource("herl.dev", "v1alpha1", "herljobs", kind="HeRLJob", namespaced=True)
    assert settings.watching.label_selectors.collect(rayjobs) == [builders.LABEL_JOB]
    assert not settings.watching.label_selectors.collect(herljobs)
