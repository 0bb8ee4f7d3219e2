"""Root file systems the test kubelet runs containers on: an image of ours, or the host as a stand-in.

An image root is the image itself, read from buildah's local storage (where ``make images`` built it)
or from its OCI archive: ``buildah from`` + ``buildah mount`` give its root directory, which becomes
the lower layer of each container's overlay (testkubelet_pod.py), and the image config gives the env,
the user and the working directory, as a container runtime would apply them. The host root (``/``
with the project's venv first on PATH) stands in for images that cannot be built here (the GPU
trainer: veRL + vLLM on a CUDA base).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Root:
    """What a container of one image runs on."""

    lower: str  # the overlay's lower directory
    env: dict[str, str]  # the image's env (the pod's env goes on top)
    user: tuple[int, int] | None = None  # uid, gid (None: root)
    cwd: str | None = None
    image: str = "host"
    container: str | None = field(default=None, repr=False)  # buildah working container, if any

    def close(self) -> None:
        if self.container:
            subprocess.run(["buildah", "umount", self.container], capture_output=True)
            subprocess.run(["buildah", "rm", self.container], capture_output=True)
            self.container = None


def host_root(venv_bin: str) -> Root:
    """The host's ``/`` as an image: a fresh HOME (so the host's ~/.ray, e.g. an auth_token that would
    switch Ray's token auth on, never leaks in) and the offline caches named by variables, like
    images/trainer-cpu does."""
    cache = Path(os.environ.get("HERL_CACHE") or Path.home() / ".cache" / "herl")
    return Root(
        lower="/",
        env={
            "PATH": f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/tmp",
            "LANG": "C.UTF-8",
            "HERL_CACHE": str(cache),
            "NLTK_DATA": os.environ.get("NLTK_DATA") or str(cache / "nltk_data"),
        },
    )


def _user(spec: str) -> tuple[int, int] | None:
    if not spec:
        return None
    uid, _, gid = spec.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise ValueError(f"image user {spec!r}: the test kubelet needs a numeric uid[:gid]")
    return int(uid), int(gid or uid)


def image_root(ref: str, archive: Path | None = None) -> Root:
    """The root of image ``ref`` (buildah's storage first, else ``archive``); raises RuntimeError."""
    source = ref
    proc = subprocess.run(["buildah", "from", "--pull-never", ref], capture_output=True, text=True)
    if proc.returncode != 0 and archive is not None and archive.exists():
        source = f"oci-archive:{archive}"
        proc = subprocess.run(["buildah", "from", source], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"image {ref} is not available (make images): {proc.stderr.strip()}")
    container = proc.stdout.strip().splitlines()[-1]
    mounted = subprocess.run(["buildah", "mount", container], capture_output=True, text=True)
    if mounted.returncode != 0:
        subprocess.run(["buildah", "rm", container], capture_output=True)
        raise RuntimeError(f"buildah mount {container}: {mounted.stderr.strip()}")
    info = json.loads(
        subprocess.run(["buildah", "inspect", container], capture_output=True, text=True, check=True).stdout
    )
    config = (info.get("OCIv1") or {}).get("config") or {}
    env = dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item)
    return Root(
        lower=mounted.stdout.strip(),
        env=env,
        user=_user(config.get("User") or ""),
        cwd=config.get("WorkingDir") or None,
        image=ref,
        container=container,
    )
