"""Scoring many responses at once, in worker processes that scale with the cores we are given.

Why processes: the checkers are pure Python (regexes, NLTK tokenizers, langdetect), so threads would share
one GIL. Why a long-lived pool: every worker pays ~2 s once to import nltk/langdetect and both checker
registries; a pool created per batch would pay it every training step. The pool is created on first use,
kept for the life of the process (``shutdown_pool`` closes it) and recreated only if the worker count
changes. Workers are started with ``forkserver`` on Linux: forking the trainer itself is unsafe once
it runs threads (Ray, torch), and ``spawn`` would re-import everything per worker; the fork server is a
clean single-threaded process that pre-imports the checkers once, so each worker starts warm.

Order is preserved and work is sent in chunks (a few per worker) to keep the IPC cost per item small.
``workers=1`` scores in this process with no pool at all.
"""

from __future__ import annotations

import atexit
import logging
import math
import multiprocessing as mp
import os
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

from herl.rewards import checkers
from herl.rewards.instruction_following import score_if
from herl.rewards.types import RewardResult

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

CHUNKS_PER_WORKER = 16
# Below this many items the pool's IPC costs more than it saves (a few ms per item at most): run here.
MIN_PARALLEL_ITEMS = 16


@dataclass(frozen=True)
class ScoreItem:
    """One response to score (the arguments of :func:`score_if`)."""

    response: str
    ground_truth: Any
    data_source: str
    prompt: str = ""


def available_cores() -> int:
    """CPUs this process may run on (cgroup/affinity aware where the OS tells us), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int) -> int:
    """``0`` (or negative) means one worker per available core."""
    return available_cores() if workers <= 0 else workers


_pool_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_workers = 0


def _init_worker() -> None:
    checkers.warm_up()


def _context() -> mp.context.BaseContext:
    method = os.environ.get("HERL_REWARD_MP_START") or (
        "forkserver" if sys.platform.startswith("linux") else "spawn"
    )
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["herl.rewards._warm"])
    return ctx


def get_pool(workers: int) -> ProcessPoolExecutor:
    """The shared pool with ``workers`` processes (created once; replaced if the size changes)."""
    global _pool, _pool_workers
    with _pool_lock:
        if _pool is not None and _pool_workers == workers:
            return _pool
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
        checkers.configure_nltk()  # the fork server and workers inherit NLTK_DATA from here
        _pool = ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=_init_worker)
        _pool_workers = workers
        return _pool


def warm_pool(workers: int = 0) -> int:
    """Start every worker now (imports included) so the first real batch is not slowed down."""
    n = resolve_workers(workers)
    if n > 1:
        pool = get_pool(n)
        list(pool.map(_noop, range(n * 2)))
    else:
        checkers.warm_up()
    return n


def _noop(i: int) -> int:
    return i


def _stop_pool(*, wait: bool) -> None:
    global _pool, _pool_workers
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=wait, cancel_futures=True)
        _pool, _pool_workers = None, 0


def shutdown_pool() -> None:
    """Stop the worker processes (also runs at interpreter exit)."""
    _stop_pool(wait=True)


def _discard_pool() -> None:
    """Drop a broken pool without waiting for its dead workers."""
    _stop_pool(wait=False)


atexit.register(shutdown_pool)


def _apply_chunk(func: Callable[[T], R], chunk: Sequence[T]) -> list[R]:
    return [func(x) for x in chunk]


def parallel_map(
    func: Callable[[T], R], items: Sequence[T], workers: int = 0, chunksize: int | None = None
) -> list[R]:
    """``[func(x) for x in items]`` across the pool, in order. ``func`` must be a module-level function."""
    n = resolve_workers(workers)
    items = list(items)
    if n == 1 or len(items) < MIN_PARALLEL_ITEMS:
        return [func(x) for x in items]
    size = chunksize or max(1, math.ceil(len(items) / (n * CHUNKS_PER_WORKER)))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    try:
        pool = get_pool(n)
        futures = [pool.submit(_apply_chunk, func, chunk) for chunk in chunks]
        out: list[R] = []
        for fut in futures:
            out.extend(fut.result())
        return out
    except BrokenProcessPool as exc:
        # A worker died (OOM killer, signal). Scoring must not stop training: drop the pool (the next
        # batch builds a fresh one) and score this batch here.
        log.warning("reward worker pool broke (%s); scoring %d items in-process", exc, len(items))
        _discard_pool()
        return [func(x) for x in items]


def _as_item(item: ScoreItem | Mapping[str, Any] | Sequence[Any]) -> ScoreItem:
    if isinstance(item, ScoreItem):
        return item
    if isinstance(item, Mapping):
        return ScoreItem(
            response=item["response"],
            ground_truth=item["ground_truth"],
            data_source=item["data_source"],
            prompt=item.get("prompt", "") or "",
        )
    return ScoreItem(*item)


def score_item(item: ScoreItem) -> RewardResult:
    """Module-level so worker processes can receive it by reference."""
    return score_if(item.response, item.ground_truth, item.data_source, prompt=item.prompt)


def score_batch(
    items: Iterable[ScoreItem | Mapping[str, Any] | Sequence[Any]],
    workers: int = 0,
    chunksize: int | None = None,
) -> list[RewardResult]:
    """Score every item (``ScoreItem``, a dict with the same keys, or a tuple), results in input order.

    ``workers=0`` uses every available core; ``workers=1`` runs serially in this process.
    """
    return parallel_map(score_item, [_as_item(x) for x in items], workers=workers, chunksize=chunksize)
