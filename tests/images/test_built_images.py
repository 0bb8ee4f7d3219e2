"""The built images run: the operator image starts as the chart's user, the CPU trainer image validates
a sample and trains one step offline, and each image's configuration is what a cluster expects.

The archives come from `make images` (make test builds them first); conftest.py runs commands inside
them with buildah (chroot isolation) in a network namespace with no interface.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from image_support import REPO, Container, image_config

from herl import chart, images
from herl.engine.tiny import tiny_job

PYPROJECT_SOURCE = "https://github.com/herl-dev/herl"
SHELLS = {"sh", "bash", "/bin/sh", "/bin/bash", "/usr/bin/sh", "/usr/bin/bash"}


@pytest.mark.parametrize("image", images.BUILT_EVERYWHERE, ids=lambda i: i.name)
def test_image_config(image: images.Image) -> None:
    config = image_config(image)["config"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == images.VERSION
    assert labels["org.opencontainers.image.source"] == PYPROJECT_SOURCE
    assert labels["org.opencontainers.image.title"] == image.name
    uid = config["User"].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, config["User"]
    # Exec form, no shell in between: signals reach the process, arguments are not re-parsed.
    entry = config.get("Entrypoint") or []
    assert entry and entry[0] not in SHELLS and "-c" not in entry, entry


def test_operator_image_runs_as_the_charts_user() -> None:
    values = yaml.safe_load((chart.CHART_DIR / "values.yaml").read_text())
    sc = values["securityContext"]
    assert image_config(images.OPERATOR)["config"]["User"] == f"{sc['runAsUser']}:{sc['runAsGroup']}"


def test_operator_image_starts(operator_container: Container) -> None:
    """The entry point itself (as the image config says) and `herl operator`, as uid 65532."""
    entry = image_config(images.OPERATOR)["config"]["Entrypoint"]
    res = operator_container.run([*entry, "--help"], user="65532:65532")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "--metrics-port" in res.stdout and "--resync-seconds" in res.stdout
    res = operator_container.run(["herl", "operator", "--help"], user="65532:65532")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "herl operator" in res.stdout


def test_operator_image_imports_the_operator_and_nothing_heavy(operator_container: Container) -> None:
    code = (
        "import os, importlib.util as u, herl_operator, herl_operator.handlers, kopf\n"
        "print(os.getuid(), os.getgid(), *(u.find_spec(m) is not None for m in "
        "('torch', 'verl', 'vllm', 'kubernetes', 'pip')))"
    )
    res = operator_container.run(["python", "-c", code], user="65532:65532")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.split() == ["65532", "65532", "False", "False", "False", "False", "False"]


def test_trainer_cpu_image_has_no_verl_and_its_assets(trainer_cpu_container: Container) -> None:
    code = (
        "import os, importlib.util as u, torch\n"
        "from herl import assets\n"
        "print(os.getuid(), torch.__version__.split('+')[0], assets.cache_root(),"
        " *(u.find_spec(m) is not None for m in ('verl', 'vllm')))"
    )
    res = trainer_cpu_container.run(["python", "-c", code], user="10001:10001")
    assert res.returncode == 0, res.stdout + res.stderr
    setup = (REPO / "scripts" / "setup.sh").read_text()
    uid, torch_version, cache, has_verl, has_vllm = res.stdout.split()
    assert uid == "10001" and f'"torch=={torch_version}"' in setup
    assert cache == "/opt/herl/cache" and (has_verl, has_vllm) == ("False", "False")


def test_trainer_cpu_image_validates_the_local_sample(
    trainer_cpu_container: Container, tmp_path: Path
) -> None:
    sample = REPO / "manifests" / "samples" / "local-smollm2.yaml"
    shutil.copy(sample, tmp_path / "good.yaml")
    # The same job with an unknown field: refused inside the image too (the check is real).
    bad = yaml.safe_load(sample.read_text())
    bad["spec"]["algorithm"]["noSuchField"] = 1
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    tmp_path.chmod(0o755)
    volume = [f"{tmp_path}:/jobs:ro"]
    res = trainer_cpu_container.run(
        ["herl", "validate", "/jobs/good.yaml"], user="10001:10001", volumes=volume
    )
    assert res.returncode == 0, res.stdout + res.stderr
    res = trainer_cpu_container.run(
        ["herl", "validate", "/jobs/bad.yaml"], user="10001:10001", volumes=volume
    )
    assert res.returncode != 0 and "noSuchField" in res.stdout + res.stderr, res.stdout + res.stderr


def smoke_job(model: str) -> dict:
    """One local-engine step on the tiny model: synthetic IF prompts scored by the real checkers."""
    return tiny_job(
        model,
        "smoke",
        **{
            "data.synthetic": {"numPrompts": 4, "constraintsPerPrompt": 2, "seed": 0},
            "data.maxResponseLength": 8,
            "algorithm.groupSize": 2,
            "algorithm.microBatchSizePerGpu": 2,
            "algorithm.totalSteps": 1,
            "algorithm.seed": 0,
            "algorithm.hindsight": {"enabled": True, "revision": {"maxTokens": 8}},
            "checkpoints": {"saveEverySteps": 1},
        },
    )


def test_trainer_cpu_image_trains_one_step_offline(trainer_cpu_container: Container, tmp_path: Path) -> None:
    """The tiny model is built inside the image (herl.engine.tiny, no download); the run writes to a
    mounted folder owned by the image's user, as a volume would be in a pod."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "job.yaml").write_text(yaml.safe_dump(smoke_job("/work/model")))
    shutil.chown(work, 10001, 10001)
    offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PIP_NO_INDEX": "1", "HOME": "/work"}
    volume = [f"{work}:/work"]
    build = "from herl.engine.tiny import build_tiny_model_dir; build_tiny_model_dir('/work/model', seed=0)"
    res = trainer_cpu_container.run(["python", "-c", build], user="10001:10001", env=offline, volumes=volume)
    assert res.returncode == 0, res.stdout + res.stderr
    res = trainer_cpu_container.run(
        ["herl", "train", "/work/job.yaml", "--out", "/work/out"],
        user="10001:10001",
        env=offline,
        volumes=volume,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [json.loads(x) for x in (work / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [x["training/global_step"] for x in lines] == [1]
    assert lines[0]["herl/groups_attempted"] >= 0 and "actor/pg_loss" in lines[0]
    assert (work / "out" / "checkpoints" / "step_000001" / "config.json").is_file()
