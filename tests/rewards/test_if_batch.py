"""score_batch: parallel results equal serial ones, in input order; worker count follows the cores."""

from __future__ import annotations

import os

from herl.rewards import batch
from herl.rewards.batch import ScoreItem, score_batch


def _items() -> list[ScoreItem]:
    ifeval = {
        "instruction_id_list": ["punctuation:no_comma", "change_case:english_lowercase"],
        "kwargs": [{}, {}],
    }
    ifbench = {
        "instruction_id_list": ["count:word_count_range", "words:start_verb"],
        "kwargs": [{"min_words": 2, "max_words": 6}, {}],
    }
    muld = {"instruction_id_list": [["Length", "Words", "Use at most 4 words"], ["Style", "Tone", "Be kind"]]}
    responses = ["plain lowercase text here", "Mixed, Case text", "one two three", "", "x" * 500]
    items = []
    for i, r in enumerate(responses * 4):
        items.append(ScoreItem(r + f" {i}", ifeval, "ifeval"))
        items.append(ScoreItem(r, ifbench, "ifbench"))
        items.append(ScoreItem(r, muld, "muldimif"))
    items.append(ScoreItem("text", ifeval, "unknown-source"))
    items.append(ScoreItem("text", {"instruction_id_list": ["no:such"]}, "ifeval"))
    return items


def test_parallel_equals_serial_in_order() -> None:
    items = _items()
    serial = score_batch(items, workers=1)
    parallel = score_batch(items, workers=2, chunksize=3)  # many small chunks: order must survive
    assert parallel == serial
    assert len(serial) == len(items)
    assert serial[0].data_source == "ifeval" and serial[1].data_source == "ifbench"
    assert serial[-2].error is not None and serial[-1].error is not None
    # the same pool is reused across calls (workers initialised once)
    pool = batch.get_pool(2)
    assert (
        score_batch(
            [
                dict(response=i.response, ground_truth=i.ground_truth, data_source=i.data_source)
                for i in items
            ],
            workers=2,
        )
        == serial
    )
    assert batch.get_pool(2) is pool


def test_workers_zero_means_available_cores() -> None:
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert batch.resolve_workers(0) == expected == batch.available_cores()
    assert batch.resolve_workers(3) == 3


def test_serial_path_uses_no_pool() -> None:
    batch.shutdown_pool()
    results = score_batch(
        [("no commas", {"instruction_id_list": ["punctuation:no_comma"]}, "ifeval")], workers=1
    )
    assert results[0].score == 1.0
    assert batch._pool is None


def _die_in_worker(x: int) -> int:
    import os

    if os.getpid() != x:  # in a worker process: simulate the OOM killer
        os._exit(1)
    return x


def test_broken_pool_falls_back_to_serial() -> None:
    import os

    me = os.getpid()
    assert batch.parallel_map(_die_in_worker, [me] * 40, workers=2) == [me] * 40
    assert batch._pool is None  # discarded; the next batch builds a fresh one
    assert len(score_batch(_items(), workers=2)) == len(_items())
