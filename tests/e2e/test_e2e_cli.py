"""``herl status`` and ``herl logs`` on the real control plane, as a user runs them: their own process, a
kubeconfig with contexts and a default namespace, the real apiserver's answers (404, 403, the service
proxy), and the status the real operator wrote from the real KubeRay's RayJob.

kwok fakes every pod, so no Ray dashboard answers here: ``herl logs`` on a provisioned job goes through
the apiserver's service proxy to the head Service (and fails there for real), then to the head pod's log
(which kwok does not serve), and reports both. The dashboard's answer itself is tested against a fake
apiserver in tests/operator/test_user_verbs.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from cli_support import run_herl, user_kubeconfig
from devcluster import DevCluster
from e2e_support import Kube, OperatorProcess, herljob, wait_for


def _phase(kube: Kube, namespace: str, name: str, phase: str) -> dict:
    return wait_for(
        f"{name} in phase {phase}",
        lambda: (s := kube.status(namespace, name)).get("phase") == phase and s,
        120,
    )


def test_status_lists_and_details_jobs_with_kubectl_conventions(
    cluster: DevCluster, kube: Kube, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    kube.apply(herljob("held", namespace, runPolicy={"suspend": True}))
    kube.apply(herljob("runs", namespace))
    held = _phase(kube, namespace, "held", "Suspended")
    wait_for("runs to have a RayJob", lambda: kube.status(namespace, "runs").get("rayJobName"), 120)

    # The context's namespace is the default, as with kubectl; -n and -A override it.
    kc = user_kubeconfig(cluster, tmp_path / "kubeconfig", namespace=namespace, extra_context="elsewhere")
    listed = run_herl(kc, "status")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "PHASE", "STEP"]
    rows = {ln.split()[0]: ln.split() for ln in lines[1:]}
    assert set(rows) == {"held", "runs"}
    assert rows["held"][1] == "Suspended" and rows["held"][5] == str(held.get("attemptCount", 0))

    other = run_herl(kc, "status", "--context", "elsewhere")  # namespace default: none there
    assert other.returncode == 0 and other.stdout == "" and "No HeRLJobs in namespace default" in other.stderr
    explicit = run_herl(kc, "status", "--context", "elsewhere", "-n", namespace).stdout.splitlines()
    assert sorted(ln.split()[0] for ln in explicit[1:]) == ["held", "runs"]  # (ages and phases move on)
    everywhere = run_herl(kc, "status", "-A")
    assert everywhere.returncode == 0 and everywhere.stdout.splitlines()[0].startswith("NAMESPACE")
    mine = [ln.split() for ln in everywhere.stdout.splitlines() if ln.startswith(namespace + " ")]
    assert sorted(r[1] for r in mine) == ["held", "runs"]

    # One job in detail: the operator's status, as written.
    detail = run_herl(kc, "status", "held")
    assert detail.returncode == 0, detail.stderr
    assert f"HeRLJob {namespace}/held" in detail.stdout and "phase:       Suspended" in detail.stdout
    assert "checkpoint:  none reported yet" in detail.stdout
    for c in held["conditions"]:
        assert any(ln.split()[:2] == [c["type"], c["status"]] for ln in detail.stdout.splitlines()), c
    as_json = json.loads(run_herl(kc, "status", "held", "-o", "json").stdout)
    assert as_json["phase"] == "Suspended" and as_json["conditions"] == held["conditions"]

    # Expected errors: one line each, the right exit code, never a traceback.
    missing = run_herl(kc, "status", "nope")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert f"HeRLJob 'nope' in namespace '{namespace}': not found" in missing.stderr
    bad_ctx = run_herl(kc, "status", "--context", "nope")
    assert bad_ctx.returncode == 2 and "no such context" in bad_ctx.stderr and "elsewhere" in bad_ctx.stderr
    nothing = run_herl(tmp_path / "absent", "status")
    assert nothing.returncode == 2 and "no Kubernetes credentials" in nothing.stderr


def test_status_as_a_user_without_rights_is_forbidden(
    cluster: DevCluster, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    kube.run("create", "serviceaccount", "nobody", "-n", namespace)
    token = kube.run("create", "token", "nobody", "-n", namespace).stdout.strip()
    kc = user_kubeconfig(cluster, tmp_path / "kc", namespace=namespace, token=token, user="nobody")
    proc = run_herl(kc, "status")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"HeRLJobs in namespace '{namespace}': forbidden" in proc.stderr and "nobody" in proc.stderr


def test_logs_before_the_job_starts_says_so(
    cluster: DevCluster, kube: Kube, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    kube.apply(herljob("later", namespace, runPolicy={"suspend": True}))
    _phase(kube, namespace, "later", "Suspended")
    kc = user_kubeconfig(cluster, tmp_path / "kubeconfig", namespace=namespace)
    proc = run_herl(kc, "logs", "later")
    assert proc.returncode == 3 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert f"HeRLJob {namespace}/later has not started yet: phase Suspended" in proc.stderr
    assert "herl status later" in proc.stderr
    gone = run_herl(kc, "logs", "nope")
    assert gone.returncode == 1 and f"HeRLJob 'nope' in namespace '{namespace}': not found" in gone.stderr


def test_logs_of_a_provisioned_job_go_through_the_service_proxy(
    cluster: DevCluster, kube: Kube, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    """The RayJob names the cluster and the submission id; the dashboard request really goes through the
    apiserver's service proxy to the head Service (no endpoint answers under kwok), then the head pod's
    log is tried (kwok serves none): a clear 'not serving logs yet' naming both, exit 3."""
    kube.apply(herljob("prov", namespace))
    rj = wait_for(
        "the RayJob's cluster and submission id",
        lambda: (
            (r := kube.get("rayjob", "prov", namespace=namespace))
            and (r.get("status") or {}).get("jobId")
            and (r.get("status") or {}).get("rayClusterName")
            and r
        ),
        120,
    )
    st = rj["status"]
    wait_for(
        "the head pod",
        lambda: kube.items(
            "pods",
            namespace=namespace,
            selector=f"ray.io/cluster={st['rayClusterName']},ray.io/node-type=head",
        ),
        60,
    )
    kc = user_kubeconfig(cluster, tmp_path / "kubeconfig", namespace=namespace)
    proc = run_herl(kc, "logs", "prov")
    assert "Traceback" not in proc.stderr
    assert f"Ray job {st['jobId']} on cluster {st['rayClusterName']}" in proc.stderr
    assert proc.returncode == 3, proc.stderr
    assert f"the Ray cluster {st['rayClusterName']} is not serving logs yet" in proc.stderr
    assert "Ray dashboard: HTTP" in proc.stderr and "head pod:" in proc.stderr
