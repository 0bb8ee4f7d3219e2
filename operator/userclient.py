"""The Kubernetes client of the user-facing verbs (``herl status``, ``herl logs``, ``herl train --submit``).

They run as the *user*, with kubectl's conventions: ``KUBECONFIG`` (a list of files is merged) or
``~/.kube/config``, ``--kubeconfig``, ``--context``, and the context's namespace unless ``--namespace``
says otherwise; in a pod without a kubeconfig, the in-cluster service account. Loading is the official
client's (``kubernetes.config``): contexts, exec plugins and token refresh come with it.

Every expected failure (no credentials, an unreachable apiserver, 403, 404, the CRD missing) becomes one
:class:`~herl.errors.UserError` line naming what was asked and what to do, never a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from herl.api.model import API_GROUP, API_VERSION, PLURAL
from herl.errors import UserError

#: exit code when the asked-for object does not exist (kubectl uses 1 as well)
NOT_FOUND = 1


@dataclass(frozen=True)
class UserClient:
    """An ``ApiClient`` plus the namespace the user's context defaults to."""

    api: Any
    namespace: str
    context: str | None


def load_client(context: str | None = None, kubeconfig: str | None = None) -> UserClient:
    """The user's client and default namespace (``UserError`` when there are no usable credentials)."""
    try:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException
    except ModuleNotFoundError as exc:
        raise UserError(
            f"this command talks to Kubernetes and needs the {exc.name!r} package "
            "(pip install 'herl[operator]')"
        ) from None
    namespace, ctx_name = "default", context
    where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
        chosen = active if context is None else next((c for c in contexts if c["name"] == context), None)
        if chosen is None:
            names = ", ".join(sorted(c["name"] for c in contexts)) or "none"
            raise UserError(f"--context {context!r}: no such context in {where} (known: {names})")
        ctx_name = chosen["name"]
        namespace = (chosen.get("context") or {}).get("namespace") or "default"
        api = config.new_client_from_config(config_file=kubeconfig, context=ctx_name)
    except (ConfigException, OSError) as exc:
        if context is not None or kubeconfig is not None:
            raise UserError(f"cannot load Kubernetes credentials from {where}: {exc}") from None
        try:  # no kubeconfig at all: inside a pod, use its service account (as kubectl does)
            config.load_incluster_config()
        except ConfigException:
            raise UserError(
                f"no Kubernetes credentials: no kubeconfig at {where} ({exc}) and not inside a cluster; "
                "set KUBECONFIG or pass --kubeconfig"
            ) from None
        api = client.ApiClient()
        try:
            with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as fh:
                namespace = fh.read().strip() or "default"
        except OSError:
            pass
    return UserClient(api=api, namespace=namespace, context=ctx_name)


def api_error(exc: Exception, what: str, not_found: str = "not found") -> UserError:
    """One line for a failed API call: 404 names the object, 403 the permission, others the status.
    Exit code 1 for all of them, as kubectl."""
    status = getattr(exc, "status", None)
    if status == 404:
        msg = f"{what}: {not_found}"
    elif status == 403:
        msg = f"{what}: forbidden for your credentials ({_reason(exc)})"
    elif status == 401:
        msg = f"{what}: unauthorized (the API server refused your credentials; log in again)"
    elif status:
        msg = f"{what}: the API server answered {status} {_reason(exc)}"
    else:
        msg = f"{what}: cannot reach the Kubernetes API server ({type(exc).__name__}: {exc})"
    return UserError(msg, exit_code=NOT_FOUND)


def _reason(exc: Exception) -> str:
    import json

    body = getattr(exc, "body", None)
    try:
        message = json.loads(body).get("message") if body else None
    except (ValueError, AttributeError):
        message = None
    return str(message or getattr(exc, "reason", "") or exc)


def call(fn: Any, what: str, *args: Any, not_found: str = "not found", **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` with :func:`api_error` for API and connection failures."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return fn(*args, **kwargs)
    except (ApiException, HTTPError, OSError) as exc:
        raise api_error(exc, what, not_found) from None


def get_herljob(uc: UserClient, namespace: str, name: str) -> dict[str, Any]:
    from kubernetes import client

    api = client.CustomObjectsApi(uc.api)
    return call(
        api.get_namespaced_custom_object,
        f"HeRLJob {name!r} in namespace {namespace!r}",
        API_GROUP,
        API_VERSION,
        namespace,
        PLURAL,
        name,
    )


def list_herljobs(uc: UserClient, namespace: str | None) -> list[dict[str, Any]]:
    """HeRLJobs of ``namespace`` (all namespaces when None), sorted by namespace and name."""
    from kubernetes import client

    api = client.CustomObjectsApi(uc.api)
    where = f"namespace {namespace!r}" if namespace else "all namespaces"
    what = f"HeRLJobs in {where}"
    missing = f"the HeRLJob CRD ({PLURAL}.{API_GROUP}) is not installed in this cluster (docs/install.md)"
    if namespace:
        out = call(
            api.list_namespaced_custom_object,
            what,
            API_GROUP,
            API_VERSION,
            namespace,
            PLURAL,
            not_found=missing,
        )
    else:
        out = call(api.list_cluster_custom_object, what, API_GROUP, API_VERSION, PLURAL, not_found=missing)
    items = out.get("items") or []
    return sorted(items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
