"""Fixtures for the metrics tests: a real Prometheus scraping our exporters.

``prometheus_factory(targets, rule_files=())`` starts a Prometheus on 127.0.0.1 for any list of
``/metrics`` URLs (reusable for a real local-engine run) and kills it at teardown. ``live`` is the
module-wide scenario: the trainer publisher fed with synthetic steps plus a synthetic operator
registry, scraped every second, with the generated alert rules loaded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry, start_http_server

from herl.metrics import synthetic, verify
from herl.metrics.promserver import PrometheusServer
from herl.metrics.publisher import StepMetricsPublisher

NAMESPACE = "herl-test"
JOB = "demo"
#: The synthetic trainer's last step looks an hour old, so HeRLTrainingStuck can be seen firing.
CLOCK_SKEW_S = 3600.0


@dataclass
class Live:
    prom: PrometheusServer
    publisher: StepMetricsPublisher
    operator_registry: CollectorRegistry
    operator_url: str
    trainer_url: str
    variables: dict[str, str]


@pytest.fixture(scope="module")
def live(prometheus_factory: Callable[..., PrometheusServer]) -> Iterator[Live]:
    """Trainer + operator exporters scraped by a real Prometheus with the alert rules loaded.

    Two feeding rounds, each confirmed by a query (no fixed sleeps), so every counter has at least
    two scraped samples with an increase between them and rate() panels have data.
    """
    pub = StepMetricsPublisher(JOB, NAMESPACE, clock=lambda: time.time() - CLOCK_SKEW_S)
    tport = pub.serve(0, "127.0.0.1")
    reg, col = synthetic.operator_registry()
    osrv, _ = start_http_server(0, addr="127.0.0.1", registry=reg)
    trainer_url = f"http://127.0.0.1:{tport}/metrics"
    operator_url = f"http://127.0.0.1:{osrv.server_port}/metrics"
    try:
        prom = prometheus_factory([trainer_url, operator_url], rule_files=[verify.RULES_FILE])
        prom.wait_targets_up(timeout=30)
        for rnd, start in enumerate((1, 31), start=1):
            for d in synthetic.step_dicts(30, start=start):
                pub.publish(d)
            synthetic.operator_tick(col, rnd)
            prom.wait_for(f"herl_training_step == {start + 29}", timeout=20)
            prom.wait_for(f"herl_operator_retries_total >= {rnd}", timeout=20)
        yield Live(prom, pub, reg, operator_url, trainer_url, {"namespace": NAMESPACE, "herl_job": JOB})
    finally:
        pub.close()
        osrv.shutdown()
        osrv.server_close()
