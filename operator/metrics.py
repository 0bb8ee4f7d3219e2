"""The operator's own Prometheus metrics (names from herl/metrics/catalogue.py, own registry).

Bounded label sets: ``phase`` and ``result`` are closed enums; per-job series
(``namespace``, ``herl_job``) exist only while the HeRLJob exists and are removed on deletion.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, start_http_server

from herl.metrics import catalogue as cat


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        c = cat.create_collectors(self.registry, cat.Engine.OPERATOR)
        self.jobs = c[cat.OPERATOR_JOBS]
        self.job_phase = c[cat.OPERATOR_JOB_PHASE]
        self.reconciles = c[cat.OPERATOR_RECONCILE_TOTAL]
        self.duration = c[cat.OPERATOR_RECONCILE_DURATION]
        self.retries = c[cat.OPERATOR_RETRIES_TOTAL]
        self.gpu_seconds = c[cat.OPERATOR_GPU_SECONDS]
        self.last_reward = c[cat.OPERATOR_JOB_LAST_REWARD]
        for result in cat.RECONCILE_RESULTS:
            self.reconciles.labels(result=result)
        self._phases: dict[tuple[str, str], str] = {}
        self._rewards: set[tuple[str, str]] = set()
        self._recount()

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        start_http_server(port, addr=addr, registry=self.registry)

    def observe_reconcile(self, result: str, seconds: float) -> None:
        self.reconciles.labels(result=result).inc()
        self.duration.observe(seconds)

    def set_job(
        self, namespace: str, name: str, phase: str | None, gpu_hours: float, reward: float | None
    ) -> None:
        key = (namespace, name)
        phase = phase or "Pending"
        if self._phases.get(key) != phase:
            self._phases[key] = phase
            for p in cat.JOB_PHASES:
                self.job_phase.labels(namespace=namespace, herl_job=name, phase=p).set(1 if p == phase else 0)
            self._recount()
        # status keeps GPU-hours (what people budget in); the metric is in the base unit, seconds.
        self.gpu_seconds.labels(namespace=namespace, herl_job=name).set(gpu_hours * 3600.0)
        if reward is not None:
            self.last_reward.labels(namespace=namespace, herl_job=name).set(reward)
            self._rewards.add(key)

    def remove_job(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        if self._phases.pop(key, None) is not None:
            for p in cat.JOB_PHASES:
                self._try_remove(self.job_phase, namespace, name, p)
            self._recount()
        self._try_remove(self.gpu_seconds, namespace, name)
        if key in self._rewards:
            self._rewards.discard(key)
            self._try_remove(self.last_reward, namespace, name)

    @staticmethod
    def _try_remove(metric, *labels: str) -> None:  # type: ignore[no-untyped-def]
        with contextlib.suppress(KeyError):
            metric.remove(*labels)

    def _recount(self) -> None:
        counts = dict.fromkeys(cat.JOB_PHASES, 0)
        for phase in self._phases.values():
            counts[phase] = counts.get(phase, 0) + 1
        for phase, n in counts.items():
            self.jobs.labels(phase=phase).set(n)
