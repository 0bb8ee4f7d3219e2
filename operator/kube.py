"""A deliberately small async Kubernetes client for the reconciler's own calls.

Why not the official client: it is synchronous (blocking kopf's event loop or needing threads) and
costs most of a Python operator's memory. kopf already holds an aiohttp stack and the credentials
(``@kopf.on.login``); this client reuses the same :class:`ConnectionInfo`, so tests that point kopf at
kmock point us there too.

Every public method is named after the RBAC verb it needs and takes a :class:`~.rbac.Resource`
constant. ``tests/operator/test_rbac.py`` scans the call sites and checks them against the declared
RBAC table, so keep calls in the form ``client.<verb>(rbac.<RESOURCE>, ...)``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import ssl
import tempfile
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
from herl_operator.rbac import Resource

from herl import __version__
from herl.metrics.endpoint import OPERATOR_AGENT

JSON = dict[str, Any]


USER_AGENT = f"{OPERATOR_AGENT}/{__version__}"


class ApiError(Exception):
    """A non-2xx answer from the API server (status code, reason, message)."""

    def __init__(self, status: int, reason: str = "", message: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class Credentials(Protocol):
    """The fields of kopf's ``ConnectionInfo`` we use (a Protocol so this module needs no kopf)."""

    server: str
    ca_path: Any
    ca_data: Any
    insecure: bool | None
    token: str | None
    scheme: str | None
    certificate_path: Any
    certificate_data: Any
    private_key_path: Any
    private_key_data: Any


def _as_file(data: str | bytes, suffix: str) -> str:
    """ssl wants client certs as files; credentials may come as data (kubeconfig *-data fields)."""
    raw = data.encode() if isinstance(data, str) else data
    fd, path = tempfile.mkstemp(suffix=suffix)
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)
    return path


def ssl_context(info: Credentials) -> ssl.SSLContext | bool:
    """An SSL context matching kopf's interpretation of the connection info."""
    if not info.server.startswith("https"):
        return False
    if info.insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ca_data = info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data
        ctx = ssl.create_default_context(cafile=info.ca_path or None, cadata=ca_data or None)
    cert = info.certificate_path or (info.certificate_data and _as_file(info.certificate_data, ".crt"))
    key = info.private_key_path or (info.private_key_data and _as_file(info.private_key_data, ".key"))
    if cert:
        ctx.load_cert_chain(cert, key or None)
    return ctx


