"""A real Kubernetes control plane on one machine, from binaries built out of upstream Go modules.

    python tests/e2e/devcluster.py up [--kueue]   # make cluster: build (once), start, wait until ready
    python tests/e2e/devcluster.py down    # make cluster-down: stop everything it started
    python tests/e2e/devcluster.py status

Start order: etcd → kube-apiserver (RBAC, service-account keys, OwnerReferencesPermissionEnforcement)
→ CRDs (KubeRay's, ours) and Nodes → kube-controller-manager (garbage collector, namespace lifecycle,
service accounts, endpoints) → kube-scheduler → kwok (fake GPU and CPU nodes whose pods run) → the
KubeRay operator. Each process is a session leader with its log under ``.cluster/logs/``; its pid is in
``.cluster/state.json`` so ``down`` (another process) can stop it. The pytest fixture in
``tests/e2e/conftest.py`` drives the same :class:`DevCluster`.

Why our own supervisor rather than kwokctl: kwokctl generates its PKI and flags its own way and was
not shown to run offline; the flags here are envtest's (``real-cluster.md`` §3) plus what the suite
needs, and a restart of one component (the apiserver, for the watch-resume test) is one call.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # PYTHONSAFEPATH: make siblings importable

import devcluster_kueue as kueue
import yaml
from devcluster_nodes import nodes_manifest, stages_manifest
from devcluster_pki import Pki

from herl.metrics.promserver import free_port, poll_until

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_VERSION = "v1.36.3"
GPU_NODES = ("gpu-0", "gpu-1")
CPU_NODES = ("cpu-0",)
TEST_KUBELET_NODE = "head-0"
SERVICE_CIDR = "10.96.0.0/24"


class ClusterError(RuntimeError):
    """The control plane could not be built or started; the message says which step and why."""


def build_binaries(modules: tuple[str, ...] = ("k8s", "kuberay")) -> dict[str, Path]:
    """Run scripts/cluster/build.sh (cached: seconds when warm) and return every binary by name."""
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts/cluster/build.sh"), *modules], stdout=subprocess.PIPE, text=True
    )
    if proc.returncode != 0:
        raise ClusterError(
            f"scripts/cluster/build.sh {' '.join(modules)} failed (exit {proc.returncode}); "
            "its output above names the failing step"
        )
    bins: dict[str, Path] = {}
    for line in proc.stdout.splitlines():
        _, _, folder = line.partition("=")
        for exe in Path(folder).iterdir():
            if exe.is_file() and os.access(exe, os.X_OK):
                bins[exe.name] = exe
    return bins


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


@dataclass
class DevCluster:
    """One control plane under ``folder`` (default ``.cluster/``)."""

    folder: Path = field(default_factory=lambda: ROOT / ".cluster")
    bins: dict[str, Path] = field(default_factory=dict)
    state: dict = field(default_factory=dict)
    with_kueue: bool = False
    #: "REF=ARCHIVE" of images the test kubelet runs pods from (others run on the host root).
    kubelet_images: tuple[str, ...] = ()
    #: Host folders mounted read-only, at their own path, into every test-kubelet container.
    host_shares: tuple[str, ...] = ()

    # ---- paths and clients ---------------------------------------------------------------------

    @property
    def pki(self) -> Pki:
        return Pki(self.folder / "pki")

    @property
    def kubeconfig(self) -> Path:
        return self.folder / "kubeconfig"

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.state['ports']['apiserver']}"

    def component_kubeconfig(self, name: str) -> Path:
        return self.folder / "kubeconfigs" / f"{name}.yaml"

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.bins["kubectl"]), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def get_json(self, path: str, token: str | None = None) -> tuple[int, dict]:
        """GET an apiserver path as admin (or with ``token``); (status, body)."""
        ctx = ssl.create_default_context(cafile=str(self.pki.ca))
        req = urllib.request.Request(
            self.server + path,
            headers={
                "Authorization": f"Bearer {token or self.pki.tokens()['admin']}",
                "Accept": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
                body = resp.read()
                return resp.status, (json.loads(body) if body.startswith(b"{") else {"text": body.decode()})
        except urllib.error.HTTPError as exc:
            return exc.code, {"text": exc.read().decode(errors="replace")}

    # ---- processes -----------------------------------------------------------------------------

    def _save(self) -> None:
        (self.folder / "state.json").write_text(json.dumps(self.state, indent=1))

    def load(self) -> bool:
        path = self.folder / "state.json"
        if not path.exists():
            return False
        self.state = json.loads(path.read_text())
        return True

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{name}.log", "ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        self.state.setdefault("pids", {})[name] = proc.pid
        self.state.setdefault("argv", {})[name] = argv
        self._save()

    @staticmethod
    def _running(pid: int) -> bool:
        """Alive and not a zombie (a child of ours that exited is reaped here)."""
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0]:
                return False
        return True

    def alive(self, name: str) -> bool:
        pid = self.state.get("pids", {}).get(name)
        return bool(pid) and self._running(pid)

    def kill(self, name: str, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
        pid = self.state.get("pids", {}).pop(name, None)
        self._save()
        if not pid:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not self._running(pid):
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)

    def wait(self, what: str, ready: Callable[[], bool], timeout: float, log: str | None = None) -> None:
        """Poll ``ready`` (connection errors count as not yet); fail at once if ``log``'s process exits."""
        log_file = self.logs / f"{log}.log"

        def check() -> bool:
            if log and not self.alive(log):
                raise ClusterError(
                    f"{log} exited while waiting for {what}; last lines of {log_file}:\n{log_tail(log_file)}"
                )
            try:
                return ready()
            except (OSError, ValueError, ssl.SSLError):
                return False

        try:
            poll_until(check, timeout, what)
        except TimeoutError as exc:
            tail = f"\nlast lines of its log:\n{log_tail(log_file)}" if log else ""
            raise ClusterError(f"{exc}{tail}") from None

    # ---- components ----------------------------------------------------------------------------

    def start_etcd(self) -> None:
        p = self.state["ports"]
        client, peer = f"http://127.0.0.1:{p['etcd']}", f"http://127.0.0.1:{p['etcd_peer']}"
        self.spawn(
            "etcd",
            [
                str(self.bins["etcd"]),
                "--data-dir",
                str(self.folder / "etcd"),
                "--listen-client-urls",
                client,
                "--advertise-client-urls",
                client,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                f"default={peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            with urllib.request.urlopen(f"{client}/health", timeout=2) as resp:
                return b'"true"' in resp.read()

        self.wait("etcd /health", healthy, 60, log="etcd")

    def apiserver_argv(self) -> list[str]:
        p, pki = self.state["ports"], self.pki
        return [
            str(self.bins["kube-apiserver"]),
            f"--etcd-servers=http://127.0.0.1:{p['etcd']}",
            f"--secure-port={p['apiserver']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--cert-dir={self.folder / 'apiserver-certs'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca}",
            f"--token-auth-file={pki.token_file}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
            "--profiling=false",
            "--v=1",
        ]

    def start_apiserver(self) -> None:
        self.spawn("kube-apiserver", self.apiserver_argv())
        self.wait(
            "kube-apiserver /readyz", lambda: self.get_json("/readyz")[0] == 200, 120, log="kube-apiserver"
        )

    def restart_apiserver(self) -> None:
        """Stop and start the apiserver with the same flags (clients must resume their watches)."""
        self.kill("kube-apiserver")
        self.start_apiserver()

    def start_controller_manager(self) -> None:
        kc, pki = self.component_kubeconfig("controller-manager"), self.pki
        self.spawn(
            "kube-controller-manager",
            [
                str(self.bins["kube-controller-manager"]),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--leader-elect=false",
                "--controllers=*",
                "--use-service-account-credentials=false",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca}",
                f"--secure-port={self.state['ports']['controller-manager']}",
                "--bind-address=127.0.0.1",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--v=1",
            ],
        )
        # Ready when the service-account controller has made `default` in `default`: pods need it.
        self.wait(
            "the default ServiceAccount (kube-controller-manager)",
            lambda: self.get_json("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
            90,
            log="kube-controller-manager",
        )

    def start_scheduler(self) -> None:
        kc = self.component_kubeconfig("scheduler")
        port = self.state["ports"]["scheduler"]
        self.spawn(
            "kube-scheduler",
            [
                str(self.bins["kube-scheduler"]),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--leader-elect=false",
                f"--secure-port={port}",
                "--bind-address=127.0.0.1",
                "--v=1",
            ],
        )
        ctx = ssl._create_unverified_context()  # its self-signed serving cert; loopback only

        def healthy() -> bool:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=ctx, timeout=2) as r:
                return r.status == 200

        self.wait("kube-scheduler /healthz", healthy, 60, log="kube-scheduler")

    def start_kwok(self) -> None:
        stages = self.folder / "kwok-stages.yaml"
        stages.write_text(stages_manifest(module_dir("sigs.k8s.io/kwok")))
        self.spawn(
            "kwok",
            [
                str(self.bins["kwok"]),
                f"--kubeconfig={self.component_kubeconfig('kwok')}",
                f"--config={stages}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-lease-duration-seconds=40",
                "--cidr=10.244.0.0/16",
                "--node-ip=10.244.255.1",
                f"--server-address=127.0.0.1:{self.state['ports']['kwok']}",
            ],
        )

        def nodes_ready() -> bool:
            _, body = self.get_json("/api/v1/nodes?labelSelector=type%3Dkwok")
            ready = [
                n
                for n in body.get("items", [])
                for c in n["status"].get("conditions", [])
                if c["type"] == "Ready" and c["status"] == "True"
            ]
            return len(ready) == len(GPU_NODES) + len(CPU_NODES)

        self.wait("kwok nodes Ready", nodes_ready, 60, log="kwok")

    def start_test_kubelet(self) -> None:
        """The node whose pods really run (tests/e2e/testkubelet.py); needs root for namespaces."""
        venv_bin = Path(sys.executable).parent
        self.spawn(
            "test-kubelet",
            [
                sys.executable,
                str(Path(__file__).resolve().parent / "testkubelet.py"),
                f"--kubeconfig={self.kubeconfig}",
                f"--node={TEST_KUBELET_NODE}",
                f"--state={self.folder / 'test-kubelet'}",
                f"--venv-bin={venv_bin}",
                *(f"--image={i}" for i in self.kubelet_images),
                *(f"--host-share={p}" for p in self.host_shares),
            ],
        )

        def node_ready() -> bool:
            _, node = self.get_json(f"/api/v1/nodes/{TEST_KUBELET_NODE}")
            conds = (node.get("status") or {}).get("conditions") or []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

        self.wait(f"test kubelet node {TEST_KUBELET_NODE} Ready", node_ready, 60, log="test-kubelet")

    def start_kuberay(self) -> None:
        p = self.state["ports"]
        self.spawn(
            "kuberay-operator",
            [
                str(self.bins["kuberay-operator"]),
                f"--kubeconfig={self.component_kubeconfig('kuberay')}",
                "--use-kubernetes-proxy",
                "--enable-leader-election=false",
                f"--metrics-addr=127.0.0.1:{p['kuberay-metrics']}",
                f"--health-probe-bind-address=127.0.0.1:{p['kuberay-probe']}",
                "--log-stdout-encoder=console",
            ],
        )

        def ready() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{p['kuberay-probe']}/readyz", timeout=2) as r:
                return r.status == 200

        self.wait("KubeRay operator /readyz", ready, 60, log="kuberay-operator")

    def apply_crds(self, crds: list[Path] | None = None) -> None:
        if crds is None:
            kuberay = module_dir("github.com/ray-project/kuberay/ray-operator")
            crds = [
                *sorted((kuberay / "config/crd/bases").glob("ray.io_*.yaml")),
                ROOT / "manifests/crds/herl.dev_herljobs.yaml",
            ]
        for crd in crds:
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
        names = {yaml.safe_load(c.read_text())["metadata"]["name"] for c in crds}

        def established() -> bool:
            _, body = self.get_json("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
            ok = {
                i["metadata"]["name"]
                for i in body.get("items", [])
                if any(
                    c["type"] == "Established" and c["status"] == "True"
                    for c in (i.get("status") or {}).get("conditions") or []
                )
            }
            return names <= ok

        self.wait("CRDs Established", established, 60)

    def start_kueue(self) -> None:
        """Kueue's manager beside the apiserver (devcluster_kueue.py says why it is wired this way)."""
        module = module_dir("sigs.k8s.io/kueue")
        self.apply_crds(kueue.crd_files(module))
        self.kubectl(
            "apply",
            "-f",
            "-",
            input=yaml.safe_dump(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kueue-system"}}
            ),
        )
        certs = self.folder / "kueue-certs"
        certs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.pki.serving_cert, certs / "tls.crt")  # names 127.0.0.1, signed by our CA
        shutil.copyfile(self.pki.serving_key, certs / "tls.key")
        config = self.folder / "kueue-config.yaml"
        config.write_text(kueue.configuration(self.state["ports"], certs))
        # Kueue reads its metrics serving pair from the fixed path /etc/kueue/metrics/certs when it
        # does not manage certificates itself. Rather than writing certificates under /etc, it runs in
        # a private mount namespace where our folder is bind-mounted there (only an empty
        # /etc/kueue mount point is left on the host).
        (certs / "metrics" / "certs").mkdir(parents=True, exist_ok=True)
        for name in ("tls.crt", "tls.key"):
            shutil.copyfile(certs / name, certs / "metrics" / "certs" / name)
        Path("/etc/kueue").mkdir(exist_ok=True)
        argv = [
            str(self.bins["kueue"]),
            f"--config={config}",
            f"--kubeconfig={self.component_kubeconfig('kueue')}",
            "--feature-gates=VisibilityOnDemand=false",
        ]
        self.spawn(
            "kueue",
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                'mount --bind "$0" /etc/kueue && exec "$@"',
                str(certs),
                *argv,
            ],
        )
        probe = self.state["ports"]["kueue-probe"]

        def ready() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{probe}/readyz", timeout=2) as r:
                return r.status == 200

        self.wait("Kueue /readyz", ready, 90, log="kueue")
        hooks = kueue.webhook_configurations(module, self.state["ports"]["kueue-webhook"], self.pki.ca)
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(hooks))

    # ---- lifecycle -----------------------------------------------------------------------------

    def up(self, log: Callable[[str], None] = print) -> None:
        if self.load() and self.alive("kube-apiserver"):
            raise ClusterError(f"a control plane is already running from {self.folder} (make cluster-down)")
        t0 = time.monotonic()
        log("devcluster: building/locating binaries (scripts/cluster/build.sh)")
        self.bins = build_binaries(("k8s", "kuberay", "kueue") if self.with_kueue else ("k8s", "kuberay"))
        missing = {
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubectl",
            "kwok",
            "kuberay-operator",
            *(("kueue",) if self.with_kueue else ()),
        } - set(self.bins)
        if missing:
            raise ClusterError(f"binaries missing after the build: {sorted(missing)}")
        names = (
            "etcd",
            "etcd_peer",
            "apiserver",
            "controller-manager",
            "scheduler",
            "kwok",
            "kuberay-metrics",
            "kuberay-probe",
            "kueue-probe",
            "kueue-metrics",
            "kueue-webhook",
        )
        self.state = {
            "ports": {n: free_port() for n in names},
            "bins": {k: str(v) for k, v in self.bins.items()},
        }
        shutil.rmtree(self.folder / "etcd", ignore_errors=True)  # a fresh cluster every start
        self.pki.ensure()
        tokens = self.pki.tokens()
        (self.folder / "kubeconfigs").mkdir(parents=True, exist_ok=True)
        for name, token in tokens.items():
            self.component_kubeconfig(name).write_text(self.pki.kubeconfig(self.server, token, name))
        self.kubeconfig.write_text(self.pki.kubeconfig(self.server, tokens["admin"]))
        self._save()
        steps: list[tuple[str, Callable[[], None]]] = [
            ("etcd", self.start_etcd),
            ("kube-apiserver", self.start_apiserver),
            ("CRDs", self.apply_crds),
            ("nodes", lambda: self.kubectl("apply", "-f", "-", input=nodes_manifest(GPU_NODES, CPU_NODES))),
            ("kube-controller-manager", self.start_controller_manager),
            ("kube-scheduler", self.start_scheduler),
            ("kwok", self.start_kwok),
            ("test kubelet", self.start_test_kubelet),
            ("KubeRay operator", self.start_kuberay),
            *((("Kueue", self.start_kueue),) if self.with_kueue else ()),
        ]
        for what, step in steps:
            s = time.monotonic()
            try:
                step()
            except ClusterError:
                self.down()
                raise
            log(f"devcluster: {what} ready ({time.monotonic() - s:.1f} s)")
        log(
            f"devcluster: control plane {KUBERNETES_VERSION} up in {time.monotonic() - t0:.1f} s; "
            f"KUBECONFIG={self.kubeconfig}"
        )

    def down(self) -> None:
        if not self.state:
            self.load()
        for name in reversed(list(self.state.get("pids", {}))):
            self.kill(name)

    def use_binaries_from_state(self) -> None:
        self.bins = {k: Path(v) for k, v in self.state.get("bins", {}).items()}


