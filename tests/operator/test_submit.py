"""submit(): validate, then create or update the HeRLJob through the kubernetes client (against kmock)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from herl_operator.submit import submit
from op_helpers import SAMPLES

from herl.errors import UserError


def _client(url: str) -> Any:
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = url
    return client.ApiClient(cfg)


async def test_submit_creates_then_updates(kmock: Any, api: Any, tmp_path: Path) -> None:
    path = SAMPLES / "if-qwen2.5-7b.yaml"
    await asyncio.to_thread(submit, path, "team-x", api_client=_client(str(kmock.url)))
    stored = kmock.objects["herl.dev/v1alpha1/herljobs", "team-x", "herl-if-qwen25-7b"].raw
    assert stored["spec"]["model"]["path"] == "/data/models/Qwen2.5-7B-Instruct"
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["runPolicy"]["suspend"] = True
    edited = tmp_path / "job.yaml"
    edited.write_text(yaml.safe_dump(doc))
    await asyncio.to_thread(submit, edited, "team-x", api_client=_client(str(kmock.url)))
    stored = kmock.objects["herl.dev/v1alpha1/herljobs", "team-x", "herl-if-qwen25-7b"].raw
    assert stored["spec"]["runPolicy"]["suspend"] is True


def test_submit_refuses_an_invalid_file_before_any_call(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: herl.dev/v1alpha1\nkind: HeRLJob\nmetadata: {name: Bad_Name}\nspec: {}\n")
    with pytest.raises(UserError):
        submit(bad, api_client=object())
