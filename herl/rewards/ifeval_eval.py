"""IFEval evaluation with the semantics of Google's ``evaluation_main`` (strict and loose), but parallel.

Definitions (identical to the reference ``evaluation_lib``):

- strict: a constraint is followed when the response is non-blank and the checker accepts it;
- loose: followed when the checker accepts any non-blank one of 8 variants of the response: itself,
  without its first line, without its last line, without both, and each of those four with every ``*``
  removed;
- prompt-level accuracy: fraction of prompts whose constraints are all followed; instruction-level:
  fraction of all constraints followed.

What we do differently, for speed only (verdicts are the same, which ``bench/reward_bench.py`` checks
against lm-eval's copy of the reference functions): each checker is built once per constraint and used for
both modes; the strict verdict is the loose verdict of the first variant, so loose stops at the first
accepted variant and skips variants identical to one already tried; rows are spread over worker processes.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from herl.errors import UserError
from herl.rewards import checkers
from herl.rewards.batch import parallel_map
from herl.rewards.instruction_following import build_checker, clean_kwargs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IFEvalInput:
    """One row of IFEval's ``input_data.jsonl``."""

    key: int
    prompt: str
    instruction_id_list: list[str]
    kwargs: list[dict[str, Any]]


@dataclass(frozen=True)
class IFEvalOutput:
    """One row of ``eval_results_{strict,loose}.jsonl`` (the reference's ``OutputExample`` fields)."""

    instruction_id_list: list[str]
    prompt: str
    response: str
    follow_all_instructions: bool
    follow_instruction_list: list[bool]


def loose_variants(response: str) -> list[str]:
    """The reference's 8 loose variants, in its order."""
    lines = response.split("\n")
    remove_first = "\n".join(lines[1:]).strip()
    remove_last = "\n".join(lines[:-1]).strip()
    remove_both = "\n".join(lines[1:-1]).strip()
    return [
        response,
        response.replace("*", ""),
        remove_first,
        remove_last,
        remove_both,
        remove_first.replace("*", ""),
        remove_last.replace("*", ""),
        remove_both.replace("*", ""),
    ]


def _safe_check(instruction: Any, text: str) -> bool:
    try:
        return bool(text.strip()) and bool(instruction.check_following(text))
    except Exception as exc:  # the reference would crash the whole run; we count it as not followed
        log.warning(
            "IFEval checker %s raised %s: %s; counted as not followed",
            instruction.id,
            type(exc).__name__,
            exc,
        )
        return False


def evaluate_row(pair: tuple[IFEvalInput, str]) -> tuple[list[bool], list[bool]]:
    """Strict and loose ``follow_instruction_list`` for one prompt and its response.

    Only the verdicts travel back from a worker (not the prompt and response again), to keep IPC small.
    """
    inp, response = pair
    registry = checkers.ifeval_registry()
    variants: list[str] = []
    for v in loose_variants(response)[1:]:
        if v != response and v not in variants:
            variants.append(v)
    strict: list[bool] = []
    loose: list[bool] = []
    for index, instruction_id in enumerate(inp.instruction_id_list):
        kwargs = inp.kwargs[index] if index < len(inp.kwargs) else {}
        instruction, _ = build_checker(registry, instruction_id, clean_kwargs(kwargs), inp.prompt)
        ok = _safe_check(instruction, response)
        strict.append(ok)
        loose.append(ok or any(_safe_check(instruction, v) for v in variants))
    return strict, loose


def evaluate_row_timed(pair: tuple[IFEvalInput, str]) -> tuple[list[bool], list[bool], float, int]:
    """:func:`evaluate_row` plus the CPU seconds it took and the worker's pid (for the benchmark's
    load-independent work accounting)."""
    t0 = time.process_time()
    strict, loose = evaluate_row(pair)
    return strict, loose, time.process_time() - t0, os.getpid()


