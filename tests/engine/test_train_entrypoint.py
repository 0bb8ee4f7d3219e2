"""``python -m herl.train`` (the RayJob entrypoint) with engine local: it trains in the process, keeps
its log and checkpoints in HERL_CHECKPOINT_DIR, resumes there, and ends with a classified line on an
expected failure."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

import herl.train as train
from herl.engine.tiny import build_tiny_model_dir, tiny_job
from herl.errors import find_failure
from herl.metrics.promserver import free_port


def _job_file(tmp: Path, model: Path, steps: int, engine: str = "local") -> Path:
    doc = tiny_job(
        model,
        "t",
        engine=engine,
        **{"algorithm.totalSteps": steps, "checkpoints.keepLast": 3, "metrics": {"port": free_port()}},
    )
    path = tmp / f"job-{steps}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_engine_local_trains_here_and_resumes_from_the_checkpoint_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = build_tiny_model_dir(tmp_path / "model", seed=0)
    ckpt = tmp_path / "ckpt"
    monkeypatch.setenv("HERL_CHECKPOINT_DIR", str(ckpt))
    monkeypatch.setenv("HERL_METRICS_ADDR", "127.0.0.1")
    monkeypatch.setenv("HERL_FINAL_METRICS_READ_SECONDS", "0.2")  # no operator here: do not linger

    assert train.main(["--job", str(_job_file(tmp_path, model, 1)), "--dry-run"]) == 0
    assert "engine local" in capsys.readouterr().out
    assert not ckpt.exists()  # a dry run trains nothing

    assert train.main(["--job", str(_job_file(tmp_path, model, 1))]) == 0
    assert (ckpt / "checkpoints" / "step_000001").is_dir()
    # A later attempt (more steps in the same folder) resumes instead of starting over.
    assert train.main(["--job", str(_job_file(tmp_path, model, 2))]) == 0
    log = (ckpt / train.TRAIN_LOG).read_text()
    assert log.count("attempt started") == 2
    assert "resumed from" in log and "(step 1)" in log
    assert "operator did not read the final metrics within 0.2 s" in log
    assert "finished at step 2/2" in log.splitlines()[-1]


def test_an_invalid_job_file_ends_with_a_classified_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: herl.dev/v1alpha1\nkind: HeRLJob\nmetadata: {name: b}\nspec: {engine: trl}\n")
    assert train.main(["--job", str(bad)]) == 2
    found = find_failure(capsys.readouterr().err)
    assert found is not None and found[0] == "InvalidInput" and "spec.engine" in found[1]


def test_engine_verl_without_verl_installed_is_classified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "verl" else real(name, *a)
    )
    job = _job_file(tmp_path, tmp_path, 1, engine="verl")
    assert train.main(["--job", str(job)]) == 3
    found = find_failure(capsys.readouterr().err)
    assert found is not None and found[0] == "EngineNotInImage" and "spec.engine local" in found[1]
