"""Test helpers: kmock resource declarations, an in-process operator, bounded polling."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "manifests" / "samples"
RESOURCES = {
    "herl.dev/v1alpha1/herljobs": {"kind": "HeRLJob", "namespaced": True, "subresources": ["status"]},
    "ray.io/v1/rayjobs": {"kind": "RayJob", "namespaced": True, "subresources": ["status"]},
    "v1/configmaps": {"kind": "ConfigMap", "namespaced": True},
    "v1/events": {"kind": "Event", "namespaced": True},
    "batch/v1/jobs": {"kind": "Job", "namespaced": True},
    "apiextensions.k8s.io/v1/customresourcedefinitions": {
        "kind": "CustomResourceDefinition",
        "namespaced": False,
    },
    "v1/namespaces": {"kind": "Namespace", "namespaced": False},
}
VERBS = ["list", "watch", "get", "create", "patch", "update", "delete"]


def sample(name: str) -> dict[str, Any]:
    return yaml.safe_load((SAMPLES / f"{name}.yaml").read_text())


async def eventually(
    check: Callable[[], Any | Awaitable[Any]],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll ``check`` until it returns a truthy value (bounded; no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


async def holds_through_resyncs(
    reconciler: Any,
    check: Callable[[], Any],
    *,
    passes: int = 2,
    interval: float = 0.05,
    slack: float = 10.0,
    what: str = "condition",
) -> int:
    """Assert ``check`` stays truthy until ``passes`` whole resync passes of ``reconciler`` have run.

    "Stays gone" cannot be shown by polling until the first success (that returns at once). A level-
    based operator that wrongly recreates an object does so on a resync pass, so the check must hold
    through at least two of them that *started* after this call (the first may be under way already
    when a pass is counted by completion alone). The passes are counted by wrapping the instance's
    ``resync_once``, which ``resync_forever`` looks up on every loop: deterministic, no sleep guessed.
    The wait is bounded by ``passes + 1`` resync intervals plus ``slack`` seconds (a loaded machine);
    a loop that runs fewer passes by then fails. Returns the number of polls.
    """
    done = 0
    original = reconciler.resync_once

    async def counted() -> None:
        nonlocal done
        await original()
        done += 1

    reconciler.resync_once = counted
    deadline = time.monotonic() + (passes + 1) * reconciler.config.resync_seconds + slack
    polls = 0
    try:
        while True:
            finished = done  # read before the check, so the last check follows the last counted pass
            polls += 1
            value = check()
            if asyncio.iscoroutine(value):
                value = await value
            if not value:
                raise AssertionError(f"{what} stopped holding after {finished} resync pass(es): {value!r}")
            if finished >= passes:
                return polls
            if time.monotonic() > deadline:
                raise AssertionError(f"only {finished} of {passes} resync passes ran while checking {what}")
            await asyncio.sleep(interval)
    finally:
        del reconciler.resync_once  # the class's method again


@dataclass(frozen=True)
class RayJobTally:
    """RayJobs per HeRLJob, by the ``herl.dev/job`` label the operator puts on each (names sorted).

    ``lost``: jobs with no RayJob; ``doubled``: jobs with more than one; ``stray``: RayJobs whose label
    names no known job. Counting totals instead (jobs vs RayJobs) lets one doubled job hide one lost job.
    """

    jobs: int
    rayjobs: int
    lost: tuple[str, ...]
    doubled: tuple[str, ...]
    stray: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not (self.lost or self.doubled or self.stray)


def rayjob_tally(job_names: Iterable[str], rayjobs: Iterable[dict[str, Any]], label: str) -> RayJobTally:
    names = set(job_names)
    per_job: collections.Counter[str] = collections.Counter()
    stray = []
    n = 0
    for rj in rayjobs:
        n += 1
        meta = rj.get("metadata") or {}
        owner = (meta.get("labels") or {}).get(label)
        if owner in names:
            per_job[owner] += 1
        else:
            stray.append(str(meta.get("name")))
    return RayJobTally(
        jobs=len(names),
        rayjobs=n,
        lost=tuple(sorted(names - set(per_job))),
        doubled=tuple(sorted(k for k, v in per_job.items() if v > 1)),
        stray=tuple(sorted(stray)),
    )


def declare_resources(kmock: Any) -> None:
    for key, info in RESOURCES.items():
        kmock.resources[key] = {
            "verbs": VERBS,
            "singular": key.rsplit("/", 1)[-1][:-1],
            "shortnames": [],
            "categories": [],
            **info,
        }


@contextlib.asynccontextmanager
async def running_operator(server: str, **overrides: Any) -> AsyncIterator[Any]:
    """Run the real operator (kopf + our handlers) in-process against ``server``; yields its Runtime."""
    import kopf
    from herl_operator.handlers import OperatorConfig, build_registry

    cfg = OperatorConfig(server=server, resync_seconds=0.3, progress_seconds=0.1, metrics_port=None)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    registry, rt = build_registry(cfg)
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        kopf.operator(registry=registry, clusterwide=True, standalone=True, stop_flag=stop)
    )
    try:
        await eventually(lambda: rt.reconciler is not None, what="operator login", timeout=15)
        yield rt
    finally:
        if not stop.done():
            stop.set_result(None)
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)
        if not task.done():
            task.cancel()