def evaluate(
    inputs: Sequence[IFEvalInput],
    prompt_to_response: Mapping[str, str],
    workers: int = 0,
) -> tuple[list[IFEvalOutput], list[IFEvalOutput]]:
    """Strict and loose outputs for every input, in input order; a missing response is a UserError."""
    unknown = [i.instruction_id_list for i in inputs]
    registry = checkers.ifeval_registry()
    for ids in unknown:
        for instruction_id in ids:
            if instruction_id not in registry:
                raise UserError(
                    f"unknown IFEval instruction id {instruction_id!r} in the input data "
                    f"(known: {len(registry)} ids from lm-eval's registry)"
                )
    pairs = []
    for inp in inputs:
        if inp.prompt not in prompt_to_response:
            raise UserError(f"no response for prompt (key {inp.key}): {inp.prompt[:120]!r}")
        pairs.append((inp, prompt_to_response[inp.prompt]))
    results = parallel_map(evaluate_row, pairs, workers=workers)

    def out(pair: tuple[IFEvalInput, str], follow: list[bool]) -> IFEvalOutput:
        return IFEvalOutput(list(pair[0].instruction_id_list), pair[0].prompt, pair[1], all(follow), follow)

    return (
        [out(p, s) for p, (s, _) in zip(pairs, results, strict=True)],
        [out(p, lo) for p, (_, lo) in zip(pairs, results, strict=True)],
    )


@dataclass(frozen=True)
class Accuracy:
    prompt_level: float
    instruction_level: float


def accuracy(outputs: Sequence[IFEvalOutput]) -> Accuracy:
    """Prompt-level and instruction-level accuracy, as the reference ``print_report`` computes them."""
    prompts = len(outputs)
    flat = [f for o in outputs for f in o.follow_instruction_list]
    return Accuracy(
        prompt_level=sum(o.follow_all_instructions for o in outputs) / prompts if prompts else 0.0,
        instruction_level=sum(flat) / len(flat) if flat else 0.0,
    )


def report(outputs: Sequence[IFEvalOutput]) -> str:
    """The reference report: headline accuracies, then per instruction group (tier 0) and id (tier 1)."""
    acc = accuracy(outputs)
    tier0: dict[str, list[bool]] = defaultdict(list)
    tier1: dict[str, list[bool]] = defaultdict(list)
    for o in outputs:
        for instruction_id, followed in zip(o.instruction_id_list, o.follow_instruction_list, strict=True):
            tier0[instruction_id.split(":")[0]].append(followed)
            tier1[instruction_id].append(followed)
    lines = [f"prompt-level: {acc.prompt_level}", f"instruction-level: {acc.instruction_level}"]
    lines += [f"{k} {sum(v) / len(v)}" for k, v in sorted(tier0.items())]
    lines += [f"{k} {sum(v) / len(v)}" for k, v in sorted(tier1.items())]
    return "\n".join(lines)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{n}: each line must be a JSON object")
            rows.append(row)
    return rows


def read_inputs(path: Path) -> list[IFEvalInput]:
    """Google's ``input_data.jsonl``: ``key, prompt, instruction_id_list, kwargs`` per line."""
    out = []
    for n, row in enumerate(_read_jsonl(path), 1):
        missing = [k for k in ("key", "prompt", "instruction_id_list", "kwargs") if k not in row]
        if missing:
            raise UserError(
                f"{path}: row {n} lacks {', '.join(missing)} "
                "(expected key, prompt, instruction_id_list, kwargs)"
            )
        if len(row["kwargs"]) != len(row["instruction_id_list"]):
            raise UserError(
                f"{path}: row {n} (key {row['key']}) has {len(row['instruction_id_list'])} "
                f"instruction ids but {len(row['kwargs'])} kwargs entries"
            )
        out.append(
            IFEvalInput(
                row["key"],
                row["prompt"],
                list(row["instruction_id_list"]),
                [dict(k or {}) for k in row["kwargs"]],
            )
        )
    return out


def read_responses(path: Path) -> dict[str, str]:
    """Google's responses file: ``prompt, response`` per line (later lines win, as in the reference)."""
    out: dict[str, str] = {}
    for n, row in enumerate(_read_jsonl(path), 1):
        if "prompt" not in row or "response" not in row:
            raise UserError(f"{path}: row {n} must have 'prompt' and 'response'")
        if not isinstance(row["response"], str):
            raise UserError(f"{path}: row {n}: 'response' must be a string")
        out[row["prompt"]] = row["response"]
    return out


def write_outputs(path: Path, outputs: Sequence[IFEvalOutput]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for o in outputs:
            fh.write(json.dumps(asdict(o), ensure_ascii=False) + "\n")
