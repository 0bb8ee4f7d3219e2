"""``herl data convert``: source datasets -> veRL parquet, never silently.

Every record either becomes a row or is counted under a reason, with the first few examples kept
(line number + what is wrong). Reasons come in two kinds:

- malformed (bad JSON, missing prompt, kwargs length mismatch, bad rubric weight, ...): skipped, or
  with ``strict`` the whole conversion fails and nothing is written;
- unsupported (HIR-16K ``checker`` + ``functions`` rows, which HeRL's IF reward cannot score):
  always skipped and reported, even under ``strict`` (the real HIR-16K holds such rows by design).
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herl.data.records import CONVERTERS, SkipRow
from herl.errors import UserError

MAX_EXAMPLES = 3


@dataclass
class ConvertReport:
    """What a conversion did; ``format()`` is what the CLI prints."""

    source: str
    input: str
    read: int = 0
    written: int = 0
    by_data_source: Counter[str] = field(default_factory=Counter)
    by_shape: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    unsupported: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @property
    def malformed(self) -> int:
        return sum(self.skipped.values())

    def add_skip(self, where: str, exc: SkipRow) -> None:
        (self.unsupported if exc.unsupported else self.skipped)[exc.reason] += 1
        if len(self.examples[exc.reason]) < MAX_EXAMPLES:
            self.examples[exc.reason].append(f"{where}: {exc.detail}")

    def format(self) -> str:
        lines = [f"{self.source}: read {self.read} records from {self.input}, wrote {self.written} rows"]
        if self.by_data_source:
            lines.append(
                "  by data_source: " + ", ".join(f"{k}={v}" for k, v in sorted(self.by_data_source.items()))
            )
        if self.by_shape:
            lines.append(
                "  by source shape: " + ", ".join(f"{k}={v}" for k, v in sorted(self.by_shape.items()))
            )
        for title, counts in (
            ("skipped (malformed)", self.skipped),
            ("skipped (unsupported)", self.unsupported),
        ):
            if not counts:
                continue
            lines.append(f"  {title}: {sum(counts.values())}")
            for reason, n in counts.most_common():
                lines.append(f"    {reason}: {n}")
                lines.extend(f"      e.g. {ex}" for ex in self.examples.get(reason, []))
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "input": self.input, "read": self.read, "written": self.written,
            "by_data_source": dict(self.by_data_source), "by_shape": dict(self.by_shape),
            "skipped": dict(self.skipped), "unsupported": dict(self.unsupported),
            "examples": dict(self.examples),
        }  # fmt: skip


def iter_records(path: Path) -> Iterator[tuple[str, Any]]:
    """``(where, record)`` pairs from .jsonl (one object a line), .json (an array) or .parquet.

    A line that is not JSON yields a :class:`SkipRow` instead of a record, so it is counted, not fatal.
    """
    if not path.is_file():
        raise UserError(f"input file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise UserError(f"{path}: not a readable parquet file ({type(exc).__name__}: {exc})") from None
        for i, rec in enumerate(table.to_pylist()):
            yield f"row {i}", rec
        return
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: not a JSON file ({exc})") from None
        if not isinstance(data, list):
            raise UserError(f"{path}: a .json input must hold an array of records")
        for i, rec in enumerate(data):
            yield f"item {i}", rec
        return
    with path.open(encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield f"line {n}", json.loads(line)
            except json.JSONDecodeError as exc:
                yield f"line {n}", SkipRow("bad_json", f"not JSON ({exc.msg} at column {exc.colno})")


def arrow_schema(source: str) -> Any:
    """Fixed Arrow schemas, so every file of one source has the same column types (veRL concatenates)."""
    import pyarrow as pa

    chat = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    reward = pa.struct([("style", pa.string()), ("ground_truth", pa.string())])
    if source == "hir16k":
        extra = pa.struct(
            [
                ("index", pa.int64()),
                ("question", pa.string()),
                ("source_format", pa.string()),
                ("constraint_pattern", pa.string()),
            ]
        )
    elif source == "rar-medicine":
        rubric = pa.list_(
            pa.struct([("description", pa.string()), ("title", pa.string()), ("weight", pa.float64())])
        )
        extra = pa.struct(
            [
                ("index", pa.int64()),
                ("question", pa.string()),
                ("rubric", rubric),
                ("reference_answer", pa.string()),
                ("question_source", pa.string()),
            ]
        )
    else:
        raise UserError(f"unknown source format {source!r} (allowed: {', '.join(CONVERTERS)})")
    return pa.schema(
        [
            ("data_source", pa.string()),
            ("prompt", chat),
            ("ability", pa.string()),
            ("reward_model", reward),
            ("extra_info", extra),
        ]
    )


def convert_records(source: str, path: Path) -> tuple[list[dict[str, Any]], ConvertReport]:
    """Convert every record of ``path``; returns the good rows and the report (nothing is written)."""
    if source not in CONVERTERS:
        raise UserError(f"unknown source format {source!r} (allowed: {', '.join(CONVERTERS)})")
    to_row = CONVERTERS[source]
    report = ConvertReport(source=source, input=str(path))
    rows: list[dict[str, Any]] = []
    for index, (where, rec) in enumerate(iter_records(path)):
        report.read += 1
        if isinstance(rec, SkipRow):
            report.add_skip(where, rec)
            continue
        try:
            conv = to_row(rec, index)
        except SkipRow as exc:
            report.add_skip(where, exc)
            continue
        rows.append(conv.row)
        report.by_data_source[conv.row["data_source"]] += 1
        report.by_shape[conv.shape] += 1
    report.written = len(rows)
    return rows, report


def write_parquet(rows: list[dict[str, Any]], source: str, out: Path) -> None:
    """Write atomically (temp file + rename), so a failed run never leaves a half file behind."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=arrow_schema(source))
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(table, tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)


def convert(source: str, path: Path, out: Path, *, strict: bool = False) -> ConvertReport:
    """Convert ``path`` to a veRL parquet at ``out``. Raises UserError (after nothing is written) when
    ``strict`` and a row is malformed, or when no row survives."""
    rows, report = convert_records(source, path)
    if strict and report.malformed:
        top = ", ".join(f"{k}={v}" for k, v in report.skipped.most_common())
        first = next(iter(report.examples[report.skipped.most_common(1)[0][0]]))
        raise UserError(f"--strict: {report.malformed} malformed record(s) in {path} ({top}); first: {first}")
    if not rows:
        raise UserError(f"no usable records in {path} (read {report.read}); nothing written")
    write_parquet(rows, source, out)
    return report


def report_json(report: ConvertReport) -> str:
    return json.dumps(report.as_dict(), indent=2, sort_keys=True)
