"""``herl reward ...``: offline evaluation of responses with the instruction-following checkers.

Imports nothing heavy at top level (``herl --help`` must stay fast): the checkers load when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("reward", help="score responses with the IF checkers (IFEval evaluation)")
    sub = parser.add_subparsers(dest="reward_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    ifeval = sub.add_parser(
        "ifeval",
        help="IFEval strict and loose accuracy, like Google's evaluation_main",
        description="Evaluate responses on IFEval: writes eval_results_strict.jsonl and eval_results_loose.jsonl "
        "into --out and prints prompt-level and instruction-level accuracy, strict and loose.",
    )
    ifeval.add_argument(
        "--input-data",
        required=True,
        type=Path,
        help="input_data.jsonl (key, prompt, instruction_id_list, kwargs)",
    )
    ifeval.add_argument("--responses", required=True, type=Path, help="responses.jsonl (prompt, response)")
    ifeval.add_argument("--out", required=True, type=Path, help="output directory")
    ifeval.add_argument("--workers", type=int, default=0, help="worker processes (0 = one per core)")
    ifeval.set_defaults(func=_run_ifeval)


def _run_ifeval(args: argparse.Namespace) -> int:
    from herl.errors import UserError
    from herl.rewards import ifeval_eval

    inputs = ifeval_eval.read_inputs(args.input_data)
    responses = ifeval_eval.read_responses(args.responses)
    strict, loose = ifeval_eval.evaluate(inputs, responses, workers=args.workers)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {args.out}: cannot create directory ({exc.strerror})") from None
    for name, outputs in (("eval_results_strict.jsonl", strict), ("eval_results_loose.jsonl", loose)):
        path = args.out / name
        ifeval_eval.write_outputs(path, outputs)
        print("=" * 64)
        print(f"{path} Accuracy Scores:")
        print(ifeval_eval.report(outputs))
    s, lo = ifeval_eval.accuracy(strict), ifeval_eval.accuracy(loose)
    print("=" * 64)
    print(f"prompt-level strict: {s.prompt_level:.4f}  instruction-level strict: {s.instruction_level:.4f}")
    print(f"prompt-level loose:  {lo.prompt_level:.4f}  instruction-level loose:  {lo.instruction_level:.4f}")
    return 0
