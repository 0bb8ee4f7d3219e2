"""The polling helpers can fail: "stays gone" must outlast the resync passes that would bring it back."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from op_helpers import REPO, holds_through_resyncs, rayjob_tally

pytestmark = pytest.mark.timeout(30)


@dataclass
class _Config:
    resync_seconds: float = 0.05


@dataclass
class FakeReconciler:
    """The shape of herl_operator.reconcile.Reconciler's loop; pass ``recreate_on`` recreates the object."""

    recreate_on: int | None = None
    config: _Config = field(default_factory=_Config)
    passes: int = 0
    exists: bool = False

    async def resync_once(self) -> None:
        self.passes += 1
        await asyncio.sleep(0.01)
        if self.passes == self.recreate_on:
            self.exists = True

    async def resync_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.resync_seconds)
            await self.resync_once()


@contextlib.asynccontextmanager
async def _running(rec: FakeReconciler) -> AsyncIterator[FakeReconciler]:
    task = asyncio.create_task(rec.resync_forever())
    try:
        yield rec
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_holds_through_two_passes_that_started_after_the_call() -> None:
    async with _running(FakeReconciler()) as rec:
        await asyncio.sleep(0.07)  # a pass may be under way already
        before = rec.passes
        polls = await holds_through_resyncs(rec, lambda: not rec.exists, passes=2, interval=0.005)
        assert rec.passes - before >= 2 and polls > 2
        assert "resync_once" not in vars(rec)  # the wrapper is removed again


@pytest.mark.parametrize("recreate_on", [1, 2])
async def test_an_object_recreated_on_a_later_pass_is_caught(recreate_on: int) -> None:
    """Waiting until the first success (the old check) returns at once; this one sees the recreation."""
    async with _running(FakeReconciler(recreate_on=recreate_on)) as rec:
        with pytest.raises(AssertionError, match="stays gone stopped holding after"):
            await holds_through_resyncs(
                rec, lambda: not rec.exists, passes=2, interval=0.005, what="stays gone"
            )


async def test_a_stalled_resync_loop_fails_instead_of_passing() -> None:
    rec: Any = FakeReconciler()  # never started: no pass ever runs
    with pytest.raises(AssertionError, match="only 0 of 2 resync passes ran"):
        await holds_through_resyncs(rec, lambda: True, passes=2, interval=0.01, slack=0.3)


def _rj(name: str, job: str | None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {} if job is None else {"herl.dev/job": job}}}


def test_tally_reports_lost_and_doubled_apart_even_when_the_totals_match() -> None:
    jobs = ["a", "b", "c"]
    # b has two RayJobs, c none: 3 jobs, 3 RayJobs, |3 - 3| = 0 would call this clean
    got = rayjob_tally(jobs, [_rj("a", "a"), _rj("b", "b"), _rj("b-2", "b")], "herl.dev/job")
    assert (got.jobs, got.rayjobs) == (3, 3)
    assert (got.lost, got.doubled, got.stray) == (("c",), ("b",), ())
    assert not got.ok
    stray = rayjob_tally(jobs, [_rj("a", "a"), _rj("b", "b"), _rj("c", "c"), _rj("x", None)], "herl.dev/job")
    assert (stray.lost, stray.doubled, stray.stray) == ((), (), ("x",)) and not stray.ok
    clean = rayjob_tally(jobs, [_rj(j, j) for j in jobs], "herl.dev/job")
    assert clean.ok and (clean.jobs, clean.rayjobs) == (3, 3)


def test_operator_load_bench_fails_on_lost_doubled_stray_or_missing_status() -> None:
    spec = importlib.util.spec_from_file_location("operator_load", REPO / "bench" / "operator_load.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    clean = {"lost": [], "doubled": [], "stray_rayjobs": [], "without_status": []}
    assert bench.failures(clean) == []
    for key in clean:
        assert bench.failures(dict(clean, **{key: ["load-0001"]})) == [f"{key}: 1 (load-0001)"]
