"""``herl status`` and ``herl logs`` against a fake apiserver: the Ray dashboard's answer through the service
proxy (whole log and the ``/logs/tail`` WebSocket), the head pod's log as the fallback, every expected error
as one line with its exit code, and the status text of one job or many. The real control plane runs the
same verbs in tests/e2e/test_e2e_cli.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from fake_apiserver import TOKEN, FakeCluster, serve, started_job
from herl_operator import jobview
from herl_operator.joblogs import NOT_STARTED, NotStarted, stream_logs
from herl_operator.userclient import load_client

from herl.cli import main
from herl.errors import UserError

PROXY = "/api/v1/namespaces/team/services/c1-head-svc:dashboard/proxy/api/jobs/raysubmit_1/logs"


def _logs(kc: Path, follow: bool = False) -> tuple[str, list[str]]:
    notes: list[str] = []
    text = "".join(
        stream_logs(load_client(kubeconfig=str(kc)), "team", "train", follow=follow, note=notes.append)
    )
    return text, notes


def test_logs_come_from_the_dashboard_through_the_service_proxy(tmp_path: Path) -> None:
    fc = FakeCluster(dashboard_logs={"raysubmit_1": "step 1/4: reward 0.5\nstep 2/4: reward 0.6\n"})
    started_job(fc)
    with serve(fc, tmp_path / "kc") as kc:
        text, notes = _logs(kc)
    assert text == "step 1/4: reward 0.5\nstep 2/4: reward 0.6\n"
    assert (PROXY, f"Bearer {TOKEN}") in fc.requests
    assert notes == ["herl logs: Ray job raysubmit_1 on cluster c1 (attempt 1, phase Running)"]


def test_follow_reads_the_tail_websocket_until_it_closes(tmp_path: Path) -> None:
    fc = FakeCluster(tail_chunks=["step 1/4\n", "step 2/4\n", "done\n"])
    started_job(fc)
    with serve(fc, tmp_path / "kc") as kc:
        text, _ = _logs(kc, follow=True)
    assert text == "step 1/4\nstep 2/4\ndone\n"
    assert any(p == PROXY + "/tail" for p, _ in fc.requests)


@pytest.mark.parametrize("follow", [False, True])
def test_head_pod_log_when_the_dashboard_does_not_answer(tmp_path: Path, follow: bool) -> None:
    fc = FakeCluster(dashboard_status=503, pod_log="ray start ... driver: step 3/4\n")
    started_job(fc)
    with serve(fc, tmp_path / "kc") as kc:
        text, notes = _logs(kc, follow=follow)
    assert text == "ray start ... driver: step 3/4\n"
    assert "the Ray dashboard did not answer (Ray dashboard: " in notes[-1] and "503" in notes[-1]
    assert ("/api/v1/namespaces/team/pods/c1-head-abc/log", f"Bearer {TOKEN}") in fc.requests


@pytest.mark.parametrize(("phase", "code"), [("Running", 1), ("Provisioning", NOT_STARTED)])
def test_no_source_answers(tmp_path: Path, phase: str, code: int) -> None:
    fc = FakeCluster(dashboard_status=503)
    started_job(fc, phase=phase)
    with serve(fc, tmp_path / "kc") as kc, pytest.raises(UserError) as err:
        _logs(kc)
    assert err.value.exit_code == code
    assert "Ray dashboard: HTTP 503" in str(err.value) and "head pod:" in str(err.value)


def test_not_started_and_not_found(tmp_path: Path) -> None:
    fc = FakeCluster()
    fc.herljobs[("team", "train")] = {
        "metadata": {"name": "train", "namespace": "team"},
        "status": {"phase": "Queued", "message": "waiting for Kueue to admit the workload"},
    }
    with serve(fc, tmp_path / "kc") as kc:
        with pytest.raises(NotStarted, match="has not started yet: phase Queued \\(waiting for Kueue"):
            _logs(kc)
        rc = main(["logs", "train", "--kubeconfig", str(kc)])
        assert rc == NOT_STARTED
        assert main(["logs", "ghost", "--kubeconfig", str(kc)]) == 1


def test_cli_logs_and_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fc = FakeCluster(dashboard_logs={"raysubmit_1": "hello from the trainer\n"})
    started_job(fc)
    fc.herljobs[("team", "train")]["status"].update(
        progress={"step": 3, "totalSteps": 10, "rewardMean": 0.4567, "hindsightSuccessRate": 0.25},
        gpuHours=1.5,
        lastCheckpoint={"step": 2, "path": "/ckpt/global_step_2"},
    )
    with serve(fc, tmp_path / "kc") as kc:
        assert main(["logs", "train", "--kubeconfig", str(kc)]) == 0
        assert capsys.readouterr().out == "hello from the trainer\n"
        assert main(["status", "--kubeconfig", str(kc)]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].split() == list(jobview.COLUMNS)
        assert out[1].split()[:8] == ["train", "Running", "3/10", "0.457", "0.25", "2", "1.50", "step"]
        assert main(["status", "train", "--kubeconfig", str(kc)]) == 0
        assert "checkpoint:  step 2 at /ckpt/global_step_2" in capsys.readouterr().out
        assert main(["status", "ghost", "--kubeconfig", str(kc)]) == 1
        assert "HeRLJob 'ghost' in namespace 'team': not found" in capsys.readouterr().err
        assert main(["status", "x", "-A", "--kubeconfig", str(kc)]) == 2


def test_status_text() -> None:
    now = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    job = {
        "metadata": {"name": "a", "namespace": "ns", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {
            "phase": "Retrying",
            "message": "attempt failed",
            "attemptCount": 2,
            "gpuHours": 0.25,
            "progress": {"step": 5, "totalSteps": 100, "epoch": 0, "rewardMean": 0.5, "allMetRate": 0.3},
            "attempts": [
                {
                    "index": 0,
                    "result": "Retried",
                    "reason": "AppFailed",
                    "startTime": "2026-01-01T00:00:00Z",
                    "endTime": "2026-01-01T00:30:00Z",
                    "gpuSeconds": 3600,
                    "rayClusterName": "c0",
                }
            ],
            "conditions": [{"type": "Retrying", "status": "True", "reason": "Retrying", "message": "m"}],
        },
    }
    t = jobview.table(
        [job, {"metadata": {"name": "fresh", "namespace": "other"}}], with_namespace=True, now=now
    )
    lines = t.splitlines()
    assert lines[1].split() == ["ns", "a", "Retrying", "5/100", "0.500", "-", "2", "0.25", "-", "2h"]
    assert lines[2].split() == ["other", "fresh", "Pending", "-", "-", "-", "0", "-", "-", "-"]
    d = jobview.detail(job, now)
    assert "phase:       Retrying — attempt failed" in d and "step:        5/100 (epoch 0)" in d
    assert "#0 Retried AppFailed (2026-01-01T00:00:00Z → 2026-01-01T00:30:00Z, 1.00 GPU-h, cluster c0)" in d
    assert "Retrying            True  Retrying: m" in d


def test_no_credentials_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(UserError, match="no Kubernetes credentials") as err:
        load_client()
    assert err.value.exit_code == 2
