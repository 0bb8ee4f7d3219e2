"""``make images``: build our images from images/*/Dockerfile into OCI archives under dist/images/.

With a Docker engine (``docker info`` answers) it runs ``docker build``; without one it builds
daemonless with ``buildah bud --isolation chroot``. Either way the same Dockerfiles are built and
``skopeo``/``buildah`` write the OCI archive, named after the image and the package version
(herl/images.py). The Python base image is a build argument: the Dockerfiles' default
(python:3.11-slim) where a registry answers, else a base made here from Debian with ``debootstrap``
(Python 3.11 from bookworm) and cached as a root file system tarball under ``~/.cache/herl/images``.

Usage: scripts/images/build.py [--image NAME ...]   (default: herl-operator and herl-trainer-cpu;
herl-trainer, the GPU image, only where its veRL base can be pulled).
Environment: HERL_BASE_IMAGE (a base to use as is), HERL_TORCH_INDEX_URL (where CPU torch comes from),
HERL_DEBIAN_MIRROR. Prints one JSON line per image (archive, bytes, seconds) and writes them to
dist/images/report.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from herl import images
from herl.assets import cache_root

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "dist" / "images"
TOOLS_SCRIPT = "scripts/images/install-tools.sh"

REGISTRY_BASE = "docker.io/library/python:3.11-slim"  # the Dockerfiles' PYTHON_IMAGE default
DEBIAN_SUITE = "bookworm"  # Python 3.11, the version pyproject's requires-python starts at
# python-is-python3: the Dockerfiles call `python`, as the python:3.11-slim images allow.
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
# What a container never needs at run time (apt can fetch its lists again): docs, manuals, translations.
BASE_TRIM = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYPI_INDEX = "https://pypi.org/simple"
DEBIAN_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


class BuildError(RuntimeError):
    """A build step failed; the message says which and why."""


def log(message: str) -> None:
    print(f"images: {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], *, capture: bool = False, timeout: float | None = None) -> str:
    """Run a command from the repository root; a failure raises with its output's tail."""
    log("$ " + " ".join(cmd))
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        tail = ((proc.stdout or "") + (proc.stderr or ""))[-2000:]
        raise BuildError(f"{cmd[0]} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return proc.stdout or ""


def succeeds(cmd: list[str], timeout: float = 60) -> bool:
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise BuildError(f"{', '.join(missing)} not installed: run {TOOLS_SCRIPT} (Debian, root)")


def engine() -> str:
    """ "docker" where a Docker engine answers, else "buildah" (daemonless); skopeo is needed by both."""
    require("skopeo")
    if shutil.which("docker") and succeeds(["docker", "info"], timeout=30):
        return "docker"
    require("buildah")
    return "buildah"


def image_exists(eng: str, ref: str) -> bool:
    if eng == "docker":
        return succeeds(["docker", "image", "inspect", ref])
    return succeeds(["buildah", "inspect", "--type", "image", ref])


def stored_image_id(eng: str, ref: str) -> str:
    if eng == "docker":
        return run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], capture=True).strip()
    return run(
        ["buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}", ref], capture=True
    ).strip()


def base_key() -> str:
    """Names the local base: a change of suite, packages or trimming makes a new one."""
    spec = json.dumps([DEBIAN_SUITE, BASE_PACKAGES, BASE_TRIM, 1])
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


def base_rootfs_tarball() -> Path:
    """A minimal Debian root file system with Python, made by debootstrap once and cached."""
    cache = cache_root() / "images"
    tarball = cache / f"debian-{DEBIAN_SUITE}-python3-{base_key()}.tar"
    if tarball.exists():
        return tarball
    require("debootstrap")
    cache.mkdir(parents=True, exist_ok=True)
    mirror = os.environ.get("HERL_DEBIAN_MIRROR", "http://deb.debian.org/debian")
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir=cache) as tmp:
        rootfs = Path(tmp) / "rootfs"
        include = ",".join(BASE_PACKAGES)
        run(["debootstrap", "--variant=minbase", f"--include={include}", DEBIAN_SUITE, str(rootfs), mirror])
        for rel in BASE_TRIM:
            for child in (rootfs / rel).glob("*"):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        # Device nodes and kernel file systems come from the container runtime, not the image.
        partial = Path(tmp) / "rootfs.tar"
        excludes = ["--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*"]
        run(["tar", "--numeric-owner", *excludes, "-C", str(rootfs), "-cf", str(partial), "."])
        partial.rename(tarball)  # whole or absent: an interrupted run leaves no half tarball behind
    return tarball


def local_base(eng: str) -> str:
    """The local Debian base as an image of the engine's store (imported from the cached tarball)."""
    ref = f"localhost/herl-base:{DEBIAN_SUITE}-python3-{base_key()}"
    if image_exists(eng, ref):
        return ref
    tarball = base_rootfs_tarball()
    env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"]
    if eng == "docker":
        changes = [arg for e in env for arg in ("--change", f"ENV {e}")]
        run(["docker", "import", *changes, "--change", 'CMD ["python3"]', str(tarball), ref])
        return ref
    ctr = run(["buildah", "from", "scratch"], capture=True).strip()
    try:
        run(["buildah", "add", ctr, str(tarball), "/"])
        config = [arg for e in env for arg in ("--env", e)]
        run(["buildah", "config", *config, "--cmd", '["python3"]', ctr])
        run(["buildah", "commit", "--rm", ctr, ref])
    except BuildError:
        succeeds(["buildah", "rm", ctr])
        raise
    return ref


