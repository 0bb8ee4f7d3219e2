"""Helpers for running the user-facing verbs (``herl status``, ``herl logs``) against the test cluster as
a user would: a subprocess with its own kubeconfig, exit code and stderr checked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from devcluster import ROOT, DevCluster


def user_kubeconfig(
    cluster: DevCluster,
    path: Path,
    *,
    namespace: str = "default",
    token: str | None = None,
    user: str = "admin",
    extra_context: str | None = None,
) -> Path:
    """A kubeconfig like a user's: the cluster's admin token (or ``token``), the current context's namespace
    set to ``namespace``, and optionally a second context named ``extra_context`` (namespace default)."""
    doc = yaml.safe_load(cluster.kubeconfig.read_text())
    if token is not None:
        doc = yaml.safe_load(cluster.pki.kubeconfig(cluster.server, token, user))
    ctx = doc["contexts"][0]
    ctx["context"]["namespace"] = namespace
    if extra_context:
        doc["contexts"].append({"name": extra_context, "context": {**ctx["context"], "namespace": "default"}})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_herl(kubeconfig: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``herl ARGS`` with KUBECONFIG=kubeconfig (no in-cluster fallback), as its own process."""
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONSAFEPATH": "1"}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return subprocess.run(
        [sys.executable, "-m", "herl.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
    )
