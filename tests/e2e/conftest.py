"""Fixtures of the real-cluster suite: one real control plane per test session, the chart installed
with the real helm binary, and the operator running as the chart's ServiceAccount.

Nothing here skips: a control plane that cannot be built or started fails every test that needs it,
with the reason (the build step, the component and the last lines of its log).
"""

from __future__ import annotations

import itertools
import re
import sys
from collections.abc import Iterator

import pytest
from devcluster import ROOT, ClusterError, DevCluster
from e2e_support import Kube, OperatorProcess, install_release, wait_for

from herl import images

# The invalid-spec corpus is shared with tests/api (api_support), whatever subset pytest collects.
sys.path.insert(0, str(ROOT / "tests" / "api"))


@pytest.fixture(scope="session")
def cluster() -> Iterator[DevCluster]:
    folder = ROOT / ".cluster-e2e"
    # The CPU trainer image (make images) is what a local-engine job's head really runs; the test model
    # reaches its containers through a read-only host share (like a node-local model disk).
    cpu = images.TRAINER_CPU
    dc = DevCluster(
        folder=folder,
        with_kueue=True,
        kubelet_images=(f"{cpu.ref}={cpu.archive_path(ROOT)}",),
        host_shares=(str(folder / "models"),),
    )
    (folder / "models").mkdir(parents=True, exist_ok=True)
    if dc.load():
        dc.down()  # left over from an interrupted run
    try:
        dc.up(log=lambda m: print(m, file=sys.stderr, flush=True))
    except ClusterError as exc:
        pytest.fail(f"the real control plane could not be started: {exc}", pytrace=False)
    yield dc
    dc.down()


@pytest.fixture(scope="session")
def kube(cluster: DevCluster) -> Kube:
    return Kube(cluster)


@pytest.fixture(scope="session")
def release(cluster: DevCluster, kube: Kube) -> str:
    """The chart's ServiceAccount, after a real `helm install` of the chart."""
    return install_release(cluster, kube)


@pytest.fixture(scope="session")
def operator(cluster: DevCluster, release: str) -> Iterator[OperatorProcess]:
    op = OperatorProcess(cluster, release)
    op.log.unlink(missing_ok=True)  # the log of this session only (tests read it)
    op.write_kubeconfig(op.token())
    op.start()
    yield op
    op.stop()


_serial = itertools.count()


@pytest.fixture()
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test (deleted afterwards; the namespace controller empties it)."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().removeprefix("test_"))[:40].strip("-")
    name = f"t-{slug}-{next(_serial)}"
    kube.run("create", "namespace", name)
    wait_for(
        f"ServiceAccount default in {name}", lambda: kube.get("serviceaccount", "default", namespace=name), 30
    )
    yield name
    kube.run("delete", "namespace", name, "--wait=false", check=False)
