"""The operator on a real control plane, as the chart's ServiceAccount: HeRLJob → RayJob (real owner
reference) → KubeRay's RayCluster → the real scheduler places head and GPU workers → status; garbage
collection on delete; RBAC exactly the table."""

from __future__ import annotations

import re
import time

from devcluster import CPU_NODES, GPU_NODES
from e2e_support import JSON, OPERATOR_NAMESPACE, Kube, OperatorProcess, condition, herljob, wait_for
from herl_operator import builders as b
from herl_operator import rbac


def rayjob_of(kube: Kube, namespace: str, name: str) -> JSON | None:
    return kube.get("rayjob", b.rayjob_name(name), namespace=namespace)


def cluster_pods(kube: Kube, namespace: str, kind: str) -> list[JSON]:
    return kube.items("pods", namespace=namespace, selector=f"ray.io/node-type={kind}")


def test_rbac_of_the_chart_is_exactly_the_table(kube: Kube, operator: OperatorProcess) -> None:
    """The real RBAC authorizer answers for the chart's ServiceAccount: every verb of the table is
    allowed, and verbs the operator must not have are denied."""
    who = f"--as=system:serviceaccount:{OPERATOR_NAMESPACE}:{operator.service_account}"
    for rule in rbac.RULES:
        plural, _, sub = rule.resource.partition("/")
        resource = f"{plural}.{rule.api_group}" if rule.api_group else plural
        extra = [f"--subresource={sub}"] if sub else []
        for verb in rule.verbs:
            proc = kube.run("auth", "can-i", verb, resource, *extra, who, "-A", check=False)
            assert proc.stdout.strip() == "yes", (
                f"{verb} {rule.resource}: {proc.stdout.strip()} {proc.stderr.strip()}"
            )
    for verb, resource in (
        ("delete", "herljobs.herl.dev"),
        ("update", "herljobs.herl.dev"),
        ("get", "secrets"),
        ("create", "pods"),
        ("delete", "rayclusters.ray.io"),
    ):
        proc = kube.run("auth", "can-i", verb, resource, who, "-A", check=False)
        assert proc.stdout.strip() == "no", f"{verb} {resource} should be denied"


