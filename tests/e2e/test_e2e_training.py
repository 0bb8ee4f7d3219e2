"""The whole path, for real: kubectl apply a HeRLJob → RayJob → RayCluster → a real Ray head (the test
kubelet runs KubeRay's own ``ray start --head``) → KubeRay submits our entrypoint over HTTP → the local
engine trains → the operator reads the trainer's /metrics through the apiserver → a real Prometheus
scrapes the same endpoint → Succeeded. Then preemption and resume, and a veRL job failing for a
classified reason. One test at a time trains (two cores)."""

from __future__ import annotations

import ipaddress
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from devcluster import TEST_KUBELET_NODE, DevCluster
from e2e_support import Kube, OperatorProcess, condition, herljob, kueue_queue, wait_for
from training_support import (
    GPU_TOLERATION,
    REAL_HEAD,
    checkpoint_at_least,
    checkpoint_claim,
    checkpoint_folder,
    local_job,
    metrics_steps,
    resume_points,
    running_head,
    trainer_pids,
)

from herl.metrics.promserver import PrometheusServer

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="session")
def tiny_model(cluster: DevCluster) -> Iterator[Path]:
    from herl.engine.tiny import build_tiny_model_dir

    model = build_tiny_model_dir(cluster.folder / "models" / "tiny", seed=0)
    # The trainer image runs as a non-root user: the model must be world-readable, as on a shared model
    # disk (safetensors writes its files 0600).
    for path in [model, *model.rglob("*")]:
        path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))
    yield model


def _progress(kube: Kube, namespace: str, name: str) -> dict:
    return kube.status(namespace, name).get("progress") or {}


def test_local_engine_trains_on_a_real_ray_head(
    kube: Kube, operator: OperatorProcess, cluster: DevCluster, namespace: str, tiny_model: Path
) -> None:
    claim, volume = checkpoint_claim(kube, cluster, namespace)
    steps = 12
    kube.apply(local_job("train", namespace, tiny_model, claim, steps))

    head = running_head(kube, namespace)
    ip = ipaddress.ip_address(head["status"]["podIP"])
    assert not ip.is_loopback and not ip.is_link_local, ip  # what the apiserver's proxy accepts
    assert head["spec"]["nodeName"] == TEST_KUBELET_NODE

    # A real Prometheus scrapes the trainer where it runs (the pod IP), while the operator reads the
    # same endpoint through the apiserver's service proxy into status.
    with PrometheusServer([f"http://{ip}:9400/metrics"]) as prom:
        prom.wait_for("herl_training_step > 0", timeout=240)
        wait_for(
            "status.progress.step > 0 (read by the operator)",
            lambda: _progress(kube, namespace, "train").get("step"),
            120,
        )

    kube.wait("herljob/train", namespace, "Succeeded", 300)
    status = kube.status(namespace, "train")
    assert status["phase"] == "Succeeded"
    progress = status["progress"]
    assert progress["step"] == steps and progress["totalSteps"] == steps, progress
    assert "rewardMean" in progress and "hindsightSuccessRate" in progress, progress
    assert status["lastCheckpoint"]["step"] == steps, status.get("lastCheckpoint")
    assert status["lastCheckpoint"]["path"].endswith(f"/checkpoints/step_{steps:06d}"), status[
        "lastCheckpoint"
    ]
    assert [a["result"] for a in status["attempts"]] == ["Succeeded"], status["attempts"]
    line = kube.run("get", "herl", "train", "-n", namespace, "--no-headers").stdout.split()
    # NAME PHASE STEP REWARD ATTEMPTS AGE (Total, HS-Success and GPU-Hours are -o wide columns)
    assert line[1:3] == ["Succeeded", str(steps)], line
    assert float(line[3]) == pytest.approx(progress["rewardMean"], abs=1e-3), line
    uid = kube.get("herljob", "train", namespace=namespace)["metadata"]["uid"]
    assert metrics_steps(checkpoint_folder(volume, namespace, "train", uid)) == list(range(1, steps + 1))


