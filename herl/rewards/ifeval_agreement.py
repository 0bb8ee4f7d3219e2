"""Agreement of our IFEval/IFBench verdicts with the reference implementations, on every bundled prompt.

Used by ``bench/reward_bench.py`` (which also times both sides) and by
``tests/rewards/test_ifeval_agreement.py`` (which requires agreement on all 541 IFEval prompts and the
300 IFBench ones). No model outputs ship with the data, so each response is derived from its prompt by
one of six deterministic rules (:func:`synthetic_response`) that meet some constraints and miss others.

The IFEval reference is lm-eval 0.4.13's ``lm_eval/tasks/ifeval/utils.py`` (its copy of Google's
``evaluation_lib``), ``test_instruction_following_strict`` then ``_loose``, row after row. The IFBench
reference is if-verifiable's own ``evaluate_instructions``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from herl import assets
from herl.rewards import checkers, ifeval_eval
from herl.rewards.instruction_following import score_if

Verdicts = list[list[bool]]


def synthetic_response(key: int, prompt: str) -> str:
    """A deterministic stand-in for a model answer, derived from the prompt by rule ``key % 6``."""
    words = prompt.replace("\n", " ").split()
    body = " ".join(words[:120])
    rule = key % 6
    if rule == 0:
        return body
    if rule == 1:
        return body.lower().replace(",", "")
    if rule == 2:
        return f"<<{' '.join(words[:3])}>>\n\n{body}\n\n***\n\n{body[::-1]}\n\nP.S. thanks for reading"
    if rule == 3:
        return "**Here is my answer:**\n" + body.upper() + "\nIs there anything else I can help with?"
    if rule == 4:
        return json.dumps({"answer": body, "key": key})
    bullets = "\n".join(f"* {w}" for w in words[:5])
    return f'"{body}\n\n{bullets}\n\nSECTION 1\n*highlighted part*, [address]"'


def ifeval_rows() -> list[ifeval_eval.IFEvalInput]:
    """The 541 bundled IFEval prompts (fetched by ``python -m herl.assets fetch eval-data``)."""
    return ifeval_eval.read_inputs(assets.eval_data_dir() / "ifeval" / "input_data.jsonl")


def synthetic_responses(rows: Sequence[ifeval_eval.IFEvalInput]) -> dict[str, str]:
    return {r.prompt: synthetic_response(int(r.key), r.prompt) for r in rows}


def reference_module() -> Any:
    """lm-eval's ``lm_eval.tasks.ifeval.utils``, imported without lm-eval's task registry."""
    return checkers.import_isolated(checkers.IFEVAL_PARENT, "lm_eval.tasks.ifeval.utils")


def reference_eval(
    utils: Any, rows: Sequence[ifeval_eval.IFEvalInput], responses: dict[str, str]
) -> tuple[Verdicts, Verdicts]:
    """The reference's strict and loose verdicts, serially, the way Google's ``evaluation_main`` runs."""
    strict, loose = [], []
    for row in rows:
        inp = utils.InputExample(
            key=row.key, instruction_id_list=row.instruction_id_list, prompt=row.prompt, kwargs=row.kwargs
        )
        strict.append(
            utils.test_instruction_following_strict(inp, responses[row.prompt]).follow_instruction_list
        )
        loose.append(
            utils.test_instruction_following_loose(inp, responses[row.prompt]).follow_instruction_list
        )
    return strict, loose


def nondeterministic_constraints(rows: Sequence[ifeval_eval.IFEvalInput]) -> set[tuple[int, int]]:
    """(row, constraint) positions whose upstream checker draws an argument at random.

    Built twice under different seeds: if the resolved arguments differ, the reference's verdict is itself
    random (e.g. ``keywords:letter_frequency`` with letter "#"), so no implementation can agree with it
    reliably; ours seeds such draws from the constraint, the reference uses the global ``random`` state.
    """
    registry = checkers.ifeval_registry()
    out = set()
    state = random.getstate()  # the probe reseeds the global generator: leave it as it was
    try:
        for i, row in enumerate(rows):
            for j, (iid, kw) in enumerate(zip(row.instruction_id_list, row.kwargs, strict=True)):
                args = []
                for seed in (1, 2):
                    random.seed(seed)
                    checker = registry[iid](iid)
                    checker.build_description(**{k: v for k, v in kw.items() if v is not None})
                    args.append(checker.get_instruction_args())
                if args[0] != args[1]:
                    out.add((i, j))
    finally:
        random.setstate(state)
    return out


@dataclass(frozen=True)
class Disagreement:
    """Verdicts that differ: ``deterministic`` must be 0; ``random`` are positions where the reference
    itself is random (see :func:`nondeterministic_constraints`)."""

    deterministic: int
    random: int
    compared: int


def disagreements(mine: Verdicts, ref: Verdicts, random_pos: set[tuple[int, int]]) -> Disagreement:
    det = rnd = compared = 0
    for i, (a, b) in enumerate(zip(mine, ref, strict=True)):
        for j, (x, y) in enumerate(zip(a, b, strict=True)):
            compared += 1
            if x != y:
                if (i, j) in random_pos:
                    rnd += 1
                else:
                    det += 1
    return Disagreement(det, rnd, compared)


def follow_lists(outputs: Sequence[ifeval_eval.IFEvalOutput]) -> Verdicts:
    return [o.follow_instruction_list for o in outputs]


def ifbench_agreement() -> dict[str, int]:
    """Our IFBench verdicts vs if-verifiable's own ``evaluate_instructions`` (strict), untimed.

    ``words:start_verb`` is skipped: the reference raises LookupError without NLTK's POS tagger, we
    report it as unsupported (``followed=None``).
    """
    common = checkers.import_isolated(checkers.IFBENCH_PARENT, "if_verifiable.common")
    registry = checkers.ifbench_registry()
    path = assets.eval_data_dir() / "ifbench" / "IFBench_test.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    compared = mismatched = skipped = 0
    for i, row in enumerate(rows):
        response = synthetic_response(i, row["prompt"])
        truth = {"instruction_id_list": row["instruction_id_list"], "kwargs": row["kwargs"]}
        ours = score_if(response, truth, "ifbench", prompt=row["prompt"])
        if "words:start_verb" in row["instruction_id_list"]:
            skipped += 1
            continue
        ref, _ = common.evaluate_instructions(
            response, row["instruction_id_list"], row["kwargs"], row["prompt"], registry
        )
        for verdict, expected in zip(ours.constraints, ref, strict=True):
            compared += 1
            mismatched += verdict.followed != expected.strict_pass
    return {
        "ifbench_prompts": len(rows),
        "ifbench_verdicts_compared": compared,
        "ifbench_mismatched_verdicts": mismatched,
        "ifbench_prompts_skipped_start_verb": skipped,
    }
