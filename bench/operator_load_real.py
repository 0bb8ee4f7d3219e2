"""Operator load on the real control plane, side by side with KubeRay in the same run.

A real kube-apiserver, controller-manager, scheduler, kwok nodes and KubeRay (tests/e2e/devcluster.py);
our operator runs as the chart's ServiceAccount. N HeRLJobs are created at once (64 requests in
flight); two watches record when each RayJob (ours) and each RayCluster (KubeRay's) appears. Then N
more are created, so the operator holds 2·N jobs, and its peak RSS (VmHWM) is read after a full resync.

    .venv/bin/python bench/operator_load.py --real [--jobs 500] [--json out.json]

Reported: jobs/s and p50/p99 of HeRLJob→RayJob (ours) and RayJob→RayCluster (KubeRay's), the
operator's peak RSS, and doubled / lost jobs separately. Exits non-zero on a doubled or lost job or a
missed goal (≥ 50 jobs/s, p99 ≤ 2 s, ≤ 150 MB at 2·N = 1,000 jobs).
"""

from __future__ import annotations

import asyncio
import collections
import json
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from devcluster import DevCluster  # noqa: E402
from e2e_support import Kube, OperatorProcess, herljob, install_release  # noqa: E402
from operator_load import _hwm_mb, _pct  # noqa: E402

NS = "bench"
GOALS = {"jobs_per_s": 50.0, "p99_s": 2.0, "rss_mb": 150.0}


class Api:
    """Admin calls and watches for the driver (the operator under test never uses this)."""

    def __init__(self, dc: DevCluster) -> None:
        self.base = dc.server
        self.headers = {"Authorization": f"Bearer {dc.pki.tokens()['admin']}"}
        self.ssl = ssl.create_default_context(cafile=str(dc.pki.ca))
        self.session = aiohttp.ClientSession(
            headers=self.headers,
            connector=aiohttp.TCPConnector(ssl=self.ssl, limit=64),
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
        )

    async def create(self, path: str, body: dict[str, Any]) -> None:
        async with self.session.post(self.base + path, json=body) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"create {path}: {resp.status} {await resp.text()}")

    async def watch(self, path: str, seen: dict[str, float], key: Any) -> None:
        """Record the first time each object is seen (ADDED), by ``key(object)``, until cancelled."""
        rv = ""
        while True:
            params = {"watch": "1", "allowWatchBookmarks": "false"}
            if rv:
                params["resourceVersion"] = rv
            async with self.session.get(self.base + path, params=params) as resp:
                async for line in resp.content:
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                    k = key(obj)
                    if event.get("type") == "ADDED" and k and k not in seen:
                        seen[k] = time.monotonic()

    async def count(self, path: str) -> list[dict[str, Any]]:
        async with self.session.get(self.base + path) as resp:
            return (await resp.json()).get("items", [])

    async def close(self) -> None:
        await self.session.close()


def _latencies(start: dict[str, float], end: dict[str, float]) -> list[float]:
    return sorted(end[k] - start[k] for k in start if k in end)


async def _phase(
    api: Api,
    names: list[str],
    created: dict[str, float],
    rayjobs: dict[str, float],
    clusters: dict[str, float],
    timeout: float,
) -> None:
    sem = asyncio.Semaphore(64)

    async def one(name: str) -> None:
        async with sem:
            doc = herljob(name, NS, resources={"workers": 1})
            await api.create(f"/apis/herl.dev/v1alpha1/namespaces/{NS}/herljobs", doc)
            created[name] = time.monotonic()

    await asyncio.gather(*(one(n) for n in names))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(n in rayjobs and n in clusters for n in names):
        await asyncio.sleep(0.2)


