"""Certificates, keys and credentials of the test control plane, made with the openssl CLI.

Why openssl and not a Python library: it is on every Debian machine, and the control plane only needs
four files (a CA, the apiserver's serving pair, the service-account key pair). Clients authenticate
with static bearer tokens (``--token-auth-file``): one per component, so the apiserver's audit of who
did what stays readable, and the admin kubeconfig is a plain token kubeconfig that kubectl, helm,
kopf and the kubernetes client all read.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

#: (user, uid, groups) of each static token. The control-plane components run as cluster admins:
#: what this suite proves is our operator's RBAC, which runs as the chart's ServiceAccount.
TOKEN_USERS = {
    "admin": ("kubernetes-admin", "1", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", "2", "system:masters"),
    "scheduler": ("system:kube-scheduler", "3", "system:masters"),
    "kwok": ("kwok", "4", "system:masters"),
    "kuberay": ("kuberay-operator", "5", "system:masters"),
    "kueue": ("kueue-manager", "6", "system:masters"),
    "test-kubelet": ("system:node:test-kubelet", "7", "system:masters"),
}


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {proc.stderr.strip()}")


@dataclass(frozen=True)
class Pki:
    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def serving_cert(self) -> Path:
        return self.folder / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.folder / "apiserver.key"

    @property
    def sa_key(self) -> Path:
        return self.folder / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.folder / "sa.pub"

    @property
    def token_file(self) -> Path:
        return self.folder / "tokens.csv"

    def tokens(self) -> dict[str, str]:
        out = {}
        for line in self.token_file.read_text().splitlines():
            token, user = line.split(",")[:2]
            name = next(k for k, v in TOKEN_USERS.items() if v[0] == user)
            out[name] = token
        return out

    def ensure(self) -> None:
        """Make every file once; re-runs keep them (a restarted apiserver keeps trusting its clients)."""
        f = self.folder
        f.mkdir(parents=True, exist_ok=True)
        if not self.ca.exists():
            _openssl(
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "3650",
                "-subj",
                "/CN=herl-test-ca",
                "-keyout",
                str(f / "ca.key"),
                "-out",
                str(self.ca),
            )
        if not self.serving_cert.exists():
            # The serving cert names every address a client may use: loopback for us, the
            # `kubernetes` Service's first IP and DNS names for in-cluster clients.
            ext = f / "apiserver.ext"
            ext.write_text(
                "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,"
                "DNS:kubernetes.default,DNS:kubernetes.default.svc,"
                "DNS:kubernetes.default.svc.cluster.local\n"
            )
            csr = f / "apiserver.csr"
            _openssl(
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=kube-apiserver",
                "-keyout",
                str(self.serving_key),
                "-out",
                str(csr),
            )
            _openssl(
                "x509",
                "-req",
                "-in",
                str(csr),
                "-CA",
                str(self.ca),
                "-CAkey",
                str(f / "ca.key"),
                "-CAcreateserial",
                "-days",
                "3650",
                "-extfile",
                str(ext),
                "-out",
                str(self.serving_cert),
            )
        if not self.sa_key.exists():
            _openssl("genrsa", "-out", str(self.sa_key), "2048")
            _openssl("rsa", "-in", str(self.sa_key), "-pubout", "-out", str(self.sa_pub))
        if not self.token_file.exists():
            rows = [
                f'{secrets.token_hex(16)},{user},{uid},"{groups}"'
                for user, uid, groups in TOKEN_USERS.values()
            ]
            self.token_file.write_text("\n".join(rows) + "\n")
            self.token_file.chmod(0o600)

    def kubeconfig(self, server: str, token: str, user: str = "admin") -> str:
        """A kubeconfig (YAML text) for ``server`` with a bearer token, trusting our CA."""
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "herl-test",
            "clusters": [
                {
                    "name": "herl-test",
                    "cluster": {"server": server, "certificate-authority": str(self.ca.resolve())},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {
                    "name": "herl-test",
                    "context": {"cluster": "herl-test", "user": user, "namespace": "default"},
                }
            ],
        }
        return yaml.safe_dump(doc, sort_keys=False)
