"""A test kubelet: one real node of the e2e control plane whose pods really run, on this machine.

    python tests/e2e/testkubelet.py --kubeconfig K --node head-0 --state DIR [--lower /]

kwok fakes the GPU and CPU nodes (their pods only pretend to run). This agent owns one more node,
``head-0`` (no kwok annotation, so kwok leaves it alone), and does for the pods bound to it what a
kubelet does, with the pieces this machine has (root, Linux namespaces, no container runtime):

* registers the Node (tainted ``herl.dev/test-kubelet``, so only pods that tolerate it land here) and
  keeps it Ready (status heartbeat + a Lease in ``kube-node-lease``);
* for each pod: a **network namespace of its own** with a veth pair, the pod side ``10.213.<n>.2``
  (non-loopback: the apiserver refuses loopback Endpoints and proxies) and the host side
  ``10.213.<n>.1``; the pod's volumes materialised (ConfigMaps, emptyDirs, hostPath PVs, the
  service-account token); the env resolved (values, fieldRefs, resourceFieldRefs, ConfigMap/Secret
  keys); the container's own command run by testkubelet_pod.py as PID 1 of a new PID namespace in a
  private mount namespace, on an overlay root (``--lower``: the host's ``/`` with the project's venv, or
  an unpacked image);
* status like a kubelet's: podIP/hostIP, phase, Ready from the pod's readiness probe (exec probes
  run inside the pod with nsenter, HTTP probes against the pod IP), container restarts per
  restartPolicy with restartCount and lastState, exit codes;
* deletion: SIGTERM to the container's PID 1, SIGKILL after the grace period, namespaces removed,
  then the pod object deleted (grace 0, uid precondition).

Only loopback, the veths and the namespaces this agent made are ever addressed. Container logs are
files under ``DIR/pods/<namespace>_<pod>/<container>.log`` (no kubelet log API: ``kubectl logs`` does
not work for these pods; the Ray dashboard's job logs do).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # PYTHONSAFEPATH: make siblings importable

from testkubelet_volumes import PodSetupError, container_mounts, materialise, resolve_env

JSON = dict[str, Any]
NODE_LABEL = "herl.dev/node-agent"
NODE_TAINT = {"key": "herl.dev/test-kubelet", "value": "true", "effect": "NoSchedule"}
HEARTBEAT_SECONDS = 10.0
POD_SCRIPT = Path(__file__).resolve().parent / "testkubelet_pod.py"


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
    env: dict[str, str]
    mounts: list[JSON]
    log: Path
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


class TestKubelet:
    def __init__(self, kubeconfig: str, node: str, state: Path, lower: str, base_env: dict[str, str]) -> None:
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(api)
        self.leases = client.CoordinationV1Api(api)
        self.api = api
        self.node, self.state, self.lower, self.base_env = node, state, lower, base_env
        self.net = Net(int(hashlib.sha256(str(state.resolve()).encode()).hexdigest(), 16) % 50)
        self.pods: dict[str, PodRuntime] = {}
        self.next_heartbeat = 0.0
        self.stopping = False

    # ---- node --------------------------------------------------------------------------------------

    def register(self) -> None:
        from kubernetes.client.exceptions import ApiException

        capacity = {"cpu": "16", "memory": "64Gi", "pods": "20", "ephemeral-storage": "100Gi"}
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node,
                "labels": {
                    NODE_LABEL: "test-kubelet",
                    "kubernetes.io/hostname": self.node,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "node-role.herl.dev/pool": "head",
                },
            },
            "spec": {"taints": [NODE_TAINT]},
        }
        with contextlib.suppress(ApiException):
            self.core.create_node(body)
        self.core.patch_node_status(
            self.node, {"status": {"capacity": capacity, "allocatable": capacity, **self._node_status()}}
        )

    def _node_status(self) -> JSON:
        t = now()
        return {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "herl test kubelet is posting ready status",
                    "lastHeartbeatTime": t,
                    "lastTransitionTime": t,
                }
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.net.host_ip},
                {"type": "Hostname", "address": self.node},
            ],
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "herl-test-kubelet",
                "kubeProxyVersion": "none",
                "containerRuntimeVersion": "herl-test://namespaces",
            },
        }

    def heartbeat(self) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        if time.monotonic() < self.next_heartbeat:
            return
        self.next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS
        self.core.patch_node_status(self.node, {"status": {"conditions": self._node_status()["conditions"]}})
        renew = datetime.now(UTC)
        try:
            lease = self.leases.read_namespaced_lease(self.node, "kube-node-lease")
            lease.spec.renew_time = renew
            self.leases.replace_namespaced_lease(self.node, "kube-node-lease", lease)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.leases.create_namespaced_lease(
                "kube-node-lease",
                client.V1Lease(
                    metadata=client.V1ObjectMeta(name=self.node),
                    spec=client.V1LeaseSpec(
                        holder_identity=self.node, lease_duration_seconds=40, renew_time=renew
                    ),
                ),
            )

    # ---- pods --------------------------------------------------------------------------------------

    def _free_index(self) -> int:
        used = {p.index for p in self.pods.values()}
        return next(i for i in range(1, 250) if i not in used)

    def start(self, pod: JSON) -> None:
        meta = pod["metadata"]
        index = self._free_index()
        folder = self.state / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid'][:8]}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        netns, ip = netns_up(self.net, index)
        rt = PodRuntime(meta["uid"], meta["namespace"], meta["name"], index, netns, ip, folder)
        self.pods[rt.uid] = rt
        pod.setdefault("status", {})["podIP"] = ip
        pod["status"]["hostIP"] = self.net.host_ip
        try:
            if pod["spec"].get("initContainers"):
                raise PodSetupError("init containers are not supported by the test kubelet")
            volumes = materialise(self.core, pod, folder / "volumes")
            for c in pod["spec"]["containers"]:
                rt.containers[c["name"]] = Container(
                    spec=c,
                    env=resolve_env(self.core, pod, c, {**self.base_env, "HOSTNAME": meta["name"]}),
                    mounts=container_mounts(c, volumes),
                    log=folder / f"{c['name']}.log",
                )
            for c in rt.containers.values():
                self._launch(rt, c)
        except (PodSetupError, KeyError, OSError) as exc:
            rt.error = f"{type(exc).__name__}: {exc}"

    def _launch(self, rt: PodRuntime, c: Container) -> None:
        argv = [*(c.spec.get("command") or []), *(c.spec.get("args") or [])]
        if not argv:
            raise PodSetupError(f"container {c.spec['name']}: no command (image entrypoints need --lower)")
        workdir = rt.folder / f"rootfs-{c.spec['name']}-{c.restarts}"
        spec = {
            "workdir": str(workdir),
            "lower": self.lower,
            "scratch_size": "2g",
            "shm_size": "2g",
            "mounts": c.mounts,
            "cwd": c.spec.get("workingDir") or "/",
            "argv": argv,
            "env": c.env,
        }
        spec_file = rt.folder / f"{c.spec['name']}.json"
        spec_file.write_text(json.dumps(spec))
        unshare = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child"]
        with open(c.log, "ab") as log:
            log.write(f"=== {now()} start #{c.restarts}: {' '.join(argv)}\n".encode())
            log.flush()
            c.proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    rt.netns,
                    *unshare,
                    "--",
                    sys.executable,
                    str(POD_SCRIPT),
                    str(spec_file),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        c.started_at, c.exit, c.ready = now(), None, False
        c.probe_due = time.monotonic() + float(
            (c.spec.get("readinessProbe") or {}).get("initialDelaySeconds", 0)
        )

    @staticmethod
    def _pid1(c: Container) -> int | None:
        """Host pid of the container's PID 1 (the child unshare forked)."""
        if c.proc is None:
            return None
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{c.proc.pid}/task").iterdir():
                kids = (task / "children").read_text().split()
                if kids:
                    return int(kids[0])
        return None

    def _probe(self, rt: PodRuntime, c: Container) -> None:
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
            pid = self._pid1(c)
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

    def tend(self, rt: PodRuntime, pod: JSON) -> None:
        """Reap exited containers, restart them per restartPolicy, run probes."""
        policy = pod["spec"].get("restartPolicy", "Always")
        for c in rt.containers.values():
            if c.proc is not None and c.exit is None and c.proc.poll() is not None:
                code = c.proc.returncode
                code = 128 - code if code < 0 else code
                c.exit = {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "startedAt": c.started_at,
                    "finishedAt": now(),
                }
                c.ready = False
                if policy == "Always" or (policy == "OnFailure" and code != 0):
                    c.last_exit, c.restarts = c.exit, c.restarts + 1
                    self._launch(rt, c)
            self._probe(rt, c)

    def stop(self, rt: PodRuntime, grace: float) -> None:
        for c in rt.containers.values():
            pid = self._pid1(c)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for c in rt.containers.values():
            if c.proc is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.proc.wait(max(0.1, deadline - time.monotonic()))
            if c.proc.poll() is None:
                c.proc.kill()  # unshare --kill-child: its PID 1 dies, and the PID namespace with it
                c.proc.wait(10)
        netns_down(self.net, rt.index)
        self.pods.pop(rt.uid, None)

    # ---- status ------------------------------------------------------------------------------------

    def pod_status(self, rt: PodRuntime, pod: JSON) -> JSON:
        t = rt.start_time
        if rt.error:
            return {
                "phase": "Failed" if pod["spec"].get("restartPolicy") == "Never" else "Pending",
                "reason": "CreateContainerConfigError",
                "message": rt.error[:1000],
                "podIP": rt.ip,
                "hostIP": self.net.host_ip,
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
            "hostIP": self.net.host_ip,
            "hostIPs": [{"ip": self.net.host_ip}],
            "startTime": t,
            "conditions": conds,
            "containerStatuses": statuses,
        }

    def report(self, rt: PodRuntime, pod: JSON) -> None:
        from kubernetes.client.exceptions import ApiException

        status = self.pod_status(rt, pod)
        key = json.dumps({k: v for k, v in status.items() if k != "conditions"}, sort_keys=True)
        key += json.dumps([c["status"] for c in status.get("conditions", [])])
        if key == rt.reported:
            return
        try:
            self.core.patch_namespaced_pod_status(rt.name, rt.namespace, {"status": status})
            rt.reported = key  # type: ignore[assignment]
        except ApiException as exc:
            if exc.status != 404:
                raise

    # ---- the loop ----------------------------------------------------------------------------------

    def sync(self) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        self.heartbeat()
        listed = self.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={self.node}")
        pods = {
            p["metadata"]["uid"]: p for p in (self.api.sanitize_for_serialization(i) for i in listed.items)
        }
        for uid in [u for u in self.pods if u not in pods]:  # force-deleted: stop at once
            self.stop(self.pods[uid], 0)
        for uid, pod in pods.items():
            meta, rt = pod["metadata"], self.pods.get(uid)
            if meta.get("deletionTimestamp"):
                if rt is not None:
                    self.stop(rt, float(meta.get("deletionGracePeriodSeconds") or 30))
                with contextlib.suppress(ApiException):
                    self.core.delete_namespaced_pod(
                        meta["name"],
                        meta["namespace"],
                        body=client.V1DeleteOptions(grace_period_seconds=0, preconditions={"uid": uid}),
                    )
                continue
            if rt is None:
                if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                    continue
                self.start(pod)
                rt = self.pods[uid]
            self.tend(rt, pod)
            self.report(rt, pod)

    def shutdown(self, *_: Any) -> None:
        self.stopping = True

    def serve(self) -> None:
        for index in leftover_netns(self.net):
            netns_down(self.net, index)
        self.register()
        signal.signal(signal.SIGTERM, self.shutdown)
        signal.signal(signal.SIGINT, self.shutdown)
        print(f"test kubelet: node {self.node} registered; lower layer {self.lower}", flush=True)
        while not self.stopping:
            try:
                self.sync()
            except Exception as exc:  # an apiserver restart must not kill the node
                print(f"test kubelet: sync failed: {type(exc).__name__}: {exc}", flush=True)
            time.sleep(1.0)
        for rt in list(self.pods.values()):
            self.stop(rt, 5)
        print("test kubelet: stopped", flush=True)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="testkubelet")
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--node", default="head-0")
    p.add_argument("--state", required=True, type=Path)
    p.add_argument("--lower", default="/", help="lower layer of every container's root (an image root)")
    p.add_argument("--path", default=os.environ.get("PATH", ""), help="PATH of the image env")
    args = p.parse_args(argv)
    # The image's env: like images/trainer, a fresh HOME (nothing of the host's ~/.ray or ~/.cache leaks
    # in; a host ~/.ray/auth_token would switch Ray's token auth on) and the offline caches by variable.
    cache = Path(os.environ.get("HERL_CACHE") or Path.home() / ".cache" / "herl")
    base_env = {
        "PATH": args.path,
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "HERL_CACHE": str(cache),
        "NLTK_DATA": os.environ.get("NLTK_DATA") or str(cache / "nltk_data"),
    }
    TestKubelet(args.kubeconfig, args.node, args.state, args.lower, base_env).serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
