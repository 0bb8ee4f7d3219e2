"""What the API server would say about a HeRLJob with our CRD installed, as far as we can emulate it.

Structural schema → jsonschema (Draft 4 semantics: boolean exclusiveMinimum); CEL rules → cel-python.
Used to prove the *generated CRD* (not just our pydantic model) rejects each invalid spec.
"""

from __future__ import annotations

from typing import Any

import celpy
import jsonschema
from api_support import crd_schema


def _strict(node: Any) -> Any:
    """kubectl (>= 1.27) asks for strict field validation: unknown fields are errors, not pruned."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def schema_errors(doc: dict[str, Any]) -> list[str]:
    schema = _strict(crd_schema())
    schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta is validated by the server itself
    validator = jsonschema.Draft4Validator(schema)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def _eval(rule: str, obj: Any) -> bool:
    env = celpy.Environment()
    result = env.program(env.compile(rule)).evaluate({"self": celpy.json_to_cel(obj)})
    return bool(result)


def cel_failures(doc: dict[str, Any]) -> list[str]:
    """fieldPaths (as spec-relative `spec.x.y`) of the CEL rules that evaluate to false."""
    schema = crd_schema()
    failed = []
    for rule in schema.get("x-kubernetes-validations", []):
        if not _eval(rule["rule"], doc):
            failed.append("metadata.name")
    for rule in schema["properties"]["spec"]["x-kubernetes-validations"]:
        if not _eval(rule["rule"], doc.get("spec", {})):
            failed.append("spec" + rule["fieldPath"])
    return failed


def admission_errors(doc: dict[str, Any]) -> list[str]:
    errors = schema_errors(doc)
    if errors:  # the API server reports both; CEL on a schema-invalid object may not evaluate cleanly
        return errors
    return [f"{path}: CEL rule failed" for path in cel_failures(doc)]
