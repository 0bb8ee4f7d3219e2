"""The HeRLJob CRD on a real kube-apiserver: accepted, every sample admitted, every invalid spec of the
tests/api corpus refused by the apiserver itself naming the field, and `herl validate` agreeing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from api_support import INVALID, SAMPLES, base_doc, with_changes
from e2e_support import Kube

from herl.api.validate import validate_document


def _server_dry_run(kube: Kube, doc: dict[str, Any], namespace: str) -> tuple[bool, str]:
    doc = {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}
    proc = kube.run("create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(doc), check=False)
    return proc.returncode == 0, proc.stderr.strip()


def test_crd_is_served_with_printer_columns_and_short_name(kube: Kube) -> None:
    crd = kube.get("crd", "herljobs.herl.dev")
    assert crd is not None
    conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    # NamesAccepted + Established: the structural schema, the CEL rules (cost budget included) and the
    # printer columns were all accepted by the apiserver.
    assert conds.get("Established") == "True" and conds.get("NamesAccepted") == "True"
    assert "herl" in crd["spec"]["names"]["shortNames"]
    assert kube.run("get", "herl", "-A").returncode == 0
    resources = kube.run("api-resources", "--api-group=herl.dev", "-o", "wide").stdout
    assert "herljobs" in resources and "HeRLJob" in resources


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_every_sample_is_admitted(kube: Kube, namespace: str, path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    ok, err = _server_dry_run(kube, doc, namespace)
    assert ok, f"{path.name} refused by the apiserver: {err}"
    job, findings = validate_document(doc)
    assert job is not None, findings


def test_every_invalid_spec_is_refused_by_the_apiserver_naming_the_field(kube: Kube, namespace: str) -> None:
    """One namespace for the whole corpus (dry-run creates store nothing). For each case: the apiserver
    refuses, its message names the field (or, for cross-field rules, the rule's field path), and
    `herl validate` refuses the same document."""
    disagreements = []
    for case, edits, field in INVALID:
        doc = with_changes(base_doc(), edits)
        ok, err = _server_dry_run(kube, doc, namespace)
        job, _ = validate_document(doc)
        if ok or job is not None:
            disagreements.append(
                f"{case}: apiserver {'admits' if ok else 'refuses'}, herl validate "
                f"{'admits' if job is not None else 'refuses'}"
            )
            continue
        if field not in err and field.removeprefix("spec.") not in err:
            disagreements.append(f"{case}: the apiserver's message does not name {field}: {err}")
    assert not disagreements, "\n".join(disagreements)


def test_valid_base_document_agrees(kube: Kube, namespace: str) -> None:
    ok, err = _server_dry_run(kube, base_doc(), namespace)
    assert ok, err
