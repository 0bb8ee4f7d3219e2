"""A validating admission webhook that refuses our RayJob creates and changes (a policy engine, a
quota webhook): the HeRLJob still gets a status, a ChildrenSynced=False condition and an Event naming
the webhook's reason, and the operator neither crashes nor hammers the apiserver."""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest
from devcluster import DevCluster, free_port
from e2e_support import JSON, Kube, OperatorProcess, condition, herljob, wait_for
from herl_operator import builders as b

DENIED_CREATE, DENIED_PATCH = "denied-create", "denied-patch"
MESSAGE = "refused by the e2e policy: RayJobs of this team need approval"


class _Handler(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str]]] = []

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        req = review["request"]
        obj = req.get("object") or {}
        job = ((obj.get("metadata") or {}).get("labels") or {}).get(b.LABEL_JOB)
        op = req["operation"]
        self.seen.append((op, job or ""))
        deny = (op == "CREATE" and job == DENIED_CREATE) or (op == "UPDATE" and job == DENIED_PATCH)
        resp: JSON = {"uid": req["uid"], "allowed": not deny}
        if deny:
            resp["status"] = {"code": 403, "reason": "Forbidden", "message": MESSAGE}
        body = json.dumps(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def denying_webhook(cluster: DevCluster, kube: Kube, namespace: str) -> Iterator[list[tuple[str, str]]]:
    """An HTTPS webhook on 127.0.0.1 (the apiserver's own serving pair names 127.0.0.1 and is signed by
    the test CA), registered by URL for RayJobs in this test's namespace only."""
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cluster.pki.serving_cert, cluster.pki.serving_key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.seen = []
    name = f"deny-rayjobs-{namespace}"
    kube.apply(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [
                {
                    "name": "deny.herl-e2e.test",
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{port}/validate",
                        "caBundle": base64.b64encode(cluster.pki.ca.read_bytes()).decode(),
                    },
                    "rules": [
                        {
                            "apiGroups": ["ray.io"],
                            "apiVersions": ["v1"],
                            "resources": ["rayjobs"],
                            "operations": ["CREATE", "UPDATE"],
                        }
                    ],
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "failurePolicy": "Fail",
                    "timeoutSeconds": 5,
                }
            ],
        }
    )
    yield _Handler.seen
    kube.run("delete", "validatingwebhookconfiguration", name, "--ignore-not-found")
    server.shutdown()


def test_a_refused_create_gives_status_condition_and_event(
    kube: Kube, operator: OperatorProcess, namespace: str, denying_webhook: list[tuple[str, str]]
) -> None:
    kube.apply(herljob(DENIED_CREATE, namespace))

    def refused() -> JSON | None:
        cur = kube.get("herljob", DENIED_CREATE, namespace=namespace) or {}
        return cur if condition(cur, "ChildrenSynced").get("reason") == "RayJobCreateRefused" else None

    cur = wait_for("ChildrenSynced=False with RayJobCreateRefused", refused, 60)
    cond = condition(cur, "ChildrenSynced")
    assert cond["status"] == "False" and MESSAGE in cond["message"]
    assert cur["status"]["phase"] == "Pending"
    events = wait_for(
        "the Event",
        lambda: [e for e in kube.events(namespace, DENIED_CREATE) if e["reason"] == "RayJobCreateRefused"],
        30,
    )
    assert MESSAGE in events[0]["message"] and events[0]["type"] == "Warning"
    assert kube.get("rayjob", b.rayjob_name(DENIED_CREATE), namespace=namespace) is None
    # Backed off, not hammering: a handful of creates over several resync periods (2 s here).
    creates = sum(1 for op, job in denying_webhook if op == "CREATE" and job == DENIED_CREATE)
    assert 1 <= creates <= 6, creates
    assert operator.proc is not None and operator.proc.poll() is None


def test_a_refused_patch_keeps_the_status_updating(
    kube: Kube, operator: OperatorProcess, namespace: str, denying_webhook: list[tuple[str, str]]
) -> None:
    kube.apply(herljob(DENIED_PATCH, namespace))
    wait_for(
        "the RayJob (creates are allowed)",
        lambda: kube.get("rayjob", b.rayjob_name(DENIED_PATCH), namespace=namespace),
        60,
    )
    kube.merge_patch("herljob", DENIED_PATCH, namespace, {"spec": {"runPolicy": {"backoffLimit": 7}}})

    def refused() -> JSON | None:
        cur = kube.get("herljob", DENIED_PATCH, namespace=namespace) or {}
        gen = cur.get("metadata", {}).get("generation")
        ok = (
            condition(cur, "ChildrenSynced").get("reason") == "RayJobPatchRefused"
            and cur.get("status", {}).get("observedGeneration") == gen
        )
        return cur if ok else None

    cur = wait_for("RayJobPatchRefused under the new generation", refused, 60)
    assert MESSAGE in condition(cur, "ChildrenSynced")["message"]
    assert cur["status"]["rayJobName"] == b.rayjob_name(DENIED_PATCH)
    assert [e for e in kube.events(namespace, DENIED_PATCH) if e["reason"] == "RayJobPatchRefused"]