def module_dir(module: str) -> Path:
    """Where Go keeps a module of our tools modules (its CRDs, kwok's stages)."""
    for mod in ("kuberay", "k8s", "kueue"):
        src = ROOT / "tools/cluster" / mod
        if not (src / "go.mod").exists():
            continue
        proc = subprocess.run(
            ["go", "list", "-m", "-f", "{{.Dir}}", module],
            cwd=src,
            capture_output=True,
            text=True,
            env={**os.environ, "GOFLAGS": "-mod=readonly", "GOTOOLCHAIN": "local"},
        )
        if proc.returncode == 0 and proc.stdout.strip():
            return Path(proc.stdout.strip())
    raise ClusterError(f"Go module {module} is not a dependency of tools/cluster/*")


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "status"
    dc = DevCluster()
    try:
        if cmd == "up":
            dc.with_kueue = "--kueue" in argv[1:]
            dc.up()
        elif cmd == "down":
            dc.down()
            print("devcluster: stopped")
        elif cmd == "status":
            if not dc.load():
                print("devcluster: not started")
                return 1
            for name in dc.state.get("pids", {}):
                print(
                    f"{name:26} {'running' if dc.alive(name) else 'EXITED'}  log: {dc.logs / (name + '.log')}"
                )
            print(f"KUBECONFIG={dc.kubeconfig}")
        else:
            print(f"usage: {Path(__file__).name} up|down|status", file=sys.stderr)
            return 2
    except ClusterError as exc:
        print(f"devcluster: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
