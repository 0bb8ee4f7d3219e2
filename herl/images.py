"""The container images of herl: names, tags, Dockerfiles and archive names, in one place.

Why here: the chart's default operator image, ``manifests/install.yaml``, the HeRLJob's default trainer
image and ``make images`` (scripts/images/build.py) must all name the same images. Each reads them from
this module, and tests/images/test_image_names.py checks that the files which cannot import it (the
chart's values and Chart.yaml, install.yaml, the samples) say the same thing. Tags are the package
version, so a release bump moves every name at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from herl import __version__

REGISTRY = "ghcr.io/herl-dev"
VERSION = __version__


@dataclass(frozen=True)
class Image:
    """One image of ours: what `make images` builds and where a cluster pulls it from."""

    name: str  # repository name under REGISTRY, e.g. "herl-operator"
    dockerfile: str  # relative to the repository root (the build context)
    description: str

    @property
    def repository(self) -> str:
        return f"{REGISTRY}/{self.name}"

    @property
    def ref(self) -> str:
        """The full reference with the version tag, e.g. ghcr.io/herl-dev/herl-operator:0.1.0."""
        return f"{self.repository}:{VERSION}"

    @property
    def archive(self) -> str:
        """File name of the OCI archive `make images` writes under dist/images/."""
        return f"{self.name}-{VERSION}.oci.tar"

    def archive_path(self, root: Path) -> Path:
        return root / "dist" / "images" / self.archive


OPERATOR = Image("herl-operator", "images/operator/Dockerfile", "the kopf operator (herl[operator])")
# The GPU trainer: veRL 0.9.1 + vLLM on the veRL base image; built only where that base can be pulled.
TRAINER = Image("herl-trainer", "images/trainer/Dockerfile", "veRL + vLLM + herl, for GPU RayJobs")
# The CPU trainer: the local engine, the rewards and `herl train`, no veRL or vLLM. The default image of
# a HeRLJob that runs the local engine.
TRAINER_CPU = Image(
    "herl-trainer-cpu", "images/trainer-cpu/Dockerfile", "local engine + rewards + herl train, CPU torch"
)

#: The trainer images' non-root user and group (images/trainer*/Dockerfile `useradd --uid 10001`). The
#: RayJob's pods set fsGroup to it, so a checkpoint volume is writable by the trainer.
TRAINER_UID = TRAINER_GID = 10001

OPERATOR_IMAGE = OPERATOR.ref
TRAINER_IMAGE = TRAINER.ref
TRAINER_CPU_IMAGE = TRAINER_CPU.ref
# The image a `local`-engine HeRLJob runs by default (and the `verl` engine: TRAINER_IMAGE).
LOCAL_ENGINE_IMAGE = TRAINER_CPU_IMAGE

# What `make images` builds on any machine (the GPU trainer needs its veRL base from a registry).
BUILT_EVERYWHERE: tuple[Image, ...] = (OPERATOR, TRAINER_CPU)
ALL: tuple[Image, ...] = (OPERATOR, TRAINER, TRAINER_CPU)
