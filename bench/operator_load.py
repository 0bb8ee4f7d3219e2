"""Operator load benchmark: N HeRLJobs created at once against kmock, with an operator restart.

The operator runs as a separate process (``python -m herl_operator --server <kmock>``) so its peak
RSS (VmHWM) is measured alone; kmock and this driver live in the parent. First the emulator's
ceiling is measured in a fresh emulator with no operator at all: per job the four writes of an
operator run (HeRLJob create, ConfigMap create, RayJob create, status patch), 64 jobs in flight,
as fast as this driver can send them. Phase 1 creates N jobs at once and times how long until
every job has its RayJob and a status. Phase 2 creates N more, kills the operator when half of them are done, starts a fresh
one, and checks that every job ends with exactly one RayJob and a status.

It reports, separately and by name (RayJobs counted per job by their ``herl.dev/job`` label, see
``op_helpers.rayjob_tally``): ``lost`` (no RayJob), ``doubled`` (more than one), ``stray`` (a RayJob
naming no job) and ``without_status``; it exits 1 when any of them is not empty.

    .venv/bin/python bench/operator_load.py [--jobs 500] [--stock-kmock] [--json out.json]
    .venv/bin/python bench/operator_load.py --real [--jobs 500]   # real control plane: operator_load_real.py
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import copy
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
from herl_operator import builders as b  # noqa: E402
from herl_operator import rbac  # noqa: E402
from herl_operator.kube import KubeClient  # noqa: E402
from op_helpers import declare_resources, rayjob_tally  # noqa: E402

from herl.api.validate import validate_document  # noqa: E402

NS = "bench"
SAMPLE = yaml.safe_load((REPO / "manifests" / "samples" / "if-qwen2.5-7b.yaml").read_text())
HERLJOBS = kmock.resource("herl.dev", "v1alpha1", "herljobs")
RAYJOBS = kmock.resource("ray.io", "v1", "rayjobs")


class BenchEmulator(kmock.KubernetesEmulator):
    """kmock with a bounded request log, plus a count of API calls by (action, resource).

    kmock 0.8 keeps every request it ever served (for test assertions) and routes each new request
    by testing it against every reaction, where each test walks that whole log
    (``View.__contains__`` → ``Filter.__iter__``): a call costs O(requests served so far), so a run
    with thousands of calls slows to a few calls per second whatever the client does. The bench
    asserts on objects only, so a request leaves the log once it is answered. Objects, watch
    streams and answers are exactly kmock's. ``--stock-kmock`` keeps the log (unmodified kmock).
    """

    trim_log = True

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.calls: collections.Counter[str] = collections.Counter()

    async def _handle(self, request: Any) -> Any:
        res = request.resource
        action = getattr(request.action, "value", request.action)
        self.calls[f"{action} {res.plural if res is not None else request.url.path}"] += 1
        try:
            return await super()._handle(request)
        finally:
            if self.trim_log:
                with contextlib.suppress(ValueError):
                    self._requests.remove(request)


class StockEmulator(BenchEmulator):
    trim_log = False


def _doc(i: int, prefix: str) -> dict[str, Any]:
    doc = copy.deepcopy(SAMPLE)
    doc["metadata"] = {
        "name": f"{prefix}-{i:04d}",
        "namespace": NS,
        "uid": f"uid-{prefix}-{i}",
        "generation": 1,
    }
    return doc


def _done(emu: Any, name: str) -> bool:
    objs = emu.objects._objects  # keyed by (resource, namespace, name); avoids re-parsing keys
    hj = objs.get((HERLJOBS, NS, name))
    rj = objs.get((RAYJOBS, NS, name))
    return (
        hj is not None
        and rj is not None
        and not hj.deleted
        and not rj.deleted
        and bool((hj.raw.get("status") or {}).get("phase"))
    )


def _live_rayjobs(emu: Any) -> list[dict[str, Any]]:
    """Every live RayJob in the namespace, whatever its name (a second RayJob for a job shows here)."""
    return [
        obj.raw
        for (res, ns, _), obj in list(emu.objects._objects.items())
        if res == RAYJOBS and ns == NS and not obj.deleted
    ]


def failures(result: dict[str, Any]) -> list[str]:
    """Why the run failed (empty: every job has exactly one RayJob and a status)."""
    out = []
    for key in ("lost", "doubled", "stray_rayjobs", "without_status"):
        if result[key]:
            out.append(f"{key}: {len(result[key])} ({', '.join(result[key][:10])})")
    return out


def _start_operator(url: str) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "herl_operator",
        "--server",
        url,
        "--metrics-port",
        "0",
        "--resync-seconds",
        "30",
        "--liveness",
        "",
    ]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _hwm_mb(pid: int, field: str = "VmHWM") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
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


async def _wait(
    emu: Any,
    names: list[str],
    created: dict[str, float],
    proc: subprocess.Popen[bytes],
    timeout: float,
    stop_at: int | None = None,
) -> tuple[dict[str, float], float]:
    finished: dict[str, float] = {}
    pending = list(names)
    peak = 0.0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.monotonic()
        still = []
        for n in pending:
            if _done(emu, n):
                finished[n] = now - created.get(n, now)
            else:
                still.append(n)
        pending = still
        peak = max(peak, _hwm_mb(proc.pid))
        if not pending or (stop_at is not None and len(finished) >= stop_at):
            break
        await asyncio.sleep(0.05)
    return finished, peak


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else (values or [0])[0]


async def ceiling(n: int, emu_cls: type[BenchEmulator]) -> dict[str, float]:
    """The emulator alone, no operator: for each of N jobs the writes the operator's run makes
    (the driver's HeRLJob create, then the ConfigMap create, the RayJob create and the status
    patch the operator would send, built by the same builders), 64 jobs in flight."""
    job, _ = validate_document(SAMPLE, "sample")
    assert job is not None
    async with emu_cls() as emu, kmock.Server(emu):
        declare_resources(emu)
        client = KubeClient(str(emu.url), max_concurrency=64, timeout=600)
        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            doc = _doc(i, "ceiling")
            name = doc["metadata"]["name"]
            ctx = b.Context(namespace=NS, uid=doc["metadata"]["uid"])
            named = job.model_copy(update={"metadata": job.metadata.model_copy(update={"name": name})})
            async with sem:
                await client.create(rbac.HERLJOBS, NS, doc)
                await client.create(rbac.CONFIGMAPS, NS, b.build_configmap(named, ctx, doc["spec"]))
                await client.create(rbac.RAYJOBS, NS, b.build_rayjob(named, ctx))
                await client.patch(rbac.HERLJOBS_STATUS, NS, name, {"status": {"phase": "Pending"}})

        try:
            t0 = time.monotonic()
            await asyncio.gather(*(one(i) for i in range(n)))
            wall = time.monotonic() - t0
        finally:
            await client.close()
    return {"jobs_per_s": round(n / wall, 1), "api_writes_per_s": round(4 * n / wall, 1)}


async def main(n: int, emu_cls: type[BenchEmulator]) -> dict[str, Any]:
    load_before = os.getloadavg()
    base = await ceiling(n, emu_cls)
    async with emu_cls() as emu, kmock.Server(emu):
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
            rss_idle = _hwm_mb(proc.pid, "VmRSS")
            calls_before = collections.Counter(emu.calls)

            names = [f"load-{i:04d}" for i in range(n)]
            docs = [_doc(i, "load") for i in range(n)]
            t1 = time.monotonic()
            created = await _create_all(client, docs)
            create_s = time.monotonic() - t1
            finished, peak = await _wait(emu, names, created, proc, 600)
            wall = time.monotonic() - t1
            lat = sorted(finished.values())
            calls = collections.Counter(emu.calls)
            calls.subtract(calls_before)
            rss_phase1 = _hwm_mb(proc.pid, "VmRSS")

            # Phase 2: restart mid-load.
            names2 = [f"restart-{i:04d}" for i in range(n)]
            created2 = await _create_all(client, [_doc(i, "restart") for i in range(n)])
            half, peak2 = await _wait(emu, names2, created2, proc, 600, stop_at=n // 2)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            t2 = time.monotonic()
            proc = _start_operator(url)
            _fin2, peak3 = await _wait(emu, names2, {k: t2 for k in names2}, proc, 600)
            recover = time.monotonic() - t2
            all_names = ["warm-0000", *names, *names2]
            without_status = [x for x in all_names if not _done(emu, x)]
            tally = rayjob_tally(all_names, _live_rayjobs(emu), b.LABEL_JOB)
            return {
                "jobs": n,
                "kmock": "stock" if not emu_cls.trim_log else "bounded request log",
                "ceiling_no_operator": base,
                "operator_startup_s": round(startup, 2),
                "phase1_create_s": round(create_s, 2),
                "phase1_wall_s": round(wall, 2),
                "phase1_jobs_per_s": round(len(finished) / wall, 1),
                "phase1_done": len(finished),
                "p50_s": round(_pct(lat, 50), 3),
                "p99_s": round(_pct(lat, 99), 3),
                "phase1_api_calls_per_job": {k: round(v / n, 2) for k, v in sorted(calls.items()) if v > 0},
                "restart_done_before_kill": len(half),
                "restart_recovery_s": round(recover, 2),
                "all_done": len(all_names) - len(without_status),
                "expected": len(all_names),
                "rayjobs": tally.rayjobs,
                "lost": list(tally.lost),
                "doubled": list(tally.doubled),
                "stray_rayjobs": list(tally.stray),
                "without_status": without_status,
                "operator_peak_rss_mb": round(max(peak, peak2, peak3), 1),
                "operator_rss_mb": {
                    "idle": round(rss_idle, 1),
                    "after_phase1": round(rss_phase1, 1),
                    "peak_phase1": round(peak, 1),
                    "peak_first": round(max(peak, peak2), 1),
                    "peak_restarted": round(peak3, 1),
                },
                "cpus": os.cpu_count(),
                "loadavg_before": [round(x, 2) for x in load_before],
                "loadavg_after": [round(x, 2) for x in os.getloadavg()],
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
    ap.add_argument("--stock-kmock", action="store_true", help="keep kmock's full request log")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    ap.add_argument("--real", action="store_true", help="on the real control plane, beside KubeRay")
    args = ap.parse_args()
    if args.real:
        sys.path.insert(0, str(REPO / "bench"))
        import operator_load_real

        raise SystemExit(operator_load_real.main(args.jobs, str(args.json) if args.json else None))
    result = asyncio.run(main(args.jobs, StockEmulator if args.stock_kmock else BenchEmulator))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    problems = failures(result)
    for line in problems:
        print(f"FAIL: {line}", file=sys.stderr)
    print(
        f"lost {len(result['lost'])}, doubled {len(result['doubled'])}, stray {len(result['stray_rayjobs'])}, "
        f"without status {len(result['without_status'])}: {'FAIL' if problems else 'OK'}"
    )
    sys.exit(1 if problems else 0)
