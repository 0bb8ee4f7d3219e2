"""What publishing metrics costs the training loop: ``StepMetricsPublisher.publish`` and ``/metrics``.

Workload: ``--steps`` synthetic step dicts (``herl.metrics.synthetic.step_dicts``: every key the
publisher maps, 48 keys per step, as both engines log them) published one after another into a fresh
publisher, then ``--scrapes`` text expositions of the resulting registry (what a Prometheus scrape
of ``/metrics`` renders). Each of ``--repeats`` rounds uses a fresh publisher; the best round is
reported (load from other processes only ever adds time), with the median beside it. Wall time
(``perf_counter``) is what a training step pays; CPU time of this process is shown too.

    .venv/bin/python bench/metrics_publish.py [--steps 2000] [--scrapes 200] [--repeats 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from herl.metrics import synthetic
from herl.metrics.publisher import StepMetricsPublisher


def one_round(steps: int, scrapes: int) -> dict[str, float]:
    dicts = list(synthetic.step_dicts(steps))  # built outside the timing: the trainer has them anyway
    pub = StepMetricsPublisher("bench", "bench", clock=lambda: 1000.0)
    w0, c0 = time.perf_counter(), time.process_time()
    for d in dicts:
        pub.publish(d)
    publish_wall, publish_cpu = time.perf_counter() - w0, time.process_time() - c0
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(scrapes):
        body = pub.exposition()
    scrape_wall, scrape_cpu = time.perf_counter() - w0, time.process_time() - c0
    series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    pub.close()
    return {
        "publish_ms_per_step": publish_wall / steps * 1e3,
        "publish_cpu_ms_per_step": publish_cpu / steps * 1e3,
        "scrape_ms": scrape_wall / scrapes * 1e3,
        "scrape_cpu_ms": scrape_cpu / scrapes * 1e3,
        "series": series,
        "bytes": len(body),
        "keys_per_step": len(dicts[0]),
    }


def run(steps: int, scrapes: int, repeats: int) -> dict[str, Any]:
    load_before = os.getloadavg()
    rounds = [one_round(steps, scrapes) for _ in range(repeats)]
    out: dict[str, Any] = {
        "steps": steps,
        "scrapes": scrapes,
        "repeats": repeats,
        "keys_per_step": rounds[0]["keys_per_step"],
        "series": rounds[0]["series"],
        "exposition_bytes": rounds[0]["bytes"],
    }
    for key in ("publish_ms_per_step", "publish_cpu_ms_per_step", "scrape_ms", "scrape_cpu_ms"):
        values = [r[key] for r in rounds]
        out[f"{key}_best"] = round(min(values), 4)
        out[f"{key}_median"] = round(statistics.median(values), 4)
    out["python"] = sys.version.split()[0]
    out["prometheus_client"] = importlib.metadata.version("prometheus-client")
    out["cpus"] = os.cpu_count()
    out["loadavg_before"] = [round(x, 2) for x in load_before]
    out["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--scrapes", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = ap.parse_args(argv)
    result = run(args.steps, args.scrapes, args.repeats)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
