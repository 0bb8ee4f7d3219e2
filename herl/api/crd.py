"""Generate the HeRLJob CustomResourceDefinition from the pydantic model.

pydantic emits JSON Schema 2020-12; a CRD wants a *structural* OpenAPI v3 schema. The conversion:
inline every ``$ref``; turn ``anyOf[X, null]`` (optional fields) into ``X`` (absent = not set); drop
``title``/``default`` (presets fill defaults, see herl/api/model.py); turn numeric ``exclusiveMinimum``
into ``minimum`` + ``exclusiveMinimum: true``; map free-form objects to
``x-kubernetes-preserve-unknown-fields``; add the CEL rules of herl/api/rules.py, the conditions
list-map markers, printer columns, the status subresource and the short name.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from herl.api.model import (
    API_GROUP,
    API_VERSION,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    HeRLJob,
    HeRLJobSpec,
)
from herl.api.presets import PRESETS, preset_value
from herl.api.rules import NAME_RULE, RULES, cel_has_chain

CATEGORIES = ["herl", "ml"]


# ---- CEL: the rules' templates expanded against the model's defaults and the presets


def _field_default(path: str) -> Any:
    """The model default of the spec field at dotted camelCase ``path``."""
    model: type[BaseModel] = HeRLJobSpec
    parts = path.split(".")
    for i, part in enumerate(parts):
        field = next((f for f in model.model_fields.values() if f.validation_alias == part), None)
        if field is None:
            field = next((f for n, f in model.model_fields.items() if n == part), None)
        if field is None:
            raise KeyError(f"no field {path}")
        if i == len(parts) - 1:
            return field.get_default(call_default_factory=True)
        ann = field.annotation
        nested = [
            a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not nested:
            raise KeyError(f"{part} in {path} is not an object")
        model = nested[0]
    raise KeyError(path)


def _cel_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    raise TypeError(f"no CEL literal for {value!r}")


def cel_value(path: str) -> str:
    """CEL for the effective value at ``path``: user's, else the preset's, else the model default."""
    fallback = _cel_literal(_field_default(path))
    for preset in PRESETS:
        try:
            value = preset_value(preset, path)
        except KeyError:
            continue
        if _cel_literal(value) != fallback:
            fallback = (
                f"((has(self.preset) && self.preset == '{preset}') ? {_cel_literal(value)} : {fallback})"
            )
    return f"(({cel_has_chain(path)}) ? self.{path} : {fallback})"


def expand(template: str) -> str:
    """Expand ``{a.b}`` placeholders; ``{{`` and ``}}`` stand for literal braces (regex counts)."""
    out, i = [], 0
    while i < len(template):
        if template.startswith("{{", i) or template.startswith("}}", i):
            out.append(template[i])
            i += 2
        elif template[i] == "{":
            j = template.index("}", i)
            out.append(cel_value(template[i + 1 : j]))
            i = j + 1
        else:
            out.append(template[i])
            i += 1
    return "".join(out)


def cel_validations() -> list[dict[str, str]]:
    """The ``x-kubernetes-validations`` list for the ``spec`` schema: every rule of herl/api/rules.py
    with its template expanded (the expansion needs the model's defaults, hence here, not in rules)."""
    out = []
    for r in RULES:
        entry = {"rule": expand(r.cel), "message": r.message, "reason": r.reason}
        # fieldPath must name a field the schema declares; list/object rules report on themselves.
        entry["fieldPath"] = "." + r.path
        out.append(entry)
    return out


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Lifecycle phase"},
    {"name": "Step", "type": "integer", "jsonPath": ".status.progress.step", "description": "Training step"},
    {
        "name": "Total",
        "type": "integer",
        "jsonPath": ".status.progress.totalSteps",
        "priority": 1,
        "description": "Total training steps",
    },
    {
        "name": "Reward",
        "type": "number",
        "jsonPath": ".status.progress.rewardMean",
        "description": "Mean reward of the last step",
    },
    {
        "name": "Attempts",
        "type": "integer",
        "jsonPath": ".status.attemptCount",
        "description": "RayJob attempts so far",
    },
    {
        "name": "HS-Success",
        "type": "number",
        "jsonPath": ".status.progress.hindsightSuccessRate",
        "priority": 1,
        "description": "Share of hindsight revisions that beat their draft (last step)",
    },
    {
        "name": "GPU-Hours",
        "type": "number",
        "jsonPath": ".status.gpuHours",
        "priority": 1,
        "description": "GPU-hours over all attempts",
    },
    {
        "name": "RayJob",
        "type": "string",
        "jsonPath": ".status.rayJobName",
        "priority": 1,
        "description": "Current RayJob",
    },
    {"name": "Preset", "type": "string", "jsonPath": ".spec.preset", "priority": 1},
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.path", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

_DROP = {"title", "default", "$defs", "additionalProperties"}


def clean_description(text: str) -> str:
    """Docstring → one paragraph of `kubectl explain` text (rst ``code`` becomes `code`)."""
    return " ".join(text.replace("``", "`").split())


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].split("/")[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express anyOf {node['anyOf']} structurally")
        merged = {**{k: v for k, v in node.items() if k != "anyOf"}, **options[0]}
        if "description" in node:  # the field's own description beats the type's docstring
            merged["description"] = node["description"]
        return _structural(merged, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "description":
            out[key] = clean_description(value)
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "properties":
            out[key] = {k: _structural(v, defs) for k, v in value.items()}
        else:
            out[key] = _structural(value, defs)
    extra = node.get("additionalProperties")
    if node.get("type") == "object" and "properties" not in node:
        if isinstance(extra, dict):
            out["additionalProperties"] = _structural(extra, defs)
        else:  # dict[str, Any]: a pass-through object (affinity)
            out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def openapi_schema() -> dict[str, Any]:
    raw = HeRLJob.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema = _structural(raw, defs)
    props = schema["properties"]
    props["metadata"] = {"type": "object"}
    props["spec"]["x-kubernetes-validations"] = cel_validations()
    conditions = props["status"]["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    schema["x-kubernetes-validations"] = [NAME_RULE]
    schema["description"] = (
        "HeRLJob runs HeRL (hindsight-experience RL) post-training of an LLM on a KubeRay RayJob: the "
        "operator turns the spec into a RayJob on GPU node pools, keeps checkpoints across retries and "
        "preemptions, and reports phase, conditions and RL progress in status."
    )
    return schema


def crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{API_GROUP}",
            "labels": {"app.kubernetes.io/name": "herl", "app.kubernetes.io/part-of": "herl"},
        },
        "spec": {
            "group": API_GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": CATEGORIES,
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


def render_crd_yaml() -> str:
    header = "# GENERATED by `herl generate` from herl/api/model.py — do not edit by hand.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=120, allow_unicode=True)
