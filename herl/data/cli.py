"""``herl data convert``: HIR-16K / RaR-Medicine files -> veRL parquet (imports pyarrow only when run)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    data = subparsers.add_parser(
        "data", help="prepare training data (convert source datasets to veRL parquet)"
    )
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    conv = data_sub.add_parser(
        "convert",
        help="convert HIR-16K or RaR-Medicine to veRL parquet",
        description="Convert a source dataset to veRL parquet rows (prompt, data_source, reward_model, "
        "extra_info). Bad records are skipped and counted by reason with the first examples shown; "
        "--strict fails instead. Unsupported records (HIR-16K checker+functions) are always reported.",
    )
    conv.add_argument(
        "--from", dest="source", required=True, choices=["hir16k", "rar-medicine"], help="source format"
    )
    conv.add_argument("input", help="input file: .jsonl, .json (array) or .parquet")
    conv.add_argument("--out", required=True, help="output parquet path")
    conv.add_argument("--strict", action="store_true", help="fail (write nothing) on any malformed record")
    conv.add_argument("--report", help="also write the conversion report as JSON here")
    conv.set_defaults(func=_run_convert)
    data.set_defaults(func=lambda args: (data.print_help(), 2)[1])


def _run_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from herl.data.convert import convert, convert_records, report_json

    try:
        report = convert(args.source, Path(args.input), Path(args.out), strict=args.strict)
    except Exception:
        if args.strict:  # show the full breakdown before the one-line error
            try:
                _, rep = convert_records(args.source, Path(args.input))
                print(rep.format(), file=sys.stderr)
            except Exception:
                pass
        raise
    print(report.format())
    print(f"  output: {args.out}")
    if args.report:
        Path(args.report).write_text(report_json(report) + "\n", encoding="utf-8")
    return 0