def _kill_trainer_after_checkpoint(kube: Kube, namespace: str, name: str, at_least: int) -> int:
    ckpt = checkpoint_at_least(kube, namespace, name, at_least)
    pids = wait_for("the trainer process", lambda: trainer_pids(namespace), 30)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)  # what an OOM kill or a node loss does to the driver
    return int(ckpt["step"])


def test_a_killed_trainer_is_retried_and_resumes_from_its_checkpoint(
    kube: Kube, operator: OperatorProcess, cluster: DevCluster, namespace: str, tiny_model: Path
) -> None:
    claim, volume = checkpoint_claim(kube, cluster, namespace)
    steps = 30
    kube.apply(local_job("resume", namespace, tiny_model, claim, steps))
    killed_at = _kill_trainer_after_checkpoint(kube, namespace, "resume", 3)

    kube.wait("herljob/resume", namespace, "Succeeded", 400)
    status = kube.status(namespace, "resume")
    results = [a["result"] for a in status["attempts"]]
    assert results == ["Retried", "Succeeded"], status["attempts"]
    assert status["attempts"][0]["reason"] == "AppFailed", status["attempts"][0]
    assert status["progress"]["step"] == steps
    uid = kube.get("herljob", "resume", namespace=namespace)["metadata"]["uid"]
    folder = checkpoint_folder(volume, namespace, "resume", uid)
    # Every step is recorded once, and the second attempt started from a checkpoint, not from step 0.
    assert metrics_steps(folder) == list(range(1, steps + 1))
    log = (folder / "train.log").read_text()
    assert log.count("attempt started") == 2, log[-2000:]
    resumed = resume_points(log)
    assert len(resumed) == 1 and resumed[0] >= killed_at, (resumed, killed_at)


def test_a_deleted_head_pod_is_recreated_and_the_trainer_resumes(
    kube: Kube, operator: OperatorProcess, cluster: DevCluster, namespace: str, tiny_model: Path
) -> None:
    """KubeRay 1.6.1 recreates a deleted head and submits the same Ray job again (HTTPMode): one
    attempt for the operator, and the new trainer continues from the checkpoint on the volume."""
    claim, volume = checkpoint_claim(kube, cluster, namespace)
    steps = 30
    kube.apply(local_job("preempt", namespace, tiny_model, claim, steps))
    checkpoint_at_least(kube, namespace, "preempt", 3)
    first = running_head(kube, namespace)
    kube.run("delete", "pod", first["metadata"]["name"], "-n", namespace, "--grace-period=1", "--wait=false")
    kube.wait("herljob/preempt", namespace, "Succeeded", 400)
    status = kube.status(namespace, "preempt")
    assert status["progress"]["step"] == steps
    uid = kube.get("herljob", "preempt", namespace=namespace)["metadata"]["uid"]
    folder = checkpoint_folder(volume, namespace, "preempt", uid)
    assert metrics_steps(folder) == list(range(1, steps + 1))
    log = (folder / "train.log").read_text()
    assert log.count("attempt started") == 2 and "resumed from" in log, log[-2000:]

    # Deleted and created again under the same name: a new job (new uid) with its own checkpoints;
    # the old folder is kept (retention Retain) and is not resumed from.
    kube.delete("herljob", "preempt", namespace, "--wait=true")
    wait_for("the old RayJob gone", lambda: kube.get("rayjob", "preempt", namespace=namespace) is None, 120)
    kube.apply(local_job("preempt", namespace, tiny_model, claim, 2))
    kube.wait("herljob/preempt", namespace, "Succeeded", 300)
    uid2 = kube.get("herljob", "preempt", namespace=namespace)["metadata"]["uid"]
    assert uid2 != uid
    fresh = checkpoint_folder(volume, namespace, "preempt", uid2)
    assert metrics_steps(fresh) == [1, 2]
    assert "resumed from" not in (fresh / "train.log").read_text()
    assert metrics_steps(folder) == list(range(1, steps + 1))  # the old job's record is untouched


