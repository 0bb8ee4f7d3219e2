"""bench/metrics_publish.py, the script behind the publish cost in docs/benchmarks.md, runs and measures."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

from herl.metrics import synthetic

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "metrics_publish.py"


def test_metrics_publish_bench_measures_the_documented_workload() -> None:
    spec = importlib.util.spec_from_file_location("metrics_publish", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    got = bench.run(steps=30, scrapes=3, repeats=2)
    assert got["keys_per_step"] == len(synthetic.step_dict(1)) == 49
    assert got["series"] >= 50 and got["exposition_bytes"] > 5000
    for key in ("publish_ms_per_step", "scrape_ms"):
        assert 0 < got[f"{key}_best"] <= got[f"{key}_median"] and math.isfinite(got[f"{key}_median"])
    doc = (REPO / "docs" / "benchmarks.md").read_text()
    section = doc[doc.index("## Metrics") : doc.index("## Rewards")]
    assert "bench/metrics_publish.py --steps 2000 --scrapes 200 --repeats 5" in section
    assert f"{got['keys_per_step']} keys" in section and f"{got['series']} series" in section