async def run(n: int, timeout: float = 600.0) -> dict[str, Any]:
    dc = DevCluster(folder=REPO / ".cluster-bench")
    if dc.load():
        dc.down()
    dc.up(log=lambda m: print(m, file=sys.stderr, flush=True))
    op: OperatorProcess | None = None
    api: Api | None = None
    try:
        kube = Kube(dc)
        sa = install_release(dc, kube)
        kube.run("create", "namespace", NS)
        op = OperatorProcess(dc, sa)
        op.write_kubeconfig(op.token())
        op.start("--resync-seconds=30")
        api = Api(dc)
        created: dict[str, float] = {}
        rayjobs: dict[str, float] = {}
        clusters: dict[str, float] = {}
        watches = [
            asyncio.create_task(
                api.watch(
                    f"/apis/ray.io/v1/namespaces/{NS}/rayjobs",
                    rayjobs,
                    lambda o: (o.get("metadata") or {}).get("name"),
                )
            ),
            asyncio.create_task(
                api.watch(
                    f"/apis/ray.io/v1/namespaces/{NS}/rayclusters",
                    clusters,
                    lambda o: next(
                        (
                            r["name"]
                            for r in (o.get("metadata") or {}).get("ownerReferences") or []
                            if r.get("kind") == "RayJob"
                        ),
                        None,
                    ),
                )
            ),
        ]
        await asyncio.sleep(1.0)  # both watches established
        first = [f"load-a-{i:04d}" for i in range(n)]
        t0 = time.monotonic()
        await _phase(api, first, created, rayjobs, clusters, timeout)
        t_ours = max((rayjobs[k] for k in first if k in rayjobs), default=t0) - t0
        t_kuberay = max((clusters[k] for k in first if k in clusters), default=t0) - t0
        ours = _latencies(created, rayjobs)
        kuberay = _latencies(rayjobs, clusters)

        second = [f"load-b-{i:04d}" for i in range(n)]
        await _phase(api, second, created, rayjobs, clusters, timeout)
        await asyncio.sleep(35)  # one full resync pass over all 2·N jobs
        rss = _hwm_mb(op.proc.pid) if op.proc else 0.0

        all_rj = await api.count(f"/apis/ray.io/v1/namespaces/{NS}/rayjobs")
        per_job = collections.Counter((r["metadata"].get("labels") or {}).get("herl.dev/job") for r in all_rj)
        names = first + second
        doubled = sorted(k for k, v in per_job.items() if v > 1)
        lost = sorted(k for k in names if per_job.get(k, 0) == 0)
        for w in watches:
            w.cancel()
        result = {
            "jobs": n,
            "jobs_held": len(names),
            "ours": {
                "jobs_per_s": round(len([k for k in first if k in rayjobs]) / max(t_ours, 1e-9), 1),
                "p50_s": round(_pct(ours, 50), 3),
                "p99_s": round(_pct(ours, 99), 3),
                "done": len([k for k in first if k in rayjobs]),
            },
            "kuberay": {
                "jobs_per_s": round(len([k for k in first if k in clusters]) / max(t_kuberay, 1e-9), 1),
                "p50_s": round(_pct(kuberay, 50), 3),
                "p99_s": round(_pct(kuberay, 99), 3),
                "done": len([k for k in first if k in clusters]),
            },
            "operator_peak_rss_mb": round(rss, 1),
            "doubled": doubled,
            "lost": lost,
        }
        return result
    finally:
        if api is not None:
            await api.close()
        if op is not None:
            op.stop()
        dc.down()


def report(result: dict[str, Any]) -> int:
    o, k = result["ours"], result["kuberay"]
    print(f"real control plane, {result['jobs']} HeRLJobs at once (then {result['jobs_held']} held):")
    print(
        f"  HeRLJob → RayJob    (herl operator): {o['jobs_per_s']:7.1f} jobs/s  p50 {o['p50_s']:.3f} s  "
        f"p99 {o['p99_s']:.3f} s  ({o['done']}/{result['jobs']})"
    )
    print(
        f"  RayJob  → RayCluster (KubeRay)     : {k['jobs_per_s']:7.1f} jobs/s  p50 {k['p50_s']:.3f} s  "
        f"p99 {k['p99_s']:.3f} s  ({k['done']}/{result['jobs']})"
    )
    print(f"  operator peak RSS at {result['jobs_held']} jobs: {result['operator_peak_rss_mb']:.1f} MB")
    print(
        f"  doubled: {len(result['doubled'])} {result['doubled'][:5]}   lost: {len(result['lost'])} "
        f"{result['lost'][:5]}"
    )
    failures = []
    if result["doubled"]:
        failures.append(f"{len(result['doubled'])} jobs doubled")
    if result["lost"]:
        failures.append(f"{len(result['lost'])} jobs lost")
    if o["jobs_per_s"] < GOALS["jobs_per_s"]:
        failures.append(f"{o['jobs_per_s']} jobs/s < {GOALS['jobs_per_s']}")
    if o["p99_s"] > GOALS["p99_s"]:
        failures.append(f"p99 {o['p99_s']} s > {GOALS['p99_s']} s")
    if result["jobs_held"] >= 1000 and result["operator_peak_rss_mb"] > GOALS["rss_mb"]:
        failures.append(f"RSS {result['operator_peak_rss_mb']} MB > {GOALS['rss_mb']} MB")
    print("goals: " + ("met" if not failures else "MISSED: " + "; ".join(failures)))
    return 1 if result["doubled"] or result["lost"] else (2 if failures else 0)


def main(n: int, json_out: str | None) -> int:
    result = asyncio.run(run(n))
    if json_out:
        Path(json_out).write_text(json.dumps(result, indent=1))
    return report(result)
