"""``submit(path)``: validate a HeRLJob file and create or update it in the cluster.

Used by ``herl train --submit``. Runs as the *user* (their kubeconfig), not as the operator, so it
is not part of the operator's RBAC table. Uses the official client: a one-shot synchronous call
needs no event loop, and the user's kubeconfig handling (contexts, exec plugins) comes for free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from herl.api.model import API_GROUP, API_VERSION, PLURAL
from herl.api.validate import load_documents, load_job
from herl.errors import UserError


def submit(
    path: str | Path, namespace: str | None = None, context: str | None = None, *, api_client: Any = None
) -> dict[str, Any]:
    """Create the HeRLJob (or merge-patch its spec if it exists); returns the stored object."""
    job = load_job(path)
    docs, _ = load_documents(Path(path))
    doc = dict(docs[0])
    default_ns = "default"
    if api_client is None:
        # The user's kubeconfig conventions, shared with `herl status` / `herl logs`.
        from herl_operator.userclient import load_client

        uc = load_client(context)
        api_client, default_ns = uc.api, uc.namespace
    ns = namespace or job.metadata.namespace or default_ns
    doc["metadata"] = {**doc.get("metadata", {}), "namespace": ns}
    doc.pop("status", None)

    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.CustomObjectsApi(api_client)
    name = job.metadata.name
    try:
        return api.create_namespaced_custom_object(API_GROUP, API_VERSION, ns, PLURAL, doc)
    except ApiException as exc:
        if exc.status != 409:
            raise UserError(f"could not create HeRLJob {ns}/{name}: {exc.status} {exc.reason}") from exc
    try:
        return api.patch_namespaced_custom_object(
            API_GROUP, API_VERSION, ns, PLURAL, name, {"spec": doc.get("spec") or {}}
        )
    except ApiException as exc:
        raise UserError(f"could not update HeRLJob {ns}/{name}: {exc.status} {exc.reason}") from exc
