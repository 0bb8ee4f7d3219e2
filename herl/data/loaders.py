"""``load_prompts``: training prompts for the local engine, from a veRL parquet or a raw source file.

All formats give the same row dicts (the veRL row of :mod:`herl.data.records`), so the engine has one
code path. Unlike ``herl data convert``, loading is strict: a malformed row is an error that names
the file, the row and what is wrong, because training on a silently shrunk dataset is worse than
not starting. Unsupported HIR-16K rows (checker + functions) are skipped with a logged count.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from herl.data.records import RAR_SOURCE
from herl.errors import UserError

log = logging.getLogger(__name__)

FORMATS = ("verl-parquet", "hir16k-jsonl", "rar-medicine")
REQUIRED_COLUMNS = ("prompt", "data_source", "reward_model")


def _check_verl_row(path: Path, i: int, row: Mapping[str, Any]) -> None:
    def bad(msg: str) -> UserError:
        return UserError(f"{path}: row {i}: {msg}")

    prompt = row.get("prompt")
    if isinstance(prompt, str):
        if not prompt.strip():
            raise bad("column 'prompt' is empty")
    elif isinstance(prompt, list) and prompt:
        for t in prompt:
            if (
                not isinstance(t, Mapping)
                or not isinstance(t.get("role"), str)
                or not isinstance(t.get("content"), str)
            ):
                raise bad("column 'prompt' must be a list of {role, content} text turns")
    else:
        raise bad("column 'prompt' must be a non-empty chat list (or text)")
    if not isinstance(row.get("data_source"), str) or not row["data_source"]:
        raise bad("column 'data_source' is empty")
    rm = row.get("reward_model")
    if not isinstance(rm, Mapping) or "ground_truth" not in rm:
        raise bad("column 'reward_model' must be a struct with a 'ground_truth' field")
    if row["data_source"] == RAR_SOURCE:
        extra = row.get("extra_info")
        rubric = extra.get("rubric") if isinstance(extra, Mapping) else None
        if not rubric:
            raise bad("rar-medicine rows need extra_info.rubric (a non-empty list) for the judge")


def _load_verl_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise UserError(f"prompt file not found: {path}")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise UserError(f"{path}: not a readable parquet file ({type(exc).__name__}: {exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise UserError(
            f"{path}: missing column(s) {', '.join(missing)} "
            f"(has: {', '.join(table.column_names)}; a veRL parquet needs {', '.join(REQUIRED_COLUMNS)})"
        )
    rows = table.to_pylist()
    for i, row in enumerate(rows):
        _check_verl_row(path, i, row)
    return rows


def _load_source(source: str, path: Path) -> list[dict[str, Any]]:
    from herl.data.convert import convert_records

    rows, report = convert_records(source, path)
    if report.malformed:
        reason, n = report.skipped.most_common(1)[0]
        raise UserError(
            f"{path}: {report.malformed} malformed record(s) ({reason}: {n}); first: "
            f"{report.examples[reason][0]} (fix them, or run 'herl data convert' to skip and count them)"
        )
    if report.unsupported:
        log.warning(
            "%s: skipped %d unsupported record(s): %s",
            path,
            sum(report.unsupported.values()),
            dict(report.unsupported),
        )
    if not rows:
        raise UserError(f"{path}: no usable records (read {report.read})")
    return rows


def load_prompts(format: str, path: str | Path) -> list[dict[str, Any]]:
    """Training rows from ``path``. ``format``: verl-parquet | hir16k-jsonl | rar-medicine.

    Each row has ``prompt`` (chat list), ``data_source``, ``reward_model`` {style, ground_truth} and
    ``extra_info``. Raises :class:`UserError` naming the missing column or the bad row.
    """
    p = Path(path)
    if format == "verl-parquet":
        return _load_verl_parquet(p)
    if format == "hir16k-jsonl":
        return _load_source("hir16k", p)
    if format == "rar-medicine":
        return _load_source("rar-medicine", p)
    raise UserError(f"unknown prompt format {format!r} (allowed: {', '.join(FORMATS)})")