def python_base(eng: str) -> str:
    """HERL_BASE_IMAGE, else python:3.11-slim where the registry answers, else the local Debian base."""
    chosen = os.environ.get("HERL_BASE_IMAGE")
    if chosen:
        return chosen
    if image_exists(eng, REGISTRY_BASE) or succeeds(
        ["skopeo", "inspect", "--retry-times", "0", "--raw", f"docker://{REGISTRY_BASE}"], timeout=60
    ):
        return REGISTRY_BASE
    log(f"{REGISTRY_BASE} cannot be pulled: using a base made from Debian {DEBIAN_SUITE} (debootstrap)")
    return local_base(eng)


def torch_index() -> str:
    """HERL_TORCH_INDEX_URL, else PyTorch's CPU index where it answers, else PyPI (a CUDA build)."""
    chosen = os.environ.get("HERL_TORCH_INDEX_URL")
    if chosen:
        return chosen
    try:
        with urllib.request.urlopen(f"{TORCH_CPU_INDEX}/torch/", timeout=20):
            return TORCH_CPU_INDEX
    except (urllib.error.URLError, OSError) as exc:
        log(
            f"{TORCH_CPU_INDEX} unreachable ({exc}): torch comes from PyPI, a CUDA build "
            "(works on CPU, but the image carries several GB of NVIDIA libraries)"
        )
        return PYPI_INDEX


def host_ca_bundle() -> Path | None:
    """The CA bundle the host's pip trusts (PIP_CERT, SSL_CERT_FILE, else Debian's), if any."""
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"), DEBIAN_CA_BUNDLE):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def git_revision() -> str | None:
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def build(eng: str, image: images.Image, build_args: dict[str, str]) -> dict[str, object]:
    """Build one image and write its OCI archive; returns the report line."""
    start = time.monotonic()
    args = [arg for k, v in build_args.items() for arg in ("--build-arg", f"{k}={v}")]
    revision = git_revision()
    if revision:
        args += ["--label", f"org.opencontainers.image.revision={revision}"]
    OUT.mkdir(parents=True, exist_ok=True)
    archive = image.archive_path(REPO)
    partial = archive.with_name(archive.name + ".partial")
    partial.unlink(missing_ok=True)
    previous = stored_image_id(eng, image.ref) if image_exists(eng, image.ref) else None
    if eng == "docker":
        run(["docker", "build", "-f", image.dockerfile, "-t", image.ref, *args, "."])
        source = f"docker-daemon:{image.ref}"
    else:
        # RUN steps fetch from PyPI trusting what the host trusts (a machine behind a TLS-inspecting
        # proxy has its CA there): the bundle is mounted over Debian's for the build, never copied in.
        ca = host_ca_bundle()
        if ca:
            args += ["--volume", f"{ca}:{DEBIAN_CA_BUNDLE}:ro"]
        # --layers: a warm rebuild reuses every step whose inputs did not change.
        bud = [
            "buildah",
            "bud",
            "--isolation",
            "chroot",
            "--layers",
            "--force-rm",
            "-f",
            image.dockerfile,
            "-t",
            image.ref,
        ]
        run([*bud, *args, "."])
        source = f"containers-storage:{image.ref}"
    # Writing the archive compresses every layer again (minutes for the trainer): skip it when the
    # archive already holds this very image (its id is recorded beside it).
    image_id = stored_image_id(eng, image.ref)
    id_file = archive.with_name(archive.name + ".id")
    if not (archive.exists() and id_file.exists() and id_file.read_text().strip() == image_id):
        # The reference inside the archive lets `skopeo copy oci-archive:FILE docker://...` keep the name.
        run(["skopeo", "copy", "--quiet", source, f"oci-archive:{partial}:{image.ref}"])
        partial.rename(archive)
        id_file.write_text(image_id + "\n")
    if previous and previous != image_id:
        # The image this tag named before is now dangling: several GB for the trainer on every rebuild.
        # Layers it shares with the new image or the layer cache stay; removal fails harmlessly if in use.
        succeeds([eng, "rmi", previous])
    return {
        "image": image.ref,
        "archive": str(archive.relative_to(REPO)),
        "bytes": archive.stat().st_size,
        "seconds": round(time.monotonic() - start, 1),
        "engine": eng,
        **{k.lower(): v for k, v in build_args.items() if k != "HERL_VERSION"},
    }


def main(argv: list[str] | None = None) -> int:
    by_name = {image.name: image for image in images.ALL}
    parser = argparse.ArgumentParser(prog="scripts/images/build.py", description=__doc__.split("\n")[0])
    parser.add_argument("--image", action="append", choices=sorted(by_name), help="repeatable")
    args = parser.parse_args(argv)
    chosen = [by_name[n] for n in args.image] if args.image else list(images.BUILT_EVERYWHERE)
    try:
        eng = engine()
        log(f"engine: {eng}")
        base_start = time.monotonic()
        base = python_base(eng) if chosen != [images.TRAINER] else ""
        log(f"python base: {base} ({time.monotonic() - base_start:.1f} s)")
        report = []
        for image in chosen:
            build_args = {"HERL_VERSION": images.VERSION}
            if image is not images.TRAINER:
                build_args["PYTHON_IMAGE"] = base
            if image is images.TRAINER_CPU:
                build_args["TORCH_INDEX_URL"] = torch_index()
            line = build(eng, image, build_args)
            print(json.dumps(line), flush=True)
            report.append(line)
    except BuildError as exc:
        log(f"error: {exc}")
        return 1
    (OUT / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
