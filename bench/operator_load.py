"""Operator load benchmark: 500 HeRLJobs created at once against kmock, with an operator restart.

The operator runs as a separate process (``python -m herl_operator --server <kmock>``) so its peak
RSS (VmHWM) is measured alone; kmock and this driver live in the parent. Phase 1 creates N jobs at
once and times how long until every job has its RayJob and a status. Phase 2 creates N more, kills
the operator when half of them are done, starts a fresh one, and checks that every job ends with
exactly one RayJob (nothing doubled or lost).

    .venv/bin/python bench/operator_load.py [--jobs 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import kmock
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "operator"))
from herl_operator import rbac  # noqa: E402
from herl_operator.kube import KubeClient  # noqa: E402
from op_helpers import declare_resources  # noqa: E402

NS = "bench"


def _doc(i: int, prefix: str) -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "manifests" / "samples" / "if-qwen2.5-7b.yaml").read_text())
    doc["metadata"] = {"name": f"{prefix}-{i:04d}", "namespace": NS, "uid": f"uid-{prefix}-{i}",
                       "generation": 1}
    return doc


def _state(emu: Any, names: list[str]) -> tuple[set[str], int]:
    done: set[str] = set()
    rayjobs = 0
    wanted = set(names)
    for (res, ns, name), obj in list(emu.objects.items()):
        if obj.deleted or ns != NS:
            continue
        if res.plural == "rayjobs" and name in wanted:
            rayjobs += 1
    for name in names:
        try:
            hj = emu.objects["herl.dev/v1alpha1/herljobs", NS, name]
            rj = emu.objects["ray.io/v1/rayjobs", NS, name]
        except KeyError:
            continue
        if not hj.deleted and not rj.deleted and (hj.raw.get("status") or {}).get("phase"):
            done.add(name)
    return done, rayjobs


def _start_operator(url: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "herl_operator", "--server", url, "--metrics-port", "0",
           "--resync-seconds", "30", "--liveness", ""]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def _create_all(client: KubeClient, docs: list[dict[str, Any]]) -> dict[str, float]:
    sem = asyncio.Semaphore(64)
    created: dict[str, float] = {}

    async def one(doc: dict[str, Any]) -> None:
        async with sem:
            await client.create(rbac.HERLJOBS, NS, doc)
            created[doc["metadata"]["name"]] = time.monotonic()

    await asyncio.gather(*(one(d) for d in docs))
    return created


async def _wait(emu: Any, names: list[str], created: dict[str, float], proc: subprocess.Popen[bytes],
                timeout: float, stop_at: int | None = None) -> tuple[dict[str, float], float]:
    finished: dict[str, float] = {}
    peak = 0.0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, _ = _state(emu, names)
        now = time.monotonic()
        for n in done - set(finished):
            finished[n] = now - created.get(n, now)
        peak = max(peak, _hwm_mb(proc.pid))
        if len(finished) == len(names) or (stop_at is not None and len(finished) >= stop_at):
            break
        await asyncio.sleep(0.05)
    return finished, peak


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else (values or [0])[0]


async def main(n: int) -> dict[str, Any]:
    async with kmock.KubernetesEmulator() as emu, kmock.Server(emu):
        declare_resources(emu)
        url = str(emu.url)
        client = KubeClient(url, max_concurrency=64, timeout=120)
        proc = _start_operator(url)
        try:
            # Warm-up: the operator is ready when a first job gets its RayJob.
            t0 = time.monotonic()
            await _create_all(client, [_doc(0, "warm")])
            await _wait(emu, ["warm-0000"], {"warm-0000": t0}, proc, 60)
            startup = time.monotonic() - t0

            names = [f"load-{i:04d}" for i in range(n)]
            t1 = time.monotonic()
            created = await _create_all(client, [_doc(i, "load") for i in range(n)])
            finished, peak = await _wait(emu, names, created, proc, 300)
            wall = time.monotonic() - t1
            lat = sorted(finished.values())

            # Phase 2: restart mid-load.
            names2 = [f"restart-{i:04d}" for i in range(n)]
            created2 = await _create_all(client, [_doc(i, "restart") for i in range(n)])
            half, peak2 = await _wait(emu, names2, created2, proc, 300, stop_at=n // 2)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            t2 = time.monotonic()
            proc = _start_operator(url)
            _fin2, peak3 = await _wait(emu, names2, {k: t2 for k in names2}, proc, 300)
            recover = time.monotonic() - t2
            all_names = ["warm-0000", *names, *names2]
            done, rayjobs = _state(emu, all_names)
            return {
                "jobs": n, "operator_startup_s": round(startup, 2),
                "phase1_wall_s": round(wall, 2), "phase1_jobs_per_s": round(len(finished) / wall, 1),
                "phase1_done": len(finished), "p50_s": round(_pct(lat, 50), 3), "p99_s": round(_pct(lat, 99), 3),
                "restart_done_before_kill": len(half), "restart_recovery_s": round(recover, 2),
                "all_done": len(done), "expected": len(all_names), "rayjobs": rayjobs,
                "duplicates_or_lost": len(all_names) - rayjobs,
                "operator_peak_rss_mb": round(max(peak, peak2, peak3), 1),
                "cpus": os.cpu_count(),
            }
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            await client.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=500)
    result = asyncio.run(main(ap.parse_args().jobs))
    print(json.dumps(result, indent=2))
