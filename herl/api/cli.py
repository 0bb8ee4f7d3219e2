"""``herl validate`` and ``herl generate``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _validate(args: argparse.Namespace) -> int:
    from herl.api.validate import validate_path

    bad = 0
    for name in args.files:
        job, findings = validate_path(Path(name))
        if job is None:
            bad += 1
            for finding in findings:
                print(finding, file=sys.stderr)
        elif not args.quiet:
            print(f"{name}: valid HeRLJob {job.metadata.name} (preset {job.spec.preset.value})")
    return 1 if bad else 0


def _generate(args: argparse.Namespace) -> int:
    from herl.generate import check_all, write_all

    if args.check:
        problems = check_all()
        for problem in problems:
            print(problem, file=sys.stderr)
        if not problems:
            print("generated files are in sync with their sources")
        return 1 if problems else 0
    for rel in write_all():
        print(f"wrote {rel}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check HeRLJob YAML files offline with the cluster's rules",
        description="Validate HeRLJob files with the same rules the cluster applies (schema, CEL rules) and "
        "ours. Exit 0 when all are valid; otherwise one line per problem: file, field, value, what is allowed.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("-q", "--quiet", action="store_true", help="print only problems")
    p.set_defaults(func=_validate)

    g = sub.add_parser("generate", help="write (or --check) every generated file: CRDs, docs, dashboards")
    g.add_argument("--check", action="store_true", help="fail when a checked-in file differs from its source")
    g.set_defaults(func=_generate)
