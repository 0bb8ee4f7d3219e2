"""bench/hindsight_overhead.py: revisions are scored against their own row, and its timings are wall time."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from herl.core import RevisionItem
from herl.rewards.instruction_following import score_if

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "hindsight_overhead.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hindsight_overhead", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


bench = _load()


def _row(instruction_id: str) -> dict:
    return {"reward_model": {"ground_truth": {"instruction_id_list": [instruction_id], "kwargs": [{}]}}}


def test_each_revision_is_scored_against_its_own_rows_constraints() -> None:
    lower, upper = _row("change_case:english_lowercase"), _row("change_case:english_capital")
    scorer = bench.RevisionScorer()
    text = "all of this answer is written in lower case"
    # the stage hands the scorer RevisionItem(record of the revised group, revision text, index)
    got = scorer([RevisionItem(lower, text, 0), RevisionItem(upper, text, 1), RevisionItem(lower, text, 2)])
    assert [r.all_met for r in got] == [True, False, True]
    for (record, _), res in zip([(lower, text), (upper, text)], got, strict=False):
        assert res == score_if(text, record["reward_model"]["ground_truth"], "ifeval")
    assert len(scorer.cache) == 2 and scorer.seconds > 0  # the repeat was a look-up; time is accounted


def test_stage_timings_are_wall_time_with_real_outcomes() -> None:
    got = bench.stage_wall(repeats=2, groups=6, group_size=4)
    assert got["revision_jobs"] > 0 and sum(got["outcomes"].values()) == 6
    timing_keys = [k for k in got if k.endswith(("_ms_median", "_ms_min"))]
    assert timing_keys and all("_wall_" in k for k in timing_keys) and not any("cpu" in k for k in got)
    assert 0 < got["stage_wall_ms_min"] <= got["stage_wall_ms_median"]
