"""The test kubelet's runtime pieces: pod networking (a netns + veth per pod), the running state of a
pod and its containers, readiness probes, and the pod status a kubelet reports. No API calls here
(testkubelet.py talks to the apiserver)."""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from testkubelet_images import Root

JSON = dict[str, Any]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


# ---- network namespaces ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Net:
    """This agent's share of pod networking: one /16 and names of its own, so two control planes on the
    machine (two worktrees, two suites) never touch each other's namespaces, links or routes."""

    site: int  # 0..49, from the state folder

    @property
    def subnet(self) -> str:
        return f"10.{200 + self.site}"

    @property
    def host_ip(self) -> str:
        return f"{self.subnet}.0.1"

    def netns(self, index: int) -> str:
        return f"herl-tk{self.site}-{index}"

    def link(self, index: int, side: str) -> str:
        return f"tk{self.site}{side}{index}"  # ≤ 15 characters


def netns_up(net: Net, index: int) -> tuple[str, str]:
    """A netns with one veth pair: (netns name, pod IP). Host side <subnet>.<index>.1/24."""
    ns, host, peer = net.netns(index), net.link(index, "h"), net.link(index, "p")
    subnet = net.subnet
    netns_down(net, index)
    run("ip", "netns", "add", ns)
    run("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
    run("ip", "link", "set", peer, "netns", ns)
    run("ip", "addr", "add", f"{subnet}.{index}.1/24", "dev", host)
    run("ip", "link", "set", host, "up")
    inside = ("ip", "netns", "exec", ns, "ip")
    run(*inside, "link", "set", peer, "name", "eth0")
    run(*inside, "addr", "add", f"{subnet}.{index}.2/24", "dev", "eth0")
    run(*inside, "link", "set", "eth0", "up")
    run(*inside, "link", "set", "lo", "up")
    run(*inside, "route", "add", "default", "via", f"{subnet}.{index}.1")
    return ns, f"{subnet}.{index}.2"


def netns_down(net: Net, index: int) -> None:
    subprocess.run(["ip", "link", "del", net.link(index, "h")], capture_output=True)
    subprocess.run(["ip", "netns", "del", net.netns(index)], capture_output=True)


def leftover_netns(net: Net) -> list[int]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    prefix = net.netns(0)[:-1]
    return [int(w[len(prefix) :]) for w in out.split() if w.startswith(prefix)]


# ---- one pod ---------------------------------------------------------------------------------------


@dataclass
class Container:
    spec: JSON
    root: Root
    env: dict[str, str]
    mounts: list[JSON]
    log: Path
    groups: list[int] = field(default_factory=list)  # supplementary groups (the pod's fsGroup)
    proc: subprocess.Popen[bytes] | None = None
    started_at: str | None = None
    restarts: int = 0
    last_exit: JSON | None = None  # the terminated state of the previous run
    exit: JSON | None = None  # terminated state of the current run (None while running)
    ready: bool = False
    probe_due: float = 0.0


@dataclass
class PodRuntime:
    uid: str
    namespace: str
    name: str
    index: int
    netns: str
    ip: str
    folder: Path
    containers: dict[str, Container] = field(default_factory=dict)
    start_time: str = field(default_factory=now)
    error: str | None = None
    reported: JSON | None = None


def pid1(c: Container) -> int | None:
    """Host pid of the container's PID 1 (the child unshare forked)."""
    if c.proc is None:
        return None
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{c.proc.pid}/task").iterdir():
            kids = (task / "children").read_text().split()
            if kids:
                return int(kids[0])
    return None


def probe(rt: PodRuntime, c: Container) -> None:
    """One readiness check when due: exec probes inside the pod (nsenter), HTTP/TCP to the pod IP."""
    probe = c.spec.get("readinessProbe")
    if probe is None:
        c.ready = c.exit is None
        return
    if c.exit is not None or time.monotonic() < c.probe_due:
        return
    c.probe_due = time.monotonic() + float(probe.get("periodSeconds", 10))
    timeout = float(probe.get("timeoutSeconds", 1)) + 5  # generous: two busy cores
    ok = False
    if "exec" in probe:
        pid = pid1(c)
        if pid is not None:
            cmd = [
                "nsenter",
                "-t",
                str(pid),
                "-n",
                "-m",
                "-p",
                "-r",
                "-w",
                "--",
                *probe["exec"]["command"],
            ]
            with contextlib.suppress(subprocess.TimeoutExpired):
                ok = subprocess.run(cmd, capture_output=True, timeout=timeout, env=c.env).returncode == 0
    elif "httpGet" in probe:
        port = probe["httpGet"]["port"]
        if isinstance(port, str):
            port = next(p["containerPort"] for p in c.spec.get("ports") or [] if p.get("name") == port)
        url = f"http://{rt.ip}:{port}{probe['httpGet'].get('path', '/')}"
        with (
            contextlib.suppress(OSError, ValueError),
            urllib.request.urlopen(url, timeout=timeout) as resp,
        ):
            ok = 200 <= resp.status < 400
    elif "tcpSocket" in probe:
        import socket

        with (
            contextlib.suppress(OSError),
            socket.create_connection((rt.ip, int(probe["tcpSocket"]["port"])), 2),
        ):
            ok = True
    c.ready = ok


def pod_status(rt: PodRuntime, pod: JSON, host_ip: str) -> JSON:
    """The pod status a kubelet would report for ``rt``."""
    t = rt.start_time
    if rt.error:
        return {
            "phase": "Failed" if pod["spec"].get("restartPolicy") == "Never" else "Pending",
            "reason": "CreateContainerConfigError",
            "message": rt.error[:1000],
            "podIP": rt.ip,
            "hostIP": host_ip,
        }
    statuses, all_ready, all_done, any_failed = [], True, True, False
    policy = pod["spec"].get("restartPolicy", "Always")
    for name, c in rt.containers.items():
        running = c.exit is None
        state = {"running": {"startedAt": c.started_at}} if running else {"terminated": c.exit}
        st: JSON = {
            "name": name,
            "image": c.spec.get("image", ""),
            "imageID": "",
            "containerID": f"herl-test://{rt.uid[:8]}-{name}-{c.restarts}",
            "ready": c.ready and running,
            "started": running,
            "restartCount": c.restarts,
            "state": state,
        }
        if c.last_exit:
            st["lastState"] = {"terminated": c.last_exit}
        statuses.append(st)
        all_ready &= st["ready"]
        all_done &= not running
        any_failed |= (not running) and c.exit["exitCode"] != 0  # type: ignore[index]
    phase = "Running"
    if all_done and policy != "Always":
        phase = "Failed" if any_failed else "Succeeded"
    ready = "True" if all_ready and phase == "Running" else "False"
    conds = [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": t},
        {"type": "Initialized", "status": "True", "lastTransitionTime": t},
        {"type": "ContainersReady", "status": ready, "lastTransitionTime": t},
        {"type": "Ready", "status": ready, "lastTransitionTime": t},
    ]
    return {
        "phase": phase,
        "podIP": rt.ip,
        "podIPs": [{"ip": rt.ip}],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": t,
        "conditions": conds,
        "containerStatuses": statuses,
    }
