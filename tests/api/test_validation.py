"""Invalid HeRLJobs are rejected with the right field named — by `herl validate` AND by the generated CRD.

Each case is one mistake a user could make. For every case we check two independent enforcers:
1. our Python validation (`validate_document`, used by `herl validate`, the operator and the trainer)
   names the expected field;
2. the generated CRD (structural schema via jsonschema + CEL rules via cel-python) also rejects it, so
   the same mistake is refused at admission on a cluster.
"""

from __future__ import annotations

from typing import Any

import pytest
from api_admission import admission_errors, cel_failures, schema_errors
from api_support import INVALID, base_doc, with_changes
from hypothesis import given, settings
from hypothesis import strategies as st

from herl.api.validate import validate_document


def test_there_are_at_least_twenty_distinct_cases() -> None:
    assert len({c[0] for c in INVALID}) == len(INVALID) >= 20
    assert len({c[2] for c in INVALID}) >= 20


@pytest.mark.parametrize(("case", "edits", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_herl_validate_names_the_field(case: str, edits: dict[str, Any], field: str) -> None:
    job, findings = validate_document(with_changes(base_doc(), edits), "job.yaml")
    assert job is None, case
    paths = [f.path for f in findings]
    assert field in paths, f"{case}: expected {field} among {paths}"
    line = str(next(f for f in findings if f.path == field))
    assert line.startswith(f"job.yaml: {field}: "), line


@pytest.mark.parametrize(("case", "edits", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_generated_crd_rejects_it_too(case: str, edits: dict[str, Any], field: str) -> None:
    doc = with_changes(base_doc(), edits)
    assert admission_errors(doc), f"{case}: the CRD would admit an invalid object"


def test_base_document_is_valid_everywhere() -> None:
    doc = base_doc()
    job, findings = validate_document(doc)
    assert job is not None and not findings
    assert schema_errors(doc) == []
    assert cel_failures(doc) == []


def test_values_are_shown_and_allowed_values_named() -> None:
    _, findings = validate_document(
        with_changes(base_doc(), {"spec.algorithm.hindsight.incorporation": "prepend"})
    )
    text = str(findings[0])
    assert "'prepend'" in text and "'replace'" in text and "'append'" in text
    _, findings = validate_document(with_changes(base_doc(), {"spec.algorithm.groupsize": 8}))
    assert "groupSize" in str(findings[0]) and "allowed here" in str(findings[0])


def test_all_cross_field_problems_are_reported_together() -> None:
    doc = with_changes(base_doc(), {"spec.algorithm.miniBatchSize": 48, "spec.data.maxPromptLength": 1024})
    _, findings = validate_document(doc)
    assert {"spec.algorithm.miniBatchSize", "spec.data.maxPromptLength"} <= {f.path for f in findings}


# --- CEL and Python must agree on every combination of the fields the rules read -------------------

_rule_inputs = st.fixed_dictionaries(
    {},
    optional={
        "preset": st.sampled_from(["none", "official-if", "official-medical"]),
        "algorithm": st.fixed_dictionaries(
            {},
            optional={
                "trainBatchSize": st.sampled_from([8, 16, 32, 64]),
                "miniBatchSize": st.sampled_from([4, 16, 24, 32, 64]),
                "hindsight": st.fixed_dictionaries({}, optional={"enabled": st.booleans()}),
            },
        ),
        "data": st.fixed_dictionaries(
            {"train": st.just("/d.parquet")},
            optional={
                "maxPromptLength": st.sampled_from([1024, 4096, 4608, 6144]),
                "maxResponseLength": st.sampled_from([512, 2048, 4096]),
                "maxInstructionLength": st.sampled_from([256, 2048]),
                "hindsightPromptMargin": st.sampled_from([0, 512]),
                "allowHindsightTruncation": st.booleans(),
            },
        ),
        "resources": st.fixed_dictionaries(
            {},
            optional={
                "gpusPerWorker": st.sampled_from([1, 2, 4, 8]),
                "tensorParallel": st.sampled_from([1, 2, 4]),
            },
        ),
        "runPolicy": st.fixed_dictionaries(
            {},
            optional={
                "totalBudgetSeconds": st.sampled_from([60, 3600]),
                "attemptDeadlineSeconds": st.sampled_from([60, 600]),
            },
        ),
    },
)


@settings(max_examples=60, deadline=None)
@given(_rule_inputs)
def test_cel_rules_agree_with_python(spec_fields: dict[str, Any]) -> None:
    doc = base_doc()
    doc["spec"] = {"model": {"path": "/m"}, **spec_fields}
    if doc["spec"].get("preset") == "official-medical":
        doc["spec"]["reward"] = {"judge": {"endpoint": "https://judge/v1"}}
    _, findings = validate_document(doc)
    python_fail = {f.path for f in findings}
    cel_fail = set(cel_failures(doc))
    assert python_fail == cel_fail, (doc["spec"], python_fail, cel_fail)
