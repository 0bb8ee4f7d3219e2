"""Turn the flat per-step metric dict of either engine into Prometheus series.

Why a publisher of its own (not veRL's Tracking): veRL 0.9.1 has no Prometheus backend and a fixed
backend list; both engines already build the same step dict, so one translation (:mod:`herl.metrics.keys`)
serves the local engine, the veRL plugin and the tests. Each publisher owns its CollectorRegistry, so
tests and a process that hosts several publishers never collide in the global registry, and the
exposition carries only herl metrics (no process/GC noise that would need its own catalogue).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from herl.metrics import keys
from herl.metrics.catalogue import JOB_LABELS, Engine, create_collectors

log = logging.getLogger(__name__)

ENV_JOB = "HERL_JOB_NAME"
"""Name of the HeRLJob (label ``herl_job``); the operator sets it in the trainer's env."""
ENV_NAMESPACE = "HERL_JOB_NAMESPACE"
"""Namespace of the HeRLJob (label ``namespace``); falls back to ``POD_NAMESPACE``, then ``local``."""
ENV_PORT = "HERL_METRICS_PORT"
"""When set, the first :func:`herl.metrics.publish_step` serves ``/metrics`` on this port (all addresses)."""
ENV_ADDR = "HERL_METRICS_ADDR"
"""Bind address for :data:`ENV_PORT` (default ``0.0.0.0`` so the pod IP is scraped)."""

#: Steps whose dict only holds validation keys (veRL's val-before-train) are not training steps.
_VAL_PREFIXES = ("val-core/", "val-aux/", "val/")
#: Improvement needed for a new best reward (ignores float noise on a plateau).
BEST_EPSILON = 1e-9
_MAX_UNMAPPED = 256


