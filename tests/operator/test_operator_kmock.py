"""The operator's conversation with an emulated API server (kmock), KubeRay and Kueue played by the test."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from herl_operator import rbac
from op_helpers import eventually, holds_through_resyncs, running_operator, sample

pytestmark = pytest.mark.timeout(60)
NS = "ml-team"
NAME = "herl-if-qwen25-7b"
_BASE = datetime.now(UTC) - timedelta(hours=2)


def _t(minutes: int) -> str:
    """A RayJob timestamp ``minutes`` after a base two hours ago (inside the sample's 48 h budget)."""
    return (_BASE + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _obj(kmock: Any, res: str, ns: str, name: str) -> dict[str, Any] | None:
    try:
        obj = kmock.objects[res, ns, name]
    except KeyError:
        return None
    return None if obj.deleted else obj.raw


def _status(kmock: Any, name: str = NAME) -> dict[str, Any]:
    return (_obj(kmock, "herl.dev/v1alpha1/herljobs", NS, name) or {}).get("status") or {}


def _cond(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == ctype), {})


def _rayjobs(kmock: Any) -> list[dict[str, Any]]:
    return [o.raw for (res, _ns, _n), o in kmock.objects.items() if res.plural == "rayjobs" and not o.deleted]


def _job(name: str = NAME, uid: str = "uid-1") -> dict[str, Any]:
    doc = sample("if-qwen2.5-7b")
    doc["metadata"].update(name=name, namespace=NS, uid=uid, generation=1)
    return doc


async def _kuberay(api: Any, status: dict[str, Any], spec: dict[str, Any] | None = None) -> None:
    if spec is not None:
        await api.patch(rbac.RAYJOBS, NS, NAME, {"spec": spec})
    await api.patch(rbac.RAYJOBS, NS, NAME, {"status": status})


@pytest.fixture()
async def trainer_metrics() -> Any:
    """A fake trainer /metrics endpoint on 127.0.0.1 whose step the test advances."""
    state = {"step": 0}

    async def handle(_: web.Request) -> web.Response:
        s = state["step"]
        text = (
            f'herl_training_step{{herl_job="{NAME}",namespace="{NS}"}} {s}\n'
            f'herl_training_total_steps{{herl_job="{NAME}",namespace="{NS}"}} 400\n'
            f'herl_training_epoch{{herl_job="{NAME}",namespace="{NS}"}} 1\n'
            f'herl_reward_score_mean{{herl_job="{NAME}",namespace="{NS}"}} 0.{s}\n'
            f'herl_hindsight_revision_success_ratio{{herl_job="{NAME}",namespace="{NS}"}} 0.25\n'
            f'herl_checkpoint_last_step{{herl_job="{NAME}",namespace="{NS}"}} {s - s % 40}\n'
            f'herl_training_step{{herl_job="other",namespace="{NS}"}} 999\n'
        )
        return web.Response(text=text)

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state["url"] = f"http://127.0.0.1:{port}/metrics"
    yield state
    await runner.cleanup()


async def test_full_lifecycle_with_retry_preemption_restart_and_delete(
    kmock: Any, api: Any, trainer_metrics: Any
) -> None:
    resolver = lambda ns, name, rj, port: trainer_metrics["url"]  # noqa: E731
    await api.create(rbac.HERLJOBS, NS, _job())
    async with running_operator(str(kmock.url), url_resolver=resolver) as rt:
        rj = await eventually(lambda: _obj(kmock, "ray.io/v1/rayjobs", NS, NAME), what="RayJob")
        assert rj["spec"]["suspend"] is True  # queued: created suspended, Kueue admits
        assert rj["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
        assert _obj(kmock, "v1/configmaps", NS, f"{NAME}-spec") is not None
        await eventually(lambda: _status(kmock).get("phase") == "Queued", what="Queued")
        assert _cond(_status(kmock), "Queued")["status"] == "True"

        # Kueue admits; KubeRay initialises, then runs.
        await _kuberay(
            api,
            {"jobDeploymentStatus": "Initializing", "startTime": _t(0), "rayClusterName": f"{NAME}-c1"},
            spec={"suspend": False},
        )
        await eventually(lambda: _status(kmock).get("phase") == "Provisioning", what="Provisioning")
        await _kuberay(api, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
        await eventually(lambda: _status(kmock).get("phase") == "Running", what="Running")
        trainer_metrics["step"] = 45
        st = await eventually(
            lambda: (_status(kmock).get("progress") or {}).get("step") == 45 and _status(kmock),
            what="progress pulled",
        )
        assert st["progress"]["totalSteps"] == 400 and st["progress"]["hindsightSuccessRate"] == 0.25
        assert st["lastCheckpoint"]["step"] == 40
        assert _cond(st, "CheckpointAvailable")["status"] == "True"
        assert st["gpuHours"] > 0

        # Attempt fails → KubeRay retries (wipes cluster name and reason).
        await _kuberay(
            api,
            {
                "jobDeploymentStatus": "Retrying",
                "jobStatus": "",
                "failed": 1,
                "rayClusterName": "",
                "reason": "",
                "message": "",
            },
        )
        await eventually(lambda: _status(kmock).get("phase") == "Retrying", what="Retrying")
        assert _status(kmock)["attempts"][0]["result"] == "Retried"
        assert rt.metrics.retries._value.get() == 1
    # Operator restarted while KubeRay starts attempt 2.
    await _kuberay(
        api, {"jobDeploymentStatus": "Initializing", "startTime": _t(30), "rayClusterName": f"{NAME}-c2"}
    )
    async with running_operator(str(kmock.url), url_resolver=resolver) as rt2:
        await eventually(
            lambda: _status(kmock).get("phase") == "Provisioning", what="Provisioning after restart"
        )
        await _kuberay(api, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
        await eventually(lambda: _status(kmock).get("phase") == "Running", what="Running 2")
        assert len(_rayjobs(kmock)) == 1
        assert rt2.client.calls[("create", "rayjobs")] <= 1  # a 409 → adopt, never a second RayJob
        # Kueue preempts; then re-admits.
        await _kuberay(
            api,
            {"jobDeploymentStatus": "Suspended", "jobStatus": "", "rayClusterName": ""},
            spec={"suspend": True},
        )
        await eventually(lambda: _status(kmock).get("phase") == "Queued", what="Queued after preemption")
        await _kuberay(
            api,
            {"jobDeploymentStatus": "Initializing", "startTime": _t(60), "rayClusterName": f"{NAME}-c3"},
            spec={"suspend": False},
        )
        await _kuberay(api, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
        await eventually(lambda: _status(kmock).get("phase") == "Running", what="Running 3")
        await _kuberay(api, {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED", "endTime": _t(90)})
        st = await eventually(
            lambda: _status(kmock).get("phase") == "Succeeded" and _status(kmock), what="Succeeded"
        )
        assert [a["result"] for a in st["attempts"]] == ["Retried", "Suspended", "Succeeded"]
        assert [a.get("rayClusterName") for a in st["attempts"]] == [f"{NAME}-c1", f"{NAME}-c2", f"{NAME}-c3"]
        assert st["progress"]["step"] == 45  # progress survives retries
        assert _cond(st, "Succeeded")["status"] == "True" and _cond(st, "Running")["status"] == "False"
        assert st["completionTime"] == _t(90)
        assert st["gpuHours"] > 0
        assert len(_rayjobs(kmock)) == 1

        # Delete: our own cleanup removes the children (kmock has no garbage collector).
        await api.delete(rbac.HERLJOBS, NS, NAME)
        await eventually(lambda: not _rayjobs(kmock), what="RayJob deleted")
        await eventually(lambda: _obj(kmock, "v1/configmaps", NS, f"{NAME}-spec") is None, what="cm deleted")
        assert (NS, NAME) not in rt2.metrics._phases


async def test_invalid_spec_fails_without_rayjob_or_retry_storm(kmock: Any, api: Any) -> None:
    doc = _job(name="bad-job", uid="uid-bad")
    doc["spec"]["resources"]["workers"] = 0  # below the schema minimum: got past admission somehow
    await api.create(rbac.HERLJOBS, NS, doc)
    async with running_operator(str(kmock.url)) as rt:
        st = await eventually(
            lambda: _status(kmock, "bad-job").get("phase") == "Failed" and _status(kmock, "bad-job"),
            what="InvalidSpec",
        )
        failed = _cond(st, "Failed")
        assert failed["reason"] == "InvalidSpec" and "spec.resources.workers" in failed["message"]
        await eventually(
            lambda: rt.reconciler.metrics.reconciles.labels(result="success")._value.get() >= 6,
            what="a few resync passes",
        )
        assert not _rayjobs(kmock)
        assert rt.client.calls[("patch", "herljobs/status")] == 1  # written once, not on every pass
        assert rt.metrics.reconciles.labels(result="error")._value.get() == 0
        # The user fixes the spec: the job recovers and gets its RayJob.
        await api.patch(rbac.HERLJOBS, NS, "bad-job", {"spec": {"resources": {"workers": 1}}})
        await eventually(lambda: _rayjobs(kmock), what="RayJob after fix")
        await eventually(lambda: _status(kmock, "bad-job").get("phase") == "Queued", what="recovered")


async def test_user_suspend_budget_and_ignored_spec_change(kmock: Any, api: Any) -> None:
    doc = _job(name="edit-job", uid="uid-e")
    del doc["spec"]["queue"]
    await api.create(rbac.HERLJOBS, NS, doc)
    async with running_operator(str(kmock.url)) as rt:
        rj = await eventually(lambda: _obj(kmock, "ray.io/v1/rayjobs", NS, "edit-job"), what="RayJob")
        assert rj["spec"]["suspend"] is False
        await api.patch(
            rbac.HERLJOBS,
            NS,
            "edit-job",
            {"spec": {"runPolicy": {"suspend": True}, "model": {"path": "/data/other"}}},
        )
        await eventually(
            lambda: (_obj(kmock, "ray.io/v1/rayjobs", NS, "edit-job") or {})["spec"]["suspend"],
            what="RayJob suspended",
        )
        await api.patch(rbac.RAYJOBS, NS, "edit-job", {"status": {"jobDeploymentStatus": "Suspended"}})
        st = await eventually(
            lambda: _status(kmock, "edit-job").get("phase") == "Suspended" and _status(kmock, "edit-job"),
            what="Suspended",
        )
        ignored = _cond(st, "SpecChangeIgnored")
        assert ignored["status"] == "True" and "spec.model.path" in ignored["message"]
        assert "runPolicy" not in ignored["message"]
        # Resume, run, and exceed a (lowered) total budget → Failed/BudgetExceeded, RayJob stopped.
        await api.patch(
            rbac.HERLJOBS,
            NS,
            "edit-job",
            {"spec": {"runPolicy": {"suspend": False, "totalBudgetSeconds": 60}}},
        )
        await eventually(
            lambda: (
                (_obj(kmock, "ray.io/v1/rayjobs", NS, "edit-job") or {}).get("spec", {}).get("suspend")
                is False
            ),
            what="resumed",
        )
        await api.patch(
            rbac.RAYJOBS,
            NS,
            "edit-job",
            {
                "status": {
                    "jobDeploymentStatus": "Running",
                    "jobStatus": "RUNNING",
                    "startTime": "2020-01-01T00:00:00Z",
                    "rayClusterName": "c9",
                }
            },
        )
        st = await eventually(
            lambda: _status(kmock, "edit-job").get("phase") == "Failed" and _status(kmock, "edit-job"),
            what="BudgetExceeded",
        )
        assert _cond(st, "Failed")["reason"] == "BudgetExceeded"
        await eventually(lambda: _obj(kmock, "ray.io/v1/rayjobs", NS, "edit-job") is None, what="stopped")
        before = copy.deepcopy(_status(kmock, "edit-job"))
        creates = rt.client.calls[("create", "rayjobs")]
        # Failed is final: no pass may recreate the RayJob, not even briefly (the operator would delete
        # a recreated one again at once, so the object alone can look gone; its create calls cannot).
        await holds_through_resyncs(
            rt.reconciler,
            lambda: (
                _obj(kmock, "ray.io/v1/rayjobs", NS, "edit-job") is None
                and rt.client.calls[("create", "rayjobs")] == creates
            ),
            passes=2,
            what="RayJob stays gone",
        )
        assert _status(kmock, "edit-job")["phase"] == before["phase"] == "Failed"
