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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # PYTHONSAFEPATH: make siblings importable

from testkubelet_images import Root, host_root, image_root
from testkubelet_runtime import (
    Container,
    Net,
    PodRuntime,
    leftover_netns,
    netns_down,
    netns_up,
    now,
    pid1,
    pod_status,
    probe,
)
from testkubelet_volumes import PodSetupError, container_mounts, fs_group, materialise, resolve_env

JSON = dict[str, Any]
NODE_LABEL = "herl.dev/node-agent"
NODE_TAINT = {"key": "herl.dev/test-kubelet", "value": "true", "effect": "NoSchedule"}
HEARTBEAT_SECONDS = 10.0
POD_SCRIPT = Path(__file__).resolve().parent / "testkubelet_pod.py"


class TestKubelet:
    def __init__(
        self, kubeconfig: str, node: str, state: Path, roots: dict[str, Root], host: Root, shares: list[str]
    ) -> None:
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=kubeconfig)
        self.core = client.CoreV1Api(api)
        self.leases = client.CoordinationV1Api(api)
        self.api = api
        self.node, self.state, self.roots, self.host, self.shares = node, state, roots, host, shares
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
                root = self.root_of(c)
                shares = [{"kind": "bind", "source": p, "path": p, "read_only": True} for p in self.shares]
                shares += self._etc_files(rt, meta["name"])
                rt.containers[c["name"]] = Container(
                    spec=c,
                    root=root,
                    env=resolve_env(self.core, pod, c, {**root.env, "HOSTNAME": meta["name"]}),
                    mounts=shares + container_mounts(c, volumes, pod),
                    groups=[g for g in [fs_group(pod)] if g is not None],
                    log=folder / f"{c['name']}.log",
                )
            for c in rt.containers.values():
                self._launch(rt, c)
        except (PodSetupError, KeyError, OSError) as exc:
            rt.error = f"{type(exc).__name__}: {exc}"

    @staticmethod
    def _etc_files(rt: PodRuntime, hostname: str) -> list[JSON]:
        """/etc/hosts, /etc/hostname and /etc/resolv.conf as a kubelet writes them for a pod: the pod's
        own name resolves to its IP (Ray looks its hostname up at start; without this an image's
        resolver waits on an unreachable nameserver for 20 s and Ray's GCS start times out). There is
        no cluster DNS here: an empty resolv.conf makes lookups fail at once."""
        etc = rt.folder / "etc"
        etc.mkdir(exist_ok=True)
        files = {
            "hosts": f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{rt.ip}\t{hostname}\n",
            "hostname": f"{hostname}\n",
            "resolv.conf": "# herl test kubelet: no cluster DNS\n",
        }
        out = []
        for name, text in files.items():
            (etc / name).write_text(text)
            out.append({"kind": "bind", "source": str(etc / name), "path": f"/etc/{name}", "read_only": True})
        return out

    def root_of(self, container: JSON) -> Root:
        """The container's own image when we have it, else the host root standing in for it."""
        return self.roots.get(container.get("image", ""), self.host)

    def _launch(self, rt: PodRuntime, c: Container) -> None:
        argv = [*(c.spec.get("command") or []), *(c.spec.get("args") or [])]
        if not argv:
            raise PodSetupError(f"container {c.spec['name']}: no command (image entrypoints need --lower)")
        workdir = rt.folder / f"rootfs-{c.spec['name']}-{c.restarts}"
        spec = {
            "workdir": str(workdir),
            "lower": c.root.lower,
            "user": c.root.user,
            "groups": c.groups,
            "scratch_size": "2g",
            "shm_size": "2g",
            "mounts": c.mounts,
            "cwd": c.spec.get("workingDir") or c.root.cwd or "/",
            "hostname": rt.name[:63],
            "argv": argv,
            "env": c.env,
        }
        spec_file = rt.folder / f"{c.spec['name']}.json"
        spec_file.write_text(json.dumps(spec))
        unshare = [
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "--pid",
            "--fork",
            "--kill-child",
        ]
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
            probe(rt, c)

    def stop(self, rt: PodRuntime, grace: float) -> None:
        for c in rt.containers.values():
            pid = pid1(c)
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

    def report(self, rt: PodRuntime, pod: JSON) -> None:
        from kubernetes.client.exceptions import ApiException

        status = pod_status(rt, pod, self.net.host_ip)
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
        images = ", ".join(self.roots) or "none (every pod on the host root)"
        print(f"test kubelet: node {self.node} registered; images: {images}", flush=True)
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
    p.add_argument(
        "--image", action="append", default=[], help="REF[=OCI archive]: an image pods really run from"
    )
    p.add_argument(
        "--host-share", action="append", default=[], help="a host folder mounted read-only at its path"
    )
    p.add_argument("--venv-bin", default=str(Path(sys.executable).parent), help="host root: the venv's bin")
    args = p.parse_args(argv)
    roots: dict[str, Root] = {}
    try:
        for item in args.image:
            ref, _, archive = item.partition("=")
            roots[ref] = image_root(ref, Path(archive) if archive else None)
            print(f"test kubelet: image {ref} at {roots[ref].lower} (user {roots[ref].user})", flush=True)
        TestKubelet(
            args.kubeconfig, args.node, args.state, roots, host_root(args.venv_bin), args.host_share
        ).serve()
    except RuntimeError as exc:
        print(f"test kubelet: {exc}", flush=True)
        return 1
    finally:
        for root in roots.values():
            root.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