def _as_float(value: Any) -> float | None:
    """A float from ints, floats, numpy/torch scalars; None for anything else (strings, lists...)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    item = getattr(value, "item", None)
    if callable(item):
        try:
            v = item()
        except (TypeError, ValueError, RuntimeError):
            return None
        return float(v) if isinstance(v, int | float) else None
    return None


class StepMetricsPublisher:
    """Keeps the Prometheus view of one training run; feed it with :meth:`publish` once per step.

    ``herl_job``/``namespace`` become constant labels of every series (defaults: the environment, see
    :data:`ENV_JOB`, :data:`ENV_NAMESPACE`). ``clock`` is injectable so tests control timestamps.
    """

    def __init__(
        self,
        herl_job: str | None = None,
        namespace: str | None = None,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.herl_job = herl_job or os.environ.get(ENV_JOB) or "local"
        self.namespace = (
            namespace or os.environ.get(ENV_NAMESPACE) or os.environ.get("POD_NAMESPACE") or "local"
        )
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.collectors = create_collectors(self.registry, Engine.LOCAL)
        self._clock = clock
        self._lock = threading.Lock()
        self._last_step: int | None = None
        self._best: float | None = None
        self._server: Any = None
        self._last_publish = 0.0  # time.monotonic() of the newest publish()
        self.port: int | None = None
        #: Keys seen that no rule exports (bounded), to spot a renamed key quickly.
        self.unmapped: set[str] = set()
        self._job = {"herl_job": self.herl_job, "namespace": self.namespace}
        # Series that exist from the start: a running trainer is visible before its first step,
        # and counters start at 0 so the first increase() is not lost.
        self._g("herl_training_step").set(0)
        for name in (
            "herl_training_steps_total",
            "herl_hindsight_groups_attempted_total",
            "herl_hindsight_revisions_generated_total",
            "herl_hindsight_revisions_kept_total",
            "herl_hindsight_fallbacks_total",
            "herl_tokens_total",
            "herl_judge_calls_total",
            "herl_reward_errors_total",  # mostly 0: the series must exist for its panel to read 0
        ):
            self._c(name)

    # -- collectors with the job labels applied
    def _child(self, name: str, extra: Mapping[str, str] | None = None) -> Any:
        labels = dict(self._job)
        if extra:
            labels.update(extra)
        return self.collectors[name].labels(**labels)

    def _g(self, name: str, extra: Mapping[str, str] | None = None) -> Gauge:
        return self._child(name, extra)

    def _c(self, name: str, extra: Mapping[str, str] | None = None) -> Counter:
        return self._child(name, extra)

    def publish(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Apply one step dict. Unknown keys and non-numeric values are skipped, never raised:
        metrics must not be able to stop a training run."""
        with self._lock:
            self._last_publish = time.monotonic()
            try:
                self._publish(metrics, step)
            except Exception:  # pragma: no cover - defensive: a metrics bug must not kill training
                log.exception("herl metrics: failed to publish step %s", step)

    def _publish(self, metrics: Mapping[str, Any], step: int | None) -> None:
        is_train = any(not k.startswith(_VAL_PREFIXES) for k in metrics)
        gs = _as_float(metrics.get("training/global_step"))
        cur = int(gs) if gs is not None and math.isfinite(gs) else step
        if cur is not None and is_train:
            self._g("herl_training_step").set(cur)
            if self._last_step is None or cur > self._last_step:
                self._c("herl_training_steps_total").inc()
                self._last_step = cur
            self._g("herl_training_last_step_timestamp_seconds").set(self._clock())
        for key, raw in metrics.items():
            found = keys.match(key)
            if found is None:
                if len(self.unmapped) < _MAX_UNMAPPED and key != "training/global_step":
                    self.unmapped.add(key)
                continue
            value = _as_float(raw)
            if value is None:
                continue
            rule, labels = found
            if rule.action is keys.Action.INC:
                if math.isfinite(value) and value > 0:
                    self._c(rule.metric, labels).inc(value)
            else:
                self._g(rule.metric, labels).set(value)
        mean = _as_float(metrics.get("critic/score/mean"))
        improved = mean is not None and (self._best is None or mean > self._best + BEST_EPSILON)
        if improved and is_train and mean is not None and math.isfinite(mean):
            self._best = mean
            self._g("herl_reward_score_mean_best").set(mean)
            self._g("herl_reward_best_step").set(cur if cur is not None else 0)

    def exposition(self) -> bytes:
        """The text exposition of this registry (what ``/metrics`` returns)."""
        return generate_latest(self.registry)

    def serve(self, port: int = 0, addr: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` over HTTP from a daemon thread; returns the bound port (``port=0``: a free
        one). Idempotent: a second call returns the running port."""
        if self._server is not None:
            assert self.port is not None
            return self.port
        from herl.metrics.endpoint import MetricsEndpoint

        self._server = MetricsEndpoint(self.registry, port, addr)
        self.port = self._server.port
        log.info("herl metrics: serving /metrics on %s:%d", addr, self.port)
        return self.port

    def wait_final_read(self, timeout: float) -> bool:
        """Block until the operator has read ``/metrics`` after the last publish (so status shows the
        final step), at most ``timeout`` seconds; True if it did. False at once when not serving."""
        if self._server is None:
            return False
        return self._server.wait_read_by_operator(self._last_publish, timeout)

    def close(self) -> None:
        """Stop the HTTP endpoint (tests; the trainer just exits)."""
        if self._server is not None:
            self._server.close()
            self._server = None
            self.port = None


_default: StepMetricsPublisher | None = None
_default_lock = threading.Lock()


def default_publisher() -> StepMetricsPublisher:
    """The process-wide publisher; serves on ``$HERL_METRICS_PORT`` when that is set."""
    global _default
    with _default_lock:
        if _default is None:
            pub = StepMetricsPublisher()
            port = os.environ.get(ENV_PORT)
            if port:
                try:
                    pub.serve(int(port), os.environ.get(ENV_ADDR, "0.0.0.0"))
                except (OSError, ValueError):
                    log.exception("herl metrics: cannot serve on port %r; metrics stay in-process", port)
            _default = pub
        return _default


def set_default_publisher(publisher: StepMetricsPublisher | None) -> None:
    """Replace (or reset with None) the process-wide publisher: the local engine passes its own, tests
    isolate themselves."""
    global _default
    with _default_lock:
        _default = publisher


__all__ = [
    "ENV_ADDR",
    "ENV_JOB",
    "ENV_NAMESPACE",
    "ENV_PORT",
    "JOB_LABELS",
    "StepMetricsPublisher",
    "default_publisher",
    "set_default_publisher",
]