def test_a_verl_job_without_gpus_fails_with_a_classified_reason(
    kube: Kube, operator: OperatorProcess, namespace: str
) -> None:
    """veRL's path as far as it goes without a GPU: the RayJob is submitted to the real head, the
    entrypoint starts, finds no GPU in the Ray cluster (kwok's GPU workers never join Ray) and stops
    with GPUsUnavailable; KubeRay retries once; status says why, attempts and GPU time are counted."""
    job = herljob(
        "verl",
        namespace,
        resources={"workers": 1, "head": REAL_HEAD, "tolerations": [GPU_TOLERATION]},
        runPolicy={"submissionMode": "HTTPMode", "backoffLimit": 1},
        env=[{"name": "HERL_GPU_WAIT_SECONDS", "value": "5"}],
    )
    kube.apply(job)
    kube.wait("herljob/verl", namespace, "Failed", 400)
    status = kube.status(namespace, "verl")
    failed = condition(kube.get("herljob", "verl", namespace=namespace), "Failed")
    assert failed["reason"] == "GPUsUnavailable", failed
    assert "needs 1 GPUs" in failed["message"] and "spec.engine local" in failed["message"], failed
    assert [a["result"] for a in status["attempts"]] == ["Retried", "Failed"], status["attempts"]
    assert all(a.get("reason") == "GPUsUnavailable" for a in status["attempts"]), status["attempts"]
    assert all(a["gpuSeconds"] > 0 for a in status["attempts"]), status["attempts"]
    assert status["gpuHours"] * 3600 == pytest.approx(
        sum(a["gpuSeconds"] for a in status["attempts"]), rel=0.01
    )


def test_kueue_preempts_a_training_job_which_later_resumes_from_its_checkpoint(
    kube: Kube, operator: OperatorProcess, cluster: DevCluster, namespace: str, tiny_model: Path
) -> None:
    """Real Kueue, real heads: a high-priority job preempts a training low-priority one (Kueue
    suspends its RayJob, KubeRay deletes the cluster, the trainer dies), trains itself, and once it is
    done the low one is re-admitted on a new cluster and continues from its last checkpoint."""
    # Room for exactly one 1-CPU head.
    cq = kueue_queue(kube, namespace, "heads", {"cpu": REAL_HEAD["cpu"], "memory": "16Gi"})
    try:
        claim, volume = checkpoint_claim(kube, cluster, namespace)
        steps = 40
        kube.apply(
            local_job(
                "low", namespace, tiny_model, claim, steps, queue={"name": "team", "priorityClass": "low"}
            )
        )
        ckpt = checkpoint_at_least(kube, namespace, "low", 3)
        kube.apply(
            local_job("high", namespace, tiny_model, None, 2, queue={"name": "team", "priorityClass": "high"})
        )
        st = wait_for(
            "the low job preempted to Queued",
            lambda: (s := kube.status(namespace, "low")).get("phase") == "Queued" and s,
            120,
        )
        assert st["attempts"][0]["result"] == "Suspended", st["attempts"]  # preempted, not failed
        kube.wait("herljob/high", namespace, "Succeeded", 300)
        kube.wait("herljob/low", namespace, "Succeeded", 400)
        st = kube.status(namespace, "low")
        assert [a["result"] for a in st["attempts"]] == ["Suspended", "Succeeded"], st["attempts"]
        assert st["progress"]["step"] == steps
        uid = kube.get("herljob", "low", namespace=namespace)["metadata"]["uid"]
        folder = checkpoint_folder(volume, namespace, "low", uid)
        assert metrics_steps(folder) == list(range(1, steps + 1))
        log = (folder / "train.log").read_text()
        resumed = resume_points(log)
        assert len(resumed) == 1 and resumed[0] >= ckpt["step"], (resumed, ckpt)
    finally:
        kube.run("delete", "clusterqueue", cq, "--wait=false", check=False)
