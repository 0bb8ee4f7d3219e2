"""Prometheus metrics of herl: the catalogue, the trainer publisher, dashboards and alerts.

Engines call exactly one function per training step::

    herl.metrics.publish_step(metrics, step)

with the flat veRL-style step dict (``critic/score/mean``, ``herl/success_rate``, ``timing_s/gen`` ...).
The first call creates the process-wide :class:`~herl.metrics.publisher.StepMetricsPublisher` and, when
``HERL_METRICS_PORT`` is set (the operator sets it on the Ray head), serves ``/metrics`` on that port.
Submodules are imported lazily so ``import herl.metrics`` stays cheap in every Ray worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from herl.metrics.publisher import StepMetricsPublisher

__all__ = ["get_publisher", "publish_step", "serve"]


def get_publisher() -> StepMetricsPublisher:
    """The process-wide publisher (created from the environment on first use)."""
    from herl.metrics.publisher import default_publisher

    return default_publisher()


def publish_step(metrics: dict[str, Any], step: int) -> None:
    """Publish one training step's flat metric dict to Prometheus (never raises on bad values)."""
    get_publisher().publish(metrics, step)


def serve(port: int = 0, addr: str = "127.0.0.1") -> int:
    """Serve ``/metrics`` of the process-wide publisher (local engine: 127.0.0.1; the Ray head: 0.0.0.0).
    Returns the bound port (``port=0`` picks a free one); a second call returns the same port."""
    return get_publisher().serve(port, addr)
