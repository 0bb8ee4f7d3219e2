"""RL progress for HeRLJob.status: the operator *pulls* the trainer's Prometheus endpoint.

Why pull (see docs/operator.md): trainer pods need no credentials or RBAC to write the HeRLJob; the
operator stays the only writer of status (nothing fights over fields); the load is bounded by
:attr:`ProgressPuller.min_interval` per job however fast the trainer logs; and a dead trainer just
leaves the last progress in place. The URL resolver is injectable so tests serve ``/metrics`` on
127.0.0.1. Metric names come from herl/metrics/catalogue.py.

Two ways to reach a trainer: ``direct`` (the head Service's cluster DNS name; an operator in the
cluster) and ``apiserver`` (the apiserver's service proxy to the head Service's ``herl-metrics`` port,
with the operator's own credentials; an operator outside the cluster network, like the e2e suite's).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from herl.metrics import catalogue as cat

if TYPE_CHECKING:
    from herl_operator.kube import KubeClient

JSON = dict[str, Any]
#: Not in the catalogue yet (reported to the lead): the step of the newest saved checkpoint.
CHECKPOINT_STEP_METRIC = "herl_checkpoint_last_step"

#: catalogue metric → status.progress field (wire name)
PROGRESS_FIELDS: dict[str, str] = {
    "herl_training_step": "step",
    "herl_training_total_steps": "totalSteps",
    "herl_training_epoch": "epoch",
    "herl_reward_score_mean": "rewardMean",
    "herl_reward_all_met_ratio": "allMetRate",
    "herl_hindsight_revision_success_ratio": "hindsightSuccessRate",
}
_INT_FIELDS = {"step", "totalSteps", "epoch"}
for _name in PROGRESS_FIELDS:  # fail at import if the catalogue renames one
    cat.spec(_name)

URLResolver = Callable[[str, str, JSON, int], "str | None"]


def default_resolver(namespace: str, name: str, rayjob: JSON, port: int) -> str | None:
    """KubeRay's head Service (``<cluster>-head-svc``) exposes the head container's ports, ours included."""
    cluster = (rayjob.get("status") or {}).get("rayClusterName")
    if not cluster:
        return None
    return f"http://{cluster}-head-svc.{namespace}.svc:{port}/metrics"


def parse_metrics(text: str, job_name: str, namespace: str) -> tuple[JSON, int | None]:
    """(progress fields, checkpoint step) for one job from a Prometheus text exposition."""
    progress: JSON = {}
    ckpt: int | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if (
                labels.get("herl_job", job_name) != job_name
                or labels.get("namespace", namespace) != namespace
            ):
                continue
            value = sample.value
            # NaN: nothing reported yet. ±Inf: a diverged trainer; JSON has no Inf, and one would make
            # the apiserver refuse the whole status patch (phase and conditions with it).
            if not math.isfinite(value):
                continue
            if sample.name in PROGRESS_FIELDS:
                key = PROGRESS_FIELDS[sample.name]
                progress[key] = int(value) if key in _INT_FIELDS else round(float(value), 6)
            elif sample.name == CHECKPOINT_STEP_METRIC:
                ckpt = int(value)
    for key in _INT_FIELDS:
        if key in progress and progress[key] < 0:
            del progress[key]
    return progress, ckpt


class ProgressPuller:
    """Throttled, failure-tolerant scraping of one endpoint per running job."""

    def __init__(
        self,
        resolver: URLResolver = default_resolver,
        *,
        min_interval: float = 30.0,
        timeout: float = 3.0,
        via: Literal["direct", "apiserver"] = "direct",
        client: KubeClient | None = None,
    ) -> None:
        if via == "apiserver" and client is None:
            raise ValueError("progress via the apiserver needs the operator's KubeClient")
        self.resolver = resolver
        self.via = via
        self.client = client
        self.min_interval = min_interval
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._last: dict[tuple[str, str], float] = {}
        self._session: aiohttp.ClientSession | None = None
        self.pulls = 0
        self.failures = 0

    def forget(self, key: tuple[str, str]) -> None:
        self._last.pop(key, None)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def due(self, key: tuple[str, str]) -> bool:
        last = self._last.get(key)
        return last is None or time.monotonic() - last >= self.min_interval

    async def pull(
        self, namespace: str, name: str, rayjob: JSON, port: int, now: datetime
    ) -> tuple[JSON | None, int | None]:
        """(progress, checkpoint step), or (None, None) when not due, unreachable or empty."""
        key = (namespace, name)
        if not self.due(key):
            return None, None
        if self.via == "apiserver":
            text = await self._via_apiserver(key, rayjob)
        else:
            text = await self._direct(key, self.resolver(namespace, name, rayjob, port))
        if text is None:
            return None, None
        try:
            progress, ckpt = parse_metrics(text, name, namespace)
        except ValueError:
            self.failures += 1
            return None, None
        if not progress:
            return None, ckpt
        progress.setdefault("step", 0)
        progress["updatedAt"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        return progress, ckpt

    async def _direct(self, key: tuple[str, str], url: str | None) -> str | None:
        if not url:
            return None
        self._last[key] = time.monotonic()
        if self._session is None or self._session.closed:
            from herl_operator.kube import USER_AGENT

            self._session = aiohttp.ClientSession(timeout=self.timeout, headers={"User-Agent": USER_AGENT})
        self.pulls += 1
        try:
            async with self._session.get(url) as resp:
                if resp.status == 200:
                    return await resp.text()
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass
        self.failures += 1
        return None

    async def _via_apiserver(self, key: tuple[str, str], rayjob: JSON) -> str | None:
        from herl_operator.builders import METRICS_PORT_NAME
        from herl_operator.kube import ApiError
        from herl_operator.rbac import SERVICES_PROXY

        cluster = (rayjob.get("status") or {}).get("rayClusterName")
        if not cluster or self.client is None:
            return None
        self._last[key] = time.monotonic()
        self.pulls += 1
        service = f"{cluster}-head-svc:{METRICS_PORT_NAME}"
        try:
            out = await self.client.get(SERVICES_PROXY, key[0], service, "metrics")
        except (ApiError, TimeoutError, aiohttp.ClientError, OSError):
            out = None
        if out is None:
            self.failures += 1
            return None
        return str(out.get("text") or "")
