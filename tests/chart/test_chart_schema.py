"""values.schema.json: Helm itself rejects bad values and names the field."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
import yaml
from chart_support import MATRIX

from herl import chart

SCHEMA = json.loads((chart.CHART_DIR / "values.schema.json").read_text())
DEFAULTS = yaml.safe_load((chart.CHART_DIR / "values.yaml").read_text())

# (id, values, text helm's error must contain: the offending field's path)
BAD_VALUES: list[tuple[str, dict[str, Any], str]] = [
    ("unknown-top-level-key", {"replicas": 2}, "replicas"),
    ("unknown-nested-key", {"image": {"registry": "ghcr.io"}}, "registry"),
    ("pull-policy-enum", {"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ("empty-repository", {"image": {"repository": ""}}, "/image/repository"),
    ("digest-format", {"image": {"digest": "abc123"}}, "/image/digest"),
    ("watch-namespaces-not-a-list", {"watchNamespaces": "team-a"}, "/watchNamespaces"),
    ("watch-namespace-invalid-name", {"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),
    ("watch-namespaces-duplicate", {"watchNamespaces": ["a", "a"]}, "/watchNamespaces"),
    ("log-level-enum", {"operator": {"logLevel": "trace"}}, "/operator/logLevel"),
    ("metrics-port-range", {"operator": {"metricsPort": 70000}}, "/operator/metricsPort"),
    ("privileged-port", {"operator": {"healthPort": 80}}, "/operator/healthPort"),
    ("extra-arg-not-a-flag", {"operator": {"extraArgs": ["rm -rf"]}}, "/operator/extraArgs/0"),
    ("skip-check-string", {"skipKubeRayCheck": "yes"}, "/skipKubeRayCheck"),
    ("service-account-create-string", {"serviceAccount": {"create": "true"}}, "/serviceAccount/create"),
    ("run-as-root", {"securityContext": {"runAsUser": 0}}, "/securityContext/runAsUser"),
    ("resource-quantity", {"resources": {"limits": {"memory": "lots"}}}, "/resources/limits/memory"),
    (
        "interval-not-a-duration",
        {"monitoring": {"serviceMonitor": {"interval": "30"}}},
        "/monitoring/serviceMonitor/interval",
    ),
    (
        "dashboard-label-not-a-string",
        {"monitoring": {"dashboards": {"labels": {"grafana_dashboard": 1}}}},
        "/monitoring/dashboards/labels/grafana_dashboard",
    ),
    (
        "port-name-too-long",
        {"monitoring": {"podMonitor": {"portName": "herl-trainer-metrics"}}},
        "/monitoring/podMonitor/portName",
    ),
    ("service-type-enum", {"service": {"type": "ExternalName"}}, "/service/type"),
]


@pytest.mark.parametrize(("values", "field"), [pytest.param(v, f, id=i) for i, v, f in BAD_VALUES])
def test_helm_rejects_bad_values_naming_the_field(values: dict[str, Any], field: str) -> None:
    with pytest.raises(chart.ChartError) as err:
        chart.render(values)
    message = str(err.value)
    assert "values don't meet the specifications of the schema" in message
    assert field in message, message


@pytest.mark.parametrize(("values", "field"), [pytest.param(v, f, id=i) for i, v, f in BAD_VALUES])
def test_python_jsonschema_agrees(values: dict[str, Any], field: str) -> None:
    """The same cases against the schema with the jsonschema library, merged over the defaults the way
    Helm merges them: guards against a case that only fails helm by accident."""
    merged = _merge(DEFAULTS, values)
    errors = list(jsonschema.Draft7Validator(SCHEMA).iter_errors(merged))
    assert errors, f"{values} passed the schema"


def test_defaults_and_matrix_values_pass_the_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    validator = jsonschema.Draft7Validator(SCHEMA)
    for name, (values, _apis) in MATRIX.items():
        errors = [e.message for e in validator.iter_errors(_merge(DEFAULTS, values))]
        assert not errors, (name, errors)


def test_every_values_key_is_in_the_schema_and_documented() -> None:
    """Every key of values.yaml is declared in the schema, and every declared key has a comment right
    above it (free-form maps such as labels or resource lists are the user's, not ours to document)."""
    assert SCHEMA["additionalProperties"] is False
    lines = (chart.CHART_DIR / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing maps
    checked = 0
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")) or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = stripped.split(":", 1)[0].strip('"')
        path = [k for _, k in stack] + [key]
        stack.append((indent, key))
        schema: dict[str, Any] | None = SCHEMA
        for part in path[:-1]:
            schema = _resolve(schema).get("properties", {}).get(part) if schema else None
        declared = _resolve(schema).get("properties", {}) if schema else {}
        if schema is not None and not declared and _resolve(schema).get("additionalProperties") is not False:
            continue  # a free-form map (labels, annotations, resource quantities)
        assert key in declared, f"values.yaml line {i + 1}: {'.'.join(path)} is not in values.schema.json"
        assert lines[i - 1].strip().startswith("#"), f"values.yaml line {i + 1} has no comment: {line}"
        checked += 1
    assert checked >= 40


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        return SCHEMA["definitions"][ref.rsplit("/", 1)[1]]
    return schema


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base.get(k), v) if k in base else v
        return out
    return over
