"""spec.engine and the submission mode in the built RayJob: what a local-engine job, a one-GPU local job
and an HTTPMode job look like, each checked against KubeRay's CRD."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import yaml
from herl_operator import builders as b
from op_helpers import REPO

from herl.api.model import TRAINER_IMAGES
from herl.api.validate import validate_document

KUBERAY_CRD = REPO.parent / "shared" / "kuberay" / "ray.io_rayjobs.yaml"


def _job(**spec: Any) -> Any:
    doc = {
        "apiVersion": "herl.dev/v1alpha1",
        "kind": "HeRLJob",
        "metadata": {"name": "demo", "namespace": "ml"},
        "spec": {"model": {"path": "/models/m"}, "data": {"train": "/d.parquet"}, **spec},
    }
    job, findings = validate_document(doc)
    assert job is not None, [str(f) for f in findings]
    return job


def _valid(rayjob: dict[str, Any]) -> None:
    crd = yaml.safe_load(KUBERAY_CRD.read_text())
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")["schema"]["openAPIV3Schema"]
    jsonschema.validate(rayjob, schema)


def _head(rj: dict[str, Any]) -> dict[str, Any]:
    return rj["spec"]["rayClusterSpec"]["headGroupSpec"]


def test_local_engine_is_a_head_only_cluster_on_the_cpu_image() -> None:
    rj = b.build_rayjob(_job(engine="local"), b.Context("ml", uid="u1"))
    _valid(rj)
    assert rj["spec"]["rayClusterSpec"]["workerGroupSpecs"] == []
    container = _head(rj)["template"]["spec"]["containers"][0]
    assert container["image"] == TRAINER_IMAGES["local"] != TRAINER_IMAGES["verl"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert _head(rj)["rayStartParams"]["num-gpus"] == "0"
    assert rj["spec"]["entrypoint"] == b.ENTRYPOINT  # the same entrypoint: herl.train picks the engine
    assert "nodeSelector" not in _head(rj)["template"]["spec"]


def test_one_gpu_local_job_puts_the_gpu_and_its_placement_on_the_head() -> None:
    job = _job(
        engine="local",
        resources={
            "gpuType": "NVIDIA-L4",
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "head": {"gpus": 1, "nodeSelector": {"pool": "l4"}},
        },
    )
    rj = b.build_rayjob(job, b.Context("ml", uid="u1"))
    _valid(rj)
    pod = _head(rj)["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert _head(rj)["rayStartParams"]["num-gpus"] == "1"
    assert pod["nodeSelector"] == {"pool": "l4", "nvidia.com/gpu.product": "NVIDIA-L4"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert job.spec.gpu_count == 1


def test_verl_head_gets_its_own_placement_and_the_workers_keep_theirs() -> None:
    job = _job(
        resources={
            "workers": 2,
            "gpusPerWorker": 4,
            "gpuType": "NVIDIA-H100-80GB-HBM3",
            "head": {
                "nodeSelector": {"pool": "cpu"},
                "tolerations": [{"key": "heads", "operator": "Exists"}],
            },
        }
    )
    rj = b.build_rayjob(job, b.Context("ml", uid="u1"))
    _valid(rj)
    head = _head(rj)["template"]["spec"]
    worker = rj["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    assert head["nodeSelector"] == {"pool": "cpu"} and head["tolerations"] == [
        {"key": "heads", "operator": "Exists"}
    ]
    assert worker["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert "tolerations" not in worker
    assert head["containers"][0]["image"] == TRAINER_IMAGES["verl"]
    assert job.spec.gpu_count == 8


@pytest.mark.parametrize(
    ("operator_mode", "spec_mode", "expected"),
    [
        ("K8sJobMode", None, "K8sJobMode"),
        ("HTTPMode", None, "HTTPMode"),
        ("K8sJobMode", "HTTPMode", "HTTPMode"),
        ("HTTPMode", "K8sJobMode", "K8sJobMode"),
    ],
)
def test_submission_mode_from_the_operator_unless_the_job_sets_one(
    operator_mode: str, spec_mode: str | None, expected: str
) -> None:
    rp = {"submissionMode": spec_mode} if spec_mode else {}
    job = _job(runPolicy=rp, resources={"serviceAccountName": "trainer"})
    rj = b.build_rayjob(job, b.Context("ml", uid="u1", submission_mode=operator_mode))
    _valid(rj)
    assert rj["spec"]["submissionMode"] == expected
    # A submitter pod exists only in K8sJobMode; HTTPMode has KubeRay post the job itself.
    assert ("submitterPodTemplate" in rj["spec"]) == (expected == "K8sJobMode")


def test_an_unknown_operator_submission_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="submission mode 'Sideways'"):
        b.build_rayjob(_job(), b.Context("ml", submission_mode="Sideways"))


def test_checkpoint_paths_follow_the_engine_layout() -> None:
    from pathlib import Path

    from herl.engine.checkpoint import checkpoint_name, checkpoint_root

    local = _job(engine="local").spec
    assert local.checkpoint_relpath(7) == str(checkpoint_root(Path("")) / checkpoint_name(7))
    assert _job().spec.checkpoint_relpath(7) == "global_step_7"  # veRL's trainer.default_local_dir layout


def test_ray_version_of_the_cpu_image_is_the_pinned_one() -> None:
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert f"ray[default]=={b.RAY_VERSIONS['local']}" in extras["ray"]
    rj = b.build_rayjob(_job(engine="local"), b.Context("ml"))
    assert rj["spec"]["rayClusterSpec"]["rayVersion"] == b.RAY_VERSIONS["local"]
