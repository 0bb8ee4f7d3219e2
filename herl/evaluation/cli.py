"""``herl eval``: IFEval / IFBench / MulDimIF with the HiR protocol, optional test-time self-revision.

Heavy imports (torch, transformers, vllm, the checkers) happen only when the command runs.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model on IFEval / IFBench / MulDimIF (HiR protocol)",
        description="Generate one answer per prompt (chat template, T=0.6, max tokens 4096 / 3000 for MulDimIF), "
        "score it with the IF checkers (prompt- and instruction-level, strict and loose) and write "
        "results.jsonl + summary.json. --revise N re-asks failing prompts with the hindsight prompt.",
    )
    p.add_argument("--bench", required=True, choices=["ifeval", "ifbench", "muldimif"])
    p.add_argument("--model", required=True, help="model directory or hub id loadable offline")
    p.add_argument(
        "--data", help="prompt file (jsonl or veRL parquet); default: the bundled IFEval/IFBench file"
    )
    p.add_argument("--out", default="eval-out", help="output directory (default: eval-out)")
    p.add_argument("--limit", type=int, help="only the first N prompts")
    p.add_argument("--backend", default="auto", choices=["auto", "transformers", "vllm"])
    p.add_argument("--temperature", type=float, default=None, help="default 0.6")
    p.add_argument("--top-p", type=float, default=None, help="default 1.0")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default 4096 (MulDimIF 3000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8, help="transformers backend batch size")
    p.add_argument("--revise", type=int, default=0, metavar="N", help="self-revision rounds (default 0)")
    p.add_argument(
        "--revise-accept",
        default="better",
        choices=["better", "always"],
        help="keep a revision only if it scores higher (default) or always",
    )
    p.add_argument("--workers", type=int, default=0, help="scoring processes (0 = all cores)")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar per generation round (prompts, tok/s, ETA)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from herl.errors import UserError
    from herl.evaluation.benchmarks import (
        DEFAULT_MAX_NEW_TOKENS,
        DEFAULT_TEMPERATURE,
        DEFAULT_TOP_P,
        load_benchmark,
    )
    from herl.evaluation.generator import load_generator
    from herl.evaluation.runner import EvalSettings, format_summary, run_eval, write_outputs

    if args.revise < 0 or (args.limit is not None and args.limit < 1):
        raise UserError("--revise must be >= 0 and --limit >= 1")
    records = load_benchmark(args.bench, args.data, args.limit)
    settings = EvalSettings(
        temperature=DEFAULT_TEMPERATURE if args.temperature is None else args.temperature,
        top_p=DEFAULT_TOP_P if args.top_p is None else args.top_p,
        max_new_tokens=args.max_new_tokens or DEFAULT_MAX_NEW_TOKENS[args.bench],
        seed=args.seed,
        revise=args.revise,
        accept=args.revise_accept,
        workers=args.workers,
        progress=not args.no_progress,
    )
    generator = load_generator(args.model, args.backend, batch_size=args.batch_size)
    run = run_eval(args.bench, records, generator, settings, model=args.model)
    results, summary = write_outputs(Path(args.out), run)
    print(format_summary(run.summary))
    print(f"  wrote {results} and {summary}")
    return 0
