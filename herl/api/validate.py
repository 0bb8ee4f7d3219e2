"""Offline validation of HeRLJob files: the rules the cluster applies, and ours.

``validate_path`` never raises for a bad file: it returns one :class:`Finding` per problem, each naming
the file, the field path, the bad value and what is allowed. ``load_job`` is the same check for
programs (``herl train``, ``python -m herl.train``, the operator): it raises :class:`UserError` with
every problem listed.

What is checked: the file itself (exists, size, UTF-8, YAML, exactly one mapping document), apiVersion
and kind, metadata.name (DNS-1035, at most 40 characters), every field's type, range, enum, pattern
and length (the same constraints the generated CRD schema carries), unknown fields, and the
cross-field rules of herl/api/rules.py (the CRD's CEL rules).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from herl.api.model import API_GROUP, API_VERSION, KIND, HeRLJob
from herl.errors import UserError

MAX_FILE_BYTES = 1 << 20  # the API server's request limit is ~3 MiB; a spec this big is a mistake


@dataclass(frozen=True)
class Finding:
    file: str
    path: str
    message: str
    value: Any = None
    has_value: bool = False

    def __str__(self) -> str:
        shown = f" (got {_short(self.value)})" if self.has_value else ""
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}: {where}{self.message}{shown}"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _lookup(doc: Any, path: tuple[str | int, ...]) -> tuple[bool, Any]:
    node = doc
    for part in path:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            node = node[part]
        else:
            return False, None
    return True, node


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the field at ``loc`` (wire names), for 'allowed fields' hints."""
    model: type[BaseModel] = HeRLJob
    for part in loc:
        if isinstance(part, int):
            continue
        field = next(
            (f for n, f in model.model_fields.items() if part in (n, f.alias, f.validation_alias)), None
        )
        if field is None:
            return None
        nested = _nested_model(field.annotation)
        if nested is None:
            return None
        model = nested
    return model


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def _wire_names(model: type[BaseModel]) -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
        names.append(alias or name)
    return names


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def findings_from_error(file: str, doc: dict[str, Any], exc: ValidationError) -> list[Finding]:
    out: list[Finding] = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        kind = err["type"]
        if kind == "herl_cross_field":
            for path, message in err.get("ctx", {}).get("problems", []):
                parts = tuple(path.split("."))
                found, value = _lookup(doc, parts)
                out.append(Finding(file, path, message, value, found))
            continue
        if kind == "extra_forbidden":
            owner = _model_at(loc[:-1])
            allowed = ", ".join(_wire_names(owner)) if owner else "see `kubectl explain herljob`"
            out.append(Finding(file, _dotted(loc), f"unknown field; allowed here: {allowed}"))
            continue
        if kind == "missing":
            out.append(Finding(file, _dotted(loc), "required field is missing"))
            continue
        message = err["msg"].replace("Input should", "must").replace("String should", "must")
        found, value = _lookup(doc, loc)
        out.append(Finding(file, _dotted(loc), message, value, found))
    return out


def validate_document(doc: Any, file: str = "<input>") -> tuple[HeRLJob | None, list[Finding]]:
    if not isinstance(doc, dict):
        return None, [
            Finding(file, "", f"the document must be a mapping (a HeRLJob), not {type(doc).__name__}")
        ]
    want_api = f"{API_GROUP}/{API_VERSION}"
    head: list[Finding] = []
    if doc.get("apiVersion") != want_api:
        head.append(Finding(file, "apiVersion", f"must be {want_api}", doc.get("apiVersion"), True))
    if doc.get("kind") != KIND:
        head.append(Finding(file, "kind", f"must be {KIND}", doc.get("kind"), True))
    if head:  # the wrong kind of object: its fields would only produce noise
        return None, head
    try:
        return HeRLJob.model_validate(doc), []
    except ValidationError as exc:
        return None, findings_from_error(file, doc, exc)


def load_documents(path: Path) -> tuple[list[Any], list[Finding]]:
    file = str(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return [], [Finding(file, "", "file not found")]
    except OSError as exc:
        return [], [Finding(file, "", f"cannot read: {exc.strerror}")]
    if path.is_dir():
        return [], [Finding(file, "", "is a directory; give a HeRLJob YAML file")]
    if size > MAX_FILE_BYTES:
        return [], [Finding(file, "", f"file is {size} bytes; at most {MAX_FILE_BYTES} bytes are allowed")]
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return [], [Finding(file, "", f"not UTF-8 text (byte {exc.start})")]
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return [], [Finding(file, "", f"invalid YAML{where}: {problem}")]
    if not docs:
        return [], [Finding(file, "", "file is empty; expected one HeRLJob document")]
    if len(docs) > 1:
        return [], [Finding(file, "", f"file holds {len(docs)} YAML documents; put one HeRLJob in each file")]
    return docs, []


def validate_path(path: Path) -> tuple[HeRLJob | None, list[Finding]]:
    docs, findings = load_documents(path)
    if findings:
        return None, findings
    return validate_document(docs[0], str(path))


def load_job(path: str | Path) -> HeRLJob:
    """Read and validate one HeRLJob file, or raise UserError listing every problem."""
    job, findings = validate_path(Path(path))
    if job is None:
        lines = "\n  ".join(str(f) for f in findings)
        raise UserError(
            f"invalid HeRLJob ({len(findings)} problem{'s' if len(findings) > 1 else ''}):\n  {lines}"
        )
    return job
