"""The generated CRD, the samples, the presets and the `herl validate` command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from api_admission import admission_errors
from api_support import REPO, SAMPLES

from herl.api.crd import crd, openapi_schema
from herl.api.model import HeRLJob, HeRLJobSpec
from herl.api.validate import load_job, validate_path
from herl.errors import UserError
from herl.generate import check_all, generated_files


def test_checked_in_crd_copies_equal_the_generated_one() -> None:
    files = generated_files()
    for rel in ("manifests/crds/herl.dev_herljobs.yaml", "charts/herl-operator/crds/herl.dev_herljobs.yaml"):
        assert (REPO / rel).read_text() == files[rel], f"{rel} drifted: run `herl generate`"


def test_drift_is_detected(tmp_path: Path) -> None:
    # Copy the generated files into a scratch root, damage one, and the check must name it.
    for rel, text in generated_files().items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert check_all(tmp_path) == []
    target = tmp_path / "manifests/crds/herl.dev_herljobs.yaml"
    target.write_text(target.read_text().replace("maxLength: 1024", "maxLength: 9999", 1))
    problems = check_all(tmp_path)
    assert len(problems) == 1 and problems[0].startswith("manifests/crds/herl.dev_herljobs.yaml")


def test_crd_is_a_valid_structural_crd(tmp_path: Path) -> None:
    path = tmp_path / "crd.yaml"
    path.write_text(yaml.safe_dump(crd()))
    out = subprocess.run(
        [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "passed" in out.stdout


def _walk(node: object, trail: str = "") -> list[str]:
    """Structural-schema violations: every object declares properties or is explicitly free-form."""
    bad: list[str] = []
    if isinstance(node, dict):
        if "anyOf" in node or "$ref" in node or (node.get("type") is None and "properties" in node):
            bad.append(trail)
        if node.get("type") == "object" and not (
            "properties" in node
            or "additionalProperties" in node
            or node.get("x-kubernetes-preserve-unknown-fields")
        ):
            bad.append(trail)
        for key, value in node.items():
            bad += _walk(value, f"{trail}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            bad += _walk(value, f"{trail}[{i}]")
    return bad


def test_schema_is_structural_and_documented() -> None:
    schema = openapi_schema()
    assert _walk(schema["properties"]["spec"]) == []
    # kubectl explain quality: every spec field has a description.
    missing: list[str] = []

    def check(node: dict, trail: str) -> None:
        for key, child in node.get("properties", {}).items():
            if not child.get("description"):
                missing.append(f"{trail}.{key}")
            check(child.get("items", child), f"{trail}.{key}")

    check(schema["properties"]["spec"], "spec")
    assert missing == []


def test_printer_columns_and_names() -> None:
    spec = crd()["spec"]
    assert spec["names"]["shortNames"] == ["herl"]
    columns = {c["name"]: c for c in spec["versions"][0]["additionalPrinterColumns"]}
    for name in ("Phase", "Step", "Reward", "Attempts", "Age"):
        assert name in columns and "priority" not in columns[name]
    assert spec["versions"][0]["subresources"] == {"status": {}}
    conditions = openapi_schema()["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map" and conditions["x-kubernetes-list-map-keys"] == [
        "type"
    ]


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_every_sample_is_valid_for_the_crd_and_herl_validate(sample: Path) -> None:
    doc = yaml.safe_load(sample.read_text())
    assert admission_errors(doc) == []
    job, findings = validate_path(sample)
    assert job is not None, [str(f) for f in findings]


def test_samples_cover_the_paper_runs_and_a_local_run() -> None:
    jobs = {s.name: load_job(s) for s in SAMPLES}
    presets = {j.spec.preset.value for j in jobs.values()}
    assert {"official-if", "official-medical"} <= presets
    local = jobs["local-smollm2.yaml"]
    assert local.spec.data_.format == "synthetic-if" and local.spec.hindsight_.enabled
    assert not jobs["local-smollm2-grpo.yaml"].spec.hindsight_.enabled


def _spec(**fields: object) -> HeRLJobSpec:
    return HeRLJobSpec.model_validate({"model": {"path": "/m"}, "data": {"train": "/d"}, **fields})


def test_official_if_preset_is_the_released_script() -> None:
    s = _spec(preset="official-if")
    a, h = s.algorithm_, s.hindsight_
    assert (a.group_size, a.train_batch_size, a.mini_batch_size, a.micro_batch_size_per_gpu) == (
        8,
        64,
        32,
        16,
    )
    assert (a.learning_rate, a.weight_decay, a.grad_clip, a.epochs) == (1e-6, 0.01, 1.0, 6)
    assert (s.kl_loss_.enabled, s.kl_loss_.coef, s.kl_loss_.type) == (True, 0.0, "low_var_kl")
    assert (a.clip_ratio, a.dual_clip_c, a.loss_agg_mode, a.entropy_coeff) == (0.2, 3.0, "token-mean", 0.0)
    assert (s.data_.max_prompt_length, s.data_.max_response_length) == (6144, 2048)
    assert (h.threshold, h.candidate_limit, h.gamma, s.bonus_.alpha) == (1.0, 16, 1.0, 0.05)
    assert (h.train_under, h.incorporation, h.fallback) == ("hindsight", "replace", "duplicate-best")
    # Quirks switched back on.
    assert s.revision_.use_rollout_sampling and not h.seeded_slots and h.prompt_template == "constraint"
    assert s.revision_.temperature == 0.3 and s.revision_max_tokens == 2048
    assert (s.checkpoints_.save_every_steps, s.test_freq) == (40, 5)


def test_official_medical_preset_is_the_released_script() -> None:
    s = _spec(preset="official-medical", reward={"judge": {"endpoint": "https://j/v1"}})
    assert s.reward_.type == "rubric-judge" and s.reward_.judge is not None
    assert (s.reward_.judge.model, s.reward_.judge.temperature, s.reward_.judge.concurrency) == (
        "gpt-4o-mini",
        0.1,
        512,
    )
    assert s.reward_.judge.pitfall_policy == "clamp"
    assert (s.algorithm_.mini_batch_size, s.algorithm_.epochs, s.kl_loss_.coef, s.hindsight_.gamma) == (
        16,
        3,
        0.001,
        0.1,
    )
    assert (s.data_.max_prompt_length, s.data_.max_response_length) == (4096, 4096)
    assert s.hindsight_.prompt_template == "constraint" and s.revision_max_tokens == 4096


def test_user_fields_beat_the_preset_and_defaults_fix_the_quirks() -> None:
    s = _spec(preset="official-if", algorithm={"hindsight": {"gamma": 0.5, "seededSlots": True}})
    assert s.hindsight_.gamma == 0.5 and s.hindsight_.seeded_slots
    assert s.revision_.use_rollout_sampling  # untouched quirk stays on under the preset
    plain = _spec()
    assert not plain.revision_.use_rollout_sampling and plain.hindsight_.seeded_slots
    assert plain.hindsight_.prompt_template == "auto"


# --- the command line -------------------------------------------------------------------------------

BAD_FILES: dict[str, bytes] = {
    "empty.yaml": b"",
    "comments-only.yaml": b"# nothing here\n",
    "bad-yaml.yaml": b"spec: [unclosed\n",
    "list.yaml": b"- a\n- b\n",
    "wrong-kind.yaml": b"apiVersion: ray.io/v1\nkind: RayJob\nmetadata: {name: x}\n",
    "two-docs.yaml": b"apiVersion: herl.dev/v1alpha1\nkind: HeRLJob\n---\napiVersion: herl.dev/v1alpha1\nkind: HeRLJob\n",
    "latin1.yaml": "name: caf\u00e9".encode("latin-1"),
    "huge.yaml": b"# " + b"x" * (1 << 20) + b"\n",
    "unknown-field.yaml": b"apiVersion: herl.dev/v1alpha1\nkind: HeRLJob\nmetadata: {name: x}\nspec: {model: {path: /m}, data: {train: /d}, bogus: 1}\n",
}


def _herl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "herl.cli", *args], capture_output=True, text=True, check=False
    )


def test_validate_cli_accepts_all_samples() -> None:
    out = _herl("validate", *map(str, SAMPLES))
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("valid HeRLJob") == len(SAMPLES)


def test_validate_cli_reports_bad_files_without_tracebacks(tmp_path: Path) -> None:
    paths = []
    for name, data in BAD_FILES.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    paths.append(str(tmp_path / "missing.yaml"))
    out = _herl("validate", *paths)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    for p in paths:  # every file named on at least one line of its own
        assert any(line.startswith(p + ":") for line in lines), p
    assert "invalid YAML at line" in out.stderr
    assert "2 YAML documents" in out.stderr
    assert "must be herl.dev/v1alpha1" in out.stderr
    assert "bogus: unknown field" in out.stderr
    assert "not UTF-8" in out.stderr and "file not found" in out.stderr


def test_load_job_raises_user_error_listing_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "herl.dev/v1alpha1",
                "kind": "HeRLJob",
                "metadata": {"name": "x"},
                "spec": {"model": {"path": "/m"}, "algorithm": {"groupSize": 1, "miniBatchSize": 48}},
            }
        )
    )
    with pytest.raises(UserError) as err:
        load_job(path)
    text = str(err.value)
    assert "spec.algorithm.groupSize" in text


def test_round_trip_through_the_model_keeps_wire_names() -> None:
    job = load_job(REPO / "manifests/samples/local-smollm2.yaml")
    dumped = job.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert dumped["spec"]["data"]["maxPromptLength"] == 640
    again = HeRLJob.model_validate(dumped)
    assert again == job
