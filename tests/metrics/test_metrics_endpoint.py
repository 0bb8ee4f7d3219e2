"""The trainer's /metrics endpoint notes the operator's reads, so a finished trainer can stay until its
final step was read (and not longer than its timeout)."""

from __future__ import annotations

import threading
import time
import urllib.request

from herl.metrics.endpoint import OPERATOR_AGENT
from herl.metrics.publisher import StepMetricsPublisher


def _get(port: int, agent: str) -> bytes:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"User-Agent": agent})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.read()


def test_final_read_waits_for_the_operator_not_for_other_scrapers() -> None:
    pub = StepMetricsPublisher(herl_job="j", namespace="ns")
    assert pub.wait_final_read(5) is False  # not serving: nothing to wait for
    port = pub.serve(0)
    try:
        pub.publish({"training/global_step": 3, "critic/score/mean": 0.5}, 3)
        _get(port, "Prometheus/3.0")
        started = time.monotonic()
        assert pub.wait_final_read(0.5) is False  # a Prometheus scrape is not the operator's read
        assert time.monotonic() - started >= 0.5

        reader = threading.Timer(0.3, lambda: _get(port, f"{OPERATOR_AGENT}/0.1.0"))
        reader.start()
        assert pub.wait_final_read(10) is True
        reader.join()
        body = _get(port, f"{OPERATOR_AGENT}/0.1.0")
        assert b'herl_training_step{herl_job="j",namespace="ns"} 3.0' in body

        # A read before the newest publish does not count for it.
        pub.publish({"training/global_step": 4}, 4)
        assert pub.wait_final_read(0.3) is False
    finally:
        pub.close()