class KubeClient:
    """create/get/patch/delete on single objects; list/watch stay with kopf.

    ``calls`` counts (verb, resource) per call for the benchmark and the tests (e.g. "no second
    create"). Concurrency is bounded so a burst of 500 new jobs does not open 1500 sockets at once.
    """

    def __init__(
        self,
        server: str,
        *,
        headers: dict[str, str] | None = None,
        ssl_ctx: ssl.SSLContext | bool = False,
        timeout: float = 10.0,
        max_concurrency: int = 32,
    ) -> None:
        self.server = server.rstrip("/")
        # The User-Agent also marks our progress reads through the apiserver's service proxy, so a trainer
        # can tell that the operator has read its final step (herl.metrics.endpoint).
        self._headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
        self._ssl = ssl_ctx
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._sem = asyncio.Semaphore(max_concurrency)
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self._refresh: Callable[[], Credentials | None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.relogins = 0

    @classmethod
    def from_connection(
        cls, info: Credentials, *, refresh: Callable[[], Credentials | None] | None = None, **kwargs: Any
    ) -> KubeClient:
        """A client for kopf's connection info; ``refresh`` re-reads credentials after a 401."""
        client = cls(info.server, **kwargs)
        client.update(info)
        client._refresh = refresh
        return client

    def update(self, info: Credentials) -> None:
        """Use new credentials from now on (kopf re-ran its login after a 401, or our own 401 did):
        a rotated service-account token or a rewritten kubeconfig replaces the expired one. The old
        session closes in the background; the next request opens a new one."""
        headers = {k: v for k, v in self._headers.items() if k != "Authorization"}
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        self.server = info.server.rstrip("/")
        self._headers = headers
        self._ssl = ssl_context(info)
        old, self._session = self._session, None
        if old is not None and not old.closed:
            with contextlib.suppress(RuntimeError):  # no running loop (sync callers): GC closes it
                task = asyncio.get_running_loop().create_task(old.close())
                self._closing.add(task)  # a task nobody references may be collected before it ran
                task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=64)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, headers=self._headers
            )
        return self._session

    async def _request(
        self, verb: str, res: Resource, method: str, path: str, *args: Any, **kwargs: Any
    ) -> JSON:
        """One API call; on 401 the credentials are read again (once) and the call retried."""
        try:
            return await self._request_once(verb, res, method, path, *args, **kwargs)
        except ApiError as exc:
            if exc.status != 401 or self._refresh is None:
                raise
            info = self._refresh()
            if info is None:
                raise
            self.update(info)
            self.relogins += 1
            return await self._request_once(verb, res, method, path, *args, **kwargs)

    async def _request_once(
        self,
        verb: str,
        res: Resource,
        method: str,
        path: str,
        body: JSON | None = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
        raw: bool = False,
    ) -> JSON:
        self.calls[(verb, res.rbac_resource)] += 1
        data = json.dumps(body).encode() if body is not None else None
        async with (
            self._sem,
            self._sess().request(
                method,
                self.server + path,
                data=data,
                params=params,
                headers={"Content-Type": content_type} if data is not None else None,
            ) as resp,
        ):
            text = await resp.text()
            if resp.status >= 400:
                reason, message = resp.reason or "", text[:500]
                try:
                    doc = json.loads(text)
                    reason, message = doc.get("reason", reason), doc.get("message", message)
                except (ValueError, AttributeError):
                    pass
                raise ApiError(resp.status, str(reason), str(message))
            if raw:
                return {"text": text}
            try:
                out = json.loads(text) if text else {}
            except ValueError:
                out = {}
            return out if isinstance(out, dict) else {}

    # ---- verbs (names = RBAC verbs) ------------------------------------------------------------

    async def get(self, res: Resource, namespace: str, name: str, subpath: str | None = None) -> JSON | None:
        """The object, or None when it does not exist. With ``subpath`` (a proxy subresource: the path
        behind it) the body is returned unparsed as ``{"text": ...}``."""
        path = res.path(namespace, name) + (f"/{subpath}" if subpath else "")
        try:
            return await self._request("get", res, "GET", path, raw=subpath is not None)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def create(self, res: Resource, namespace: str, body: JSON) -> JSON:
        """Create; raises ApiError(409) when the name is taken (callers adopt or report)."""
        return await self._request(
            "create", res, "POST", res.path(namespace), body, params={"fieldManager": "herl-operator"}
        )

    async def patch(self, res: Resource, namespace: str, name: str, patch: JSON) -> JSON | None:
        """JSON merge patch (also on /status); None when the object is gone."""
        try:
            return await self._request(
                "patch",
                res,
                "PATCH",
                res.path(namespace, name),
                patch,
                content_type="application/merge-patch+json",
                params={"fieldManager": "herl-operator"},
            )
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, res: Resource, namespace: str, label_selector: str) -> list[JSON]:
        """The items matching a label selector (server-side); [] when the API is not served (404)."""
        try:
            out = await self._request(
                "list", res, "GET", res.path(namespace), params={"labelSelector": label_selector}
            )
        except ApiError as exc:
            if exc.status == 404:
                return []
            raise
        return list(out.get("items") or [])

    async def delete(self, res: Resource, namespace: str, name: str) -> bool:
        """Delete with background propagation (children of children go too); False when absent."""
        try:
            await self._request(
                "delete",
                res,
                "DELETE",
                res.path(namespace, name),
                {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
            )
            return True
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
