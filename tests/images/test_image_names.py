"""Every place that names one of our images agrees with herl/images.py, which `make images` builds from.

The chart's defaults, manifests/install.yaml, the HeRLJob's default trainer image, the samples and the
Dockerfiles' own labels and defaults: a rename or a version bump that misses one fails here.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from test_images import instructions

from herl import __version__, chart, images
from herl.api.model import ResourcesSpec

REPO = chart.REPO
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_version_is_the_packages() -> None:
    assert images.VERSION == PYPROJECT["project"]["version"] == __version__
    for image in images.ALL:
        assert image.ref == f"ghcr.io/herl-dev/{image.name}:{images.VERSION}"
        assert image.archive == f"{image.name}-{images.VERSION}.oci.tar"


def test_the_three_names() -> None:
    assert f"ghcr.io/herl-dev/herl-operator:{__version__}" == images.OPERATOR_IMAGE
    assert f"ghcr.io/herl-dev/herl-trainer:{__version__}" == images.TRAINER_IMAGE
    assert f"ghcr.io/herl-dev/herl-trainer-cpu:{__version__}" == images.TRAINER_CPU_IMAGE
    assert images.LOCAL_ENGINE_IMAGE == images.TRAINER_CPU_IMAGE
    assert {i.name for i in images.BUILT_EVERYWHERE} == {"herl-operator", "herl-trainer-cpu"}


def test_chart_defaults_are_the_operator_image() -> None:
    values = yaml.safe_load((chart.CHART_DIR / "values.yaml").read_text())
    meta = yaml.safe_load((chart.CHART_DIR / "Chart.yaml").read_text())
    assert values["image"]["repository"] == images.OPERATOR.repository
    # An empty tag means appVersion (templates/_helpers.tpl), which must be the version we build.
    assert values["image"]["tag"] == "" and meta["appVersion"] == images.VERSION
    helpers = (chart.CHART_DIR / "templates" / "_helpers.tpl").read_text()
    assert "default .Chart.AppVersion .Values.image.tag" in helpers


def test_install_yaml_runs_the_operator_image() -> None:
    docs = [d for d in yaml.safe_load_all((REPO / "manifests" / "install.yaml").read_text()) if d]
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert len(deployments) == 1
    containers = deployments[0]["spec"]["template"]["spec"]["containers"]
    assert [c["image"] for c in containers] == [images.OPERATOR_IMAGE]


def test_herljob_default_trainer_image_per_engine() -> None:
    from herl.api.model import TRAINER_IMAGES

    assert ResourcesSpec.model_fields["image"].default is None  # the engine picks the default
    assert TRAINER_IMAGES == {"verl": images.TRAINER_IMAGE, "local": images.LOCAL_ENGINE_IMAGE}
    described = ResourcesSpec.model_fields["image"].description or ""
    doc = (REPO / "herl" / "api" / "model.py").read_text()
    for ref in TRAINER_IMAGES.values():
        assert ref in described or ref in doc


def test_samples_name_our_images() -> None:
    pattern = re.compile(r"ghcr\.io/herl-dev/[a-z0-9-]+:[^\s\"']+")
    known = {i.ref for i in images.ALL}
    found = {
        m for p in (REPO / "manifests" / "samples").glob("*.yaml") for m in pattern.findall(p.read_text())
    }
    assert found and found <= known, found - known


@pytest.mark.parametrize("image", images.ALL, ids=lambda i: i.name)
def test_dockerfile_labels_and_version_default(image: images.Image) -> None:
    path = REPO / image.dockerfile
    assert path.is_file()
    ins = instructions(path)
    labels = " ".join(a for k, a in ins if k == "LABEL")
    assert f'org.opencontainers.image.title="{image.name}"' in labels
    assert 'org.opencontainers.image.version="${HERL_VERSION}"' in labels
    assert "org.opencontainers.image.source=" in labels
    # The Dockerfile's own default matches, for a plain `docker build` without --build-arg.
    assert f"HERL_VERSION={images.VERSION}" in [a for k, a in ins if k == "ARG"]


def test_make_images_builds_the_named_images() -> None:
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^images:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, "no `images` target"
    assert "scripts/images/install-tools.sh" in recipe.group(1)
    assert "scripts/images/build.py" in recipe.group(1)
    build = (REPO / "scripts" / "images" / "build.py").read_text()
    assert "from herl import images" in build and "images.BUILT_EVERYWHERE" in build


def test_cpu_trainer_torch_pin_is_setups() -> None:
    setup = (REPO / "scripts" / "setup.sh").read_text()
    pins = set(re.findall(r'"torch==([0-9.]+)"', setup))
    args = [a for k, a in instructions(REPO / images.TRAINER_CPU.dockerfile) if k == "ARG"]
    assert len(pins) == 1 and f"TORCH_VERSION={pins.pop()}" in args


def test_docs_name_every_image() -> None:
    install = (REPO / "docs" / "install.md").read_text()
    for image in images.ALL:
        assert image.dockerfile in install and f"{image.repository}:" in install, image.name
    assert "skopeo copy oci-archive:" in install


def test_archives_are_ignored_by_git() -> None:
    ignored = (REPO / ".gitignore").read_text().split()
    assert "dist/" in ignored
    assert Path(images.OPERATOR.archive_path(REPO)).parts[-3:-1] == ("dist", "images")
