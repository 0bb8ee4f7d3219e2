"""Real sources, real Prometheus: every dashboard panel and alert expression against live exporters.

The metrics tests in tests/metrics feed the exporters synthetic step dicts. Here the data comes from
the real thing: a short local-engine training run (tiny random model, herl.engine) serving its
``/metrics``, and the real operator (kopf, in-process) reconciling a HeRLJob under the kmock API
emulator while the test plays KubeRay. One Prometheus scrapes both; then every panel query of both
dashboards must return data, and every alert expression must parse and evaluate.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from herl_operator import rbac
from op_helpers import eventually, running_operator, sample
from prometheus_client.parser import text_string_to_metric_families

from herl.api.validate import validate_document
from herl.engine.tiny import build_tiny_model_dir, tiny_job
from herl.engine.trainer import LocalTrainer
from herl.metrics import alerts, verify
from herl.metrics import dashboards as dash
from herl.metrics.promserver import PrometheusServer, free_port

pytestmark = pytest.mark.timeout(240)

NS = "ml-team"
NAME = "herl-if-qwen25-7b"
STEPS = 4

# Panels that a local instruction-following run cannot feed, and why. Everything else must have data.
NEEDS_OTHER_SOURCE = {
    "Judge calls and errors per second": "the rubric-judge reward (medicine); this run uses the IF checkers",
    "Judge error ratio": "the rubric-judge reward (medicine); this run uses the IF checkers",
    "Validation score by data source": "spec.data.val; the local engine does not run validation passes",
}


def _local_job(model: Path) -> Any:
    # The cluster job's name and namespace: the series carry the labels a RayJob's trainer would.
    doc = tiny_job(
        model,
        NAME,
        **{
            "data.synthetic": {"numPrompts": 8, "seed": 0},
            "algorithm.miniBatchSize": 2,
            "algorithm.totalSteps": STEPS,
            "algorithm.klLoss": {"coef": 0.001},
            "algorithm.hindsight": {"revision": {"maxTokens": 12}},
            "checkpoints": {"saveEverySteps": 2},
            "metrics": {"enabled": True},
        },
    )
    doc["metadata"]["namespace"] = NS
    job, findings = validate_document(doc)
    assert job is not None, findings
    return job


class ScrapedTrainer(LocalTrainer):
    """Before each step, wait until Prometheus has scraped the previous one, so counters are seen
    increasing across scrapes (rate() panels need two samples) without any fixed sleep."""

    prom: PrometheusServer

    def train_step(self, step: int) -> dict[str, Any]:
        if step > 1:
            self.prom.wait_for(f'herl_training_step{{herl_job="{NAME}"}} >= {step - 1}', timeout=30)
        return super().train_step(step)


def _exists(kmock: Any, resource: str) -> bool:
    try:
        return not kmock.objects[resource, NS, NAME].deleted
    except KeyError:
        return False


def _t(minutes: int) -> str:
    return (datetime.now(UTC) - timedelta(hours=1) + timedelta(minutes=minutes)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read()


def _board(uid_part: str) -> dict[str, Any]:
    return next(b() for b in dash.DASHBOARDS.values() if uid_part in b()["uid"])


async def test_dashboards_and_alerts_have_data_from_real_sources(
    kmock: Any, api: Any, prometheus_factory: Callable[..., PrometheusServer], tmp_path: Path, promtool: str
) -> None:
    trainer_port, operator_port = free_port(), free_port()
    prom = prometheus_factory(
        [f"http://127.0.0.1:{trainer_port}/metrics", f"http://127.0.0.1:{operator_port}/metrics"],
        rule_files=[verify.RULES_FILE],
    )
    model = build_tiny_model_dir(tmp_path / "model", seed=0)
    trainer = ScrapedTrainer(
        _local_job(model),
        tmp_path / "out",
        metrics_port=trainer_port,
        progress=False,
        threads=1,
        echo=lambda s: None,
    )
    trainer.prom = prom

    job = sample("if-qwen2.5-7b")
    job["metadata"].update(namespace=NS, uid="uid-e2e", generation=1)
    await api.create(rbac.HERLJOBS, NS, copy.deepcopy(job))
    trainer_url = f"http://127.0.0.1:{trainer_port}/metrics"
    async with running_operator(
        str(kmock.url), metrics_port=operator_port, url_resolver=lambda ns, name, rj, port: trainer_url
    ):
        await eventually(lambda: _exists(kmock, "ray.io/v1/rayjobs"), what="RayJob")

        async def kuberay(status: dict[str, Any], spec: dict[str, Any] | None = None) -> None:
            if spec is not None:
                await api.patch(rbac.RAYJOBS, NS, NAME, {"spec": spec})
            await api.patch(rbac.RAYJOBS, NS, NAME, {"status": status})

        # KubeRay: admitted, provisioning, running, a failed attempt retried, running again.
        await kuberay(
            {"jobDeploymentStatus": "Initializing", "startTime": _t(0), "rayClusterName": "c1"},
            spec={"suspend": False},
        )
        await kuberay({"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
        await kuberay({"jobDeploymentStatus": "Retrying", "jobStatus": "", "failed": 1, "rayClusterName": ""})
        await kuberay({"jobDeploymentStatus": "Initializing", "startTime": _t(10), "rayClusterName": "c2"})
        await kuberay({"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})

        # Meanwhile the local engine trains for real, in a thread (the operator keeps its event loop).
        errors: list[BaseException] = []

        def train() -> None:
            try:
                trainer.run()
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        worker = threading.Thread(target=train, daemon=True)
        worker.start()
        await asyncio.to_thread(worker.join, 200)
        assert not worker.is_alive() and not errors, errors
        assert trainer.step == STEPS

        # The operator pulled the trainer's progress into status, and both targets were scraped.
        await asyncio.to_thread(prom.wait_for, f'herl_operator_job_last_reward{{herl_job="{NAME}"}}', 30)
        await asyncio.to_thread(prom.wait_for, "herl_operator_retries_total >= 1", 30)
        await asyncio.to_thread(prom.wait_for, f"herl_training_step >= {STEPS - 1}", 30)

        # promtool's lint on what the real operator and the real trainer serve: no finding accepted.
        for url in (f"http://127.0.0.1:{operator_port}/metrics", trainer_url):
            body = await asyncio.to_thread(_get, url)
            assert b"herl_" in body, url
            assert verify.promtool_lint(body, promtool) == [], url
        op_body = (await asyncio.to_thread(_get, f"http://127.0.0.1:{operator_port}/metrics")).decode()
        gpu = [
            smp.value
            for fam in text_string_to_metric_families(op_body)
            for smp in fam.samples
            if smp.name == "herl_operator_gpu_seconds" and smp.labels == {"namespace": NS, "herl_job": NAME}
        ]
        assert len(gpu) == 1 and gpu[0] > 0, gpu  # two attempts have run: GPU time, in seconds

    training = verify.panel_failures(prom, {"namespace": NS, "herl_job": NAME}, [_board("training")])
    training = [f for f in training if f[0].split(" / ", 1)[1] not in NEEDS_OTHER_SOURCE]
    assert training == [], training
    operator = verify.panel_failures(prom, {"namespace": NS, "herl_job": NAME}, [_board("operator")])
    assert operator == [], operator

    # Every alert expression parses and evaluates against the real series (firing conditions for each
    # alert are covered with crafted data by tests/metrics), and the loaded rules are healthy.
    for alert in alerts.ALL_ALERTS:
        prom.query(alert.expr)
    states = verify.rule_states(prom)
    assert set(states) == {a.name for a in alerts.ALL_ALERTS}
    assert all(health in ("ok", "unknown") and not err for health, _, err in states.values()), states
