"""Helpers to run the built images (dist/images/*.oci.tar, written by `make images`) without a Docker engine.

A container is made from the OCI archive with ``buildah from`` and commands run in it with
``buildah run --isolation chroot`` (``podman run`` cannot set rlimits on our machines). Chroot isolation
shares the host's network, so every command runs under ``unshare --net``: a new network namespace
with no interface, which makes "offline" a fact rather than a hope.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from herl import chart, images

REPO = chart.REPO
TOOLS = ("buildah", "skopeo", "unshare")


def need_tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:  # declared tools: their absence fails the image tests with the reason, never skips them
        pytest.fail(
            f"{', '.join(missing)} not installed: run scripts/images/install-tools.sh (make test does)"
        )


def archive_of(image: images.Image) -> Path:
    path = image.archive_path(REPO)
    if not path.is_file():
        pytest.fail(f"{path.relative_to(REPO)} missing: build it with `make images` (make test does)")
    return path


def image_config(image: images.Image) -> dict:
    """The OCI image configuration inside the archive (skopeo reads it without unpacking layers)."""
    need_tools()
    proc = subprocess.run(
        ["skopeo", "inspect", "--config", f"oci-archive:{archive_of(image)}"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@dataclass
class Container:
    """A buildah working container made from one archive; removed when the module's tests end."""

    name: str

    def run(
        self,
        argv: Sequence[str],
        *,
        user: str,
        env: dict[str, str] | None = None,
        volumes: Sequence[str] = (),
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        cmd = ["unshare", "--net", "buildah", "run", "--isolation", "chroot", "--user", user]
        for key, value in (env or {}).items():
            cmd += ["--env", f"{key}={value}"]
        for volume in volumes:
            cmd += ["--volume", volume]
        return subprocess.run(
            [*cmd, self.name, "--", *argv], capture_output=True, text=True, timeout=timeout, check=False
        )


def open_container(image: images.Image) -> Iterator[Container]:
    need_tools()
    archive = archive_of(image)
    proc = subprocess.run(
        ["buildah", "from", "--quiet", f"oci-archive:{archive}"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    container = Container(proc.stdout.strip().splitlines()[-1])
    try:
        yield container
    finally:
        subprocess.run(["buildah", "rm", container.name], capture_output=True, timeout=300, check=False)
