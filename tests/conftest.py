"""Suite-wide settings and fixtures (a real Prometheus for the metrics and end-to-end tests).

Subprocesses started by tests (``python -m herl.cli …``) run with the repo root as their working
directory; PYTHONSAFEPATH keeps that directory off sys.path so the repo's ``operator/`` folder (imported
as ``herl_operator``) cannot shadow the standard library's ``operator`` module.
"""

import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from herl.metrics.promserver import PrometheusServer

os.environ["PYTHONSAFEPATH"] = "1"


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool's path (Debian's prometheus package, installed by scripts/setup.sh): missing fails."""
    path = shutil.which("promtool")
    if path is None:  # a declared tool: its absence must fail, not skip the checks that need it
        pytest.fail(
            "promtool is not installed (Debian package 'prometheus'): run scripts/setup.sh (make test does)"
        )
    return path


@pytest.fixture(scope="module")
def prometheus_factory() -> Iterator[Callable[..., PrometheusServer]]:
    """Start Prometheus servers on demand; every one is stopped (process killed) at teardown."""
    if shutil.which("prometheus") is None:  # a missing tool must fail, not hide the metrics tests
        pytest.fail("Debian package 'prometheus' is not installed: run scripts/setup.sh (make test does)")
    started: list[PrometheusServer] = []

    def start(targets: Sequence[str], rule_files: Sequence[str | Path] = ()) -> PrometheusServer:
        prom = PrometheusServer(targets, rule_files=rule_files)
        started.append(prom)
        prom.start()
        return prom

    yield start
    for prom in started:
        prom.stop()
