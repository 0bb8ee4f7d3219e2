"""A trainer's classified failure (its last ``herl-failure`` line, carried in the Ray job message that
KubeRay copies) becomes the HeRLJob's Failed reason and the attempt's reason; other failures stay
KubeRay's. Table-driven over the KubeRay states that carry a message."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from herl_operator import status as s

from herl.api.validate import validate_document
from herl.errors import UserError, failure_line, find_failure

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TAIL = "x" * 3000  # longer than status messages are kept: the marker must be found before truncation
RAY_MESSAGE = (
    "Job entrypoint command failed with exit code 3, last available logs (truncated to 20,000 chars):\n"
    + TAIL
    + "\n"
    + failure_line("GPUsUnavailable", "engine verl needs 8 GPUs\nbut the Ray cluster has 0")
    + "\n"
)


def _job() -> Any:
    doc = {
        "apiVersion": "herl.dev/v1alpha1",
        "kind": "HeRLJob",
        "metadata": {"name": "j", "namespace": "ml"},
        "spec": {"model": {"path": "/m"}, "data": {"train": "/d.parquet"}},
    }
    job, findings = validate_document(doc)
    assert job is not None, findings
    return job


def _rj(jds: str, js: str, message: str, reason: str = "AppFailed") -> dict[str, Any]:
    return {
        "metadata": {"name": "j"},
        "spec": {},
        "status": {
            "jobDeploymentStatus": jds,
            "jobStatus": js,
            "reason": reason,
            "message": message,
            "startTime": "2026-03-01T11:00:00Z",
            "endTime": "2026-03-01T11:30:00Z",
            "rayClusterName": "c1",
            "failed": 1,
        },
    }


def test_failure_line_round_trips_and_the_last_one_wins() -> None:
    text = failure_line("InvalidJobFile", "first") + "\nnoise\n" + failure_line("RewardErrors", "two\nlines")
    assert find_failure(text) == ("RewardErrors", "two lines")
    assert find_failure("Job entrypoint command failed with exit code 1") is None
    assert find_failure(None) is None
    assert (
        UserError("x").reason == "InvalidInput"
        and UserError("x", reason="GPUsUnavailable").reason == "GPUsUnavailable"
    )


@pytest.mark.parametrize(
    ("jds", "js", "message", "phase", "reason"),
    [
        ("Complete", "FAILED", RAY_MESSAGE, "Failed", "GPUsUnavailable"),
        ("Failed", "FAILED", RAY_MESSAGE, "Failed", "GPUsUnavailable"),
        ("Complete", "FAILED", "Job entrypoint command failed with exit code 1", "Failed", "AppFailed"),
        ("Failed", "FAILED", "Job entrypoint command failed with exit code 1", "Failed", "AppFailed"),
        ("Complete", "SUCCEEDED", RAY_MESSAGE, "Succeeded", "Succeeded"),
    ],
)
def test_the_trainers_reason_becomes_the_phase_reason(
    jds: str, js: str, message: str, phase: str, reason: str
) -> None:
    view = s.map_rayjob(_job(), _rj(jds, js, message))
    assert (view.phase, view.reason) == (phase, reason)
    if reason == "GPUsUnavailable":
        assert view.message == "engine verl needs 8 GPUs but the Ray cluster has 0"


def test_a_retried_attempt_keeps_the_trainers_reason() -> None:
    attempts: list[dict[str, Any]] = []
    s.update_attempts(_job(), _rj("Running", "RUNNING", "", reason=""), attempts, NOW)
    s.update_attempts(_job(), _rj("Retrying", "FAILED", RAY_MESSAGE), attempts, NOW)
    assert attempts[0]["result"] == "Retried"
    assert attempts[0]["reason"] == "GPUsUnavailable"
    assert attempts[0]["message"].startswith("engine verl needs 8 GPUs")