def test_herljob_becomes_a_scheduled_ray_cluster_with_status(
    kube: Kube, operator: OperatorProcess, namespace: str
) -> None:
    kube.apply(herljob("train-a", namespace))
    job = kube.get("herljob", "train-a", namespace=namespace)
    assert job is not None
    uid = job["metadata"]["uid"]

    rj = wait_for("the RayJob", lambda: rayjob_of(kube, namespace, "train-a"), 60)
    refs = rj["metadata"]["ownerReferences"]
    assert refs == [
        {
            "apiVersion": "herl.dev/v1alpha1",
            "kind": "HeRLJob",
            "name": "train-a",
            "uid": uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    cm = kube.get("configmap", b.configmap_name("train-a"), namespace=namespace)
    assert cm is not None and cm["metadata"]["ownerReferences"][0]["uid"] == uid

    # KubeRay (the real one) makes the RayCluster, owned by the RayJob.
    rc = wait_for("KubeRay's RayCluster", lambda: kube.items("rayclusters", namespace=namespace), 60)[0]
    assert rc["metadata"]["ownerReferences"][0]["kind"] == "RayJob"
    # The head Service carries the dashboard port (the head container declares it beside ours).
    svc = wait_for(
        "the head Service",
        lambda: kube.items("services", namespace=namespace, selector="ray.io/node-type=head"),
        60,
    )[0]
    ports = {p["name"]: p["port"] for p in svc["spec"]["ports"]}
    assert ports.get("dashboard") == 8265 and ports.get("herl-metrics") == 9400, ports

    # The real scheduler: head on the CPU node (no toleration), two 1-GPU workers on the tainted
    # H100 nodes (selector + toleration + nvidia.com/gpu request); kwok runs them.
    def placed() -> bool:
        head, workers = cluster_pods(kube, namespace, "head"), cluster_pods(kube, namespace, "worker")
        return (
            len(head) == 1
            and len(workers) == 2
            and all(p["status"].get("phase") == "Running" for p in head + workers)
        )

    wait_for("head and workers Running", placed, 90)
    head, workers = cluster_pods(kube, namespace, "head"), cluster_pods(kube, namespace, "worker")
    assert head[0]["spec"]["nodeName"] in CPU_NODES
    assert all(w["spec"]["nodeName"] in GPU_NODES for w in workers)
    assert all(w["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1" for w in workers)

    # Status through /status, with observedGeneration on the status and on every condition.
    def reported() -> JSON | None:
        cur = kube.get("herljob", "train-a", namespace=namespace) or {}
        st = cur.get("status") or {}
        return cur if st.get("phase") not in (None, "Pending") and st.get("rayJobName") else None

    cur = wait_for("a status past Pending", reported, 60)
    gen = cur["metadata"]["generation"]
    assert cur["status"]["observedGeneration"] == gen
    assert all(c["observedGeneration"] == gen for c in cur["status"]["conditions"])
    assert condition(cur, "ChildrenSynced")["status"] == "True"

    # kubectl wait on our conditions, and the printer columns.
    kube.run("wait", "--for=condition=ChildrenSynced", "herljob/train-a", "-n", namespace, "--timeout=30s")
    table = kube.run("get", "herl", "-n", namespace).stdout
    header, row = table.splitlines()[:2]
    assert "PHASE" in header and "STEP" in header and "REWARD" in header, header
    assert row.startswith("train-a") and cur["status"]["phase"] in row

    # A safe spec edit is applied to the RayJob and observed under the new generation.
    kube.merge_patch("herljob", "train-a", namespace, {"spec": {"runPolicy": {"backoffLimit": 5}}})
    wait_for(
        "backoffLimit applied to the RayJob",
        lambda: (rayjob_of(kube, namespace, "train-a") or {}).get("spec", {}).get("backoffLimit") == 5,
        30,
    )
    wait_for(
        "observedGeneration to follow",
        lambda: (
            (kube.get("herljob", "train-a", namespace=namespace) or {})
            .get("status", {})
            .get("observedGeneration")
            == gen + 1
        ),
        30,
    )
    # Running as the chart's ServiceAccount, no call was denied by RBAC ("User ... cannot VERB resource").
    denied = re.findall(r'cannot \w+ resource "[^"]+"[^"]*"[^"]*"', operator.log_text())
    assert not denied, denied


def _wait_running_cluster(kube: Kube, namespace: str, name: str) -> None:
    wait_for("the RayJob", lambda: rayjob_of(kube, namespace, name), 60)
    wait_for("the RayCluster's pods", lambda: len(cluster_pods(kube, namespace, "worker")) == 2, 90)


def test_deleting_the_herljob_lets_the_garbage_collector_remove_everything(
    kube: Kube, operator: OperatorProcess, namespace: str
) -> None:
    kube.apply(herljob("gc-me", namespace))
    _wait_running_cluster(kube, namespace, "gc-me")
    operator.stop()  # the garbage collector alone, through our owner references, must clean up
    try:
        kube.run("delete", "herljob", "gc-me", "-n", namespace, "--wait=false")

        def gone() -> bool:
            return (
                not any(kube.items(kind, namespace=namespace) for kind in ("rayjobs", "rayclusters"))
                and kube.get("configmap", b.configmap_name("gc-me"), namespace=namespace) is None
                and not kube.items("pods", namespace=namespace, selector="ray.io/cluster")
            )

        wait_for("RayJob, ConfigMap, RayCluster and pods to be collected", gone, 120)
    finally:
        operator.start()


def test_operator_killed_between_configmap_and_rayjob_converges_without_duplicates(
    kube: Kube, operator: OperatorProcess, namespace: str
) -> None:
    """The state a crash leaves: the ConfigMap exists (made by the operator, with the owner's uid) and
    no RayJob. The restarted operator adopts the ConfigMap (409 → ours) and creates one RayJob."""
    from herl.api.validate import validate_document

    operator.kill()
    try:
        doc = herljob("crashy", namespace)
        kube.apply(doc)
        uid = kube.get("herljob", "crashy", namespace=namespace)["metadata"]["uid"]
        job, _ = validate_document(doc)
        assert job is not None
        kube.apply(b.build_configmap(job, b.Context(namespace=namespace, uid=uid), doc["spec"]))
        cm_uid = kube.get("configmap", b.configmap_name("crashy"), namespace=namespace)["metadata"]["uid"]
    finally:
        operator.start()
    wait_for("the RayJob after the restart", lambda: rayjob_of(kube, namespace, "crashy"), 60)
    assert len(kube.items("rayjobs", namespace=namespace)) == 1
    assert kube.get("configmap", b.configmap_name("crashy"), namespace=namespace)["metadata"]["uid"] == cm_uid
    cur = wait_for(
        "a status", lambda: (kube.get("herljob", "crashy", namespace=namespace) or {}).get("status"), 30
    )
    assert condition({"status": cur}, "Failed").get("status") == "False"


def test_a_rayjob_that_is_not_ours_is_a_conflict_not_an_adoption(
    kube: Kube, operator: OperatorProcess, namespace: str
) -> None:
    foreign = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "taken", "namespace": namespace},
        "spec": {
            "entrypoint": "echo not ours",
            "suspend": True,
            "rayClusterSpec": {
                "headGroupSpec": {
                    "rayStartParams": {},
                    "template": {"spec": {"containers": [{"name": "h", "image": "x"}]}},
                }
            },
        },
    }
    kube.apply(foreign)
    kube.apply(herljob("taken", namespace))

    def failed() -> JSON | None:
        cur = kube.get("herljob", "taken", namespace=namespace) or {}
        return cur if condition(cur, "Failed").get("reason") == "RayJobConflict" else None

    cur = wait_for("RayJobConflict", failed, 60)
    assert cur["status"]["phase"] == "Failed"
    rj = kube.get("rayjob", "taken", namespace=namespace)
    assert rj["spec"]["entrypoint"] == "echo not ours" and not rj["metadata"].get("ownerReferences")


def test_watches_resume_after_the_apiserver_restarts(
    kube: Kube, operator: OperatorProcess, namespace: str
) -> None:
    kube.apply(herljob("before", namespace))
    wait_for("the first RayJob", lambda: rayjob_of(kube, namespace, "before"), 60)
    kube.dc.restart_apiserver()
    kube.apply(herljob("after", namespace))
    wait_for(
        "a RayJob for a HeRLJob made after the restart", lambda: rayjob_of(kube, namespace, "after"), 120
    )
    kube.merge_patch("herljob", "before", namespace, {"spec": {"runPolicy": {"backoffLimit": 4}}})
    wait_for(
        "an edit after the restart to be applied",
        lambda: (rayjob_of(kube, namespace, "before") or {}).get("spec", {}).get("backoffLimit") == 4,
        60,
    )
    assert operator.proc is not None and operator.proc.poll() is None


def test_operator_follows_a_revoked_token(kube: Kube, operator: OperatorProcess, namespace: str) -> None:
    """A token bound to a Secret dies with the Secret. After the kubeconfig is rewritten with a new
    token and the old one revoked, the operator (same process) keeps creating RayJobs."""
    for secret in ("op-token-1", "op-token-2"):
        kube.run("create", "secret", "generic", secret, "-n", OPERATOR_NAMESPACE, check=False)
    operator.stop()
    operator.write_kubeconfig(operator.token("op-token-1"))
    operator.start()
    kube.apply(herljob("with-first-token", namespace))
    wait_for("a RayJob with the first token", lambda: rayjob_of(kube, namespace, "with-first-token"), 60)

    new_token = operator.token("op-token-2")
    operator.write_kubeconfig(new_token)
    kube.run("delete", "secret", "op-token-1", "-n", OPERATOR_NAMESPACE)
    kube.apply(herljob("with-second-token", namespace))
    wait_for("a RayJob after the revocation", lambda: rayjob_of(kube, namespace, "with-second-token"), 90)
    assert operator.proc is not None and operator.proc.poll() is None
    assert new_token not in operator.log_text(), "a token reached the log"


def test_kuberay_retries_are_mirrored_and_end_in_a_classified_failure(
    kube: Kube, operator: OperatorProcess, namespace: str
) -> None:
    """A real retry, driven by the real KubeRay: under kwok the K8sJobMode submitter pod "completes"
    without submitting anything, so KubeRay fails each attempt (the Ray job never reaches a terminal
    state within its 30 s grace period) and retries with a new cluster up to backoffLimit. The
    operator mirrors every attempt, ends Failed with KubeRay's reason, and starts nothing after."""
    kube.apply(herljob("retried", namespace, runPolicy={"backoffLimit": 1}))

    def failed() -> JSON | None:
        cur = kube.get("herljob", "retried", namespace=namespace) or {}
        return cur if (cur.get("status") or {}).get("phase") == "Failed" else None

    cur = wait_for("the job to fail after its retry", failed, 240)
    st = cur["status"]
    assert [a["result"] for a in st["attempts"]] == ["Retried", "Failed"], st["attempts"]
    assert st["attemptCount"] == 2 and st["gpuHours"] > 0
    assert len({a["rayClusterName"] for a in st["attempts"]}) == 2  # a new cluster per attempt
    reason = condition(cur, "Failed")["reason"]
    assert reason == st["attempts"][-1]["reason"] and reason.isidentifier(), reason
    rj = rayjob_of(kube, namespace, "retried")
    assert rj is not None and rj["status"]["jobDeploymentStatus"] == "Failed" and rj["status"]["failed"] == 2
    # No crash loop: the terminal job stays as it is through several resync passes (2 s each).
    uid = rj["metadata"]["uid"]
    time.sleep(6)
    again = kube.get("herljob", "retried", namespace=namespace)
    assert again["status"]["attemptCount"] == 2 and again["status"]["phase"] == "Failed"
    assert rayjob_of(kube, namespace, "retried")["metadata"]["uid"] == uid
    # The phases users saw (our Events): never back to Pending between attempts.
    moves = [e["message"].split(":")[0] for e in kube.events(namespace, "retried") if "→" in e["message"]]
    assert any("→ Retrying" in m for m in moves) and not any("Retrying → Pending" in m for m in moves), moves


def test_user_suspend_and_resume_through_the_real_kuberay(
    kube: Kube, operator: OperatorProcess, namespace: str
) -> None:
    """runPolicy.suspend → the RayJob is suspended → KubeRay deletes the cluster (Suspending →
    Suspended) → the attempt closes as Suspended; resuming opens a new attempt on a new cluster."""
    kube.apply(herljob("pausable", namespace, runPolicy={"backoffLimit": 5}))
    wait_for("a running attempt", lambda: kube.status(namespace, "pausable").get("attemptCount") == 1, 120)
    kube.merge_patch("herljob", "pausable", namespace, {"spec": {"runPolicy": {"suspend": True}}})
    st = wait_for(
        "phase Suspended",
        lambda: (s := kube.status(namespace, "pausable")).get("phase") == "Suspended" and s,
        90,
    )
    assert condition({"status": st}, "Suspended")["reason"] == "SuspendedByUser"
    assert st["attempts"][0]["result"] in ("Suspended", "Retried")
    wait_for("KubeRay to delete the cluster", lambda: not kube.items("rayclusters", namespace=namespace), 60)
    rj = rayjob_of(kube, namespace, "pausable")
    assert rj["spec"]["suspend"] is True and rj["status"]["jobDeploymentStatus"] == "Suspended"

    kube.merge_patch("herljob", "pausable", namespace, {"spec": {"runPolicy": {"suspend": False}}})
    st = wait_for(
        "a new attempt after the resume",
        lambda: (s := kube.status(namespace, "pausable")).get("attemptCount", 0) >= 2 and s,
        90,
    )
    assert st["attempts"][-1].get("rayClusterName") != st["attempts"][0].get("rayClusterName")
    assert rayjob_of(kube, namespace, "pausable")["spec"]["suspend"] is False


def test_total_budget_stops_the_job_for_real(kube: Kube, operator: OperatorProcess, namespace: str) -> None:
    """totalBudgetSeconds spans attempts; past it the operator deletes the RayJob (KubeRay then removes
    the cluster and its pods) and the job ends Failed/BudgetExceeded, for good."""
    kube.apply(herljob("budgeted", namespace, runPolicy={"backoffLimit": 5, "totalBudgetSeconds": 15}))

    def over() -> JSON | None:
        st = kube.status(namespace, "budgeted")
        return st if condition({"status": st}, "Failed").get("reason") == "BudgetExceeded" else None

    st = wait_for("BudgetExceeded", over, 90)
    assert st["phase"] == "Failed" and st["attempts"][-1]["result"] == "Failed"
    wait_for("the RayJob to be deleted", lambda: rayjob_of(kube, namespace, "budgeted") is None, 60)
    wait_for(
        "KubeRay to remove the cluster's pods",
        lambda: not kube.items("pods", namespace=namespace, selector="ray.io/cluster"),
        90,
    )
    time.sleep(5)  # several resync passes: nothing is created again
    assert rayjob_of(kube, namespace, "budgeted") is None
    assert kube.status(namespace, "budgeted")["phase"] == "Failed"
