"""The ``herl`` command line.

Each area owns its sub-commands in a small module with a ``register(subparsers)`` function, listed in
``COMMAND_MODULES``. Those modules import nothing heavy at top level (torch, verl, kopf load only
when their command runs), so ``herl --help`` and ``herl validate`` stay fast.

Every command handler returns an exit code. Expected errors (bad files, bad specs, missing assets)
are raised as :class:`herl.errors.UserError` and printed as one clear line, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from herl import __version__
from herl.errors import UserError

COMMAND_MODULES: tuple[str, ...] = (
    "herl.api.cli",  # validate, generate
    "herl.engine.cli",  # train
    "herl.rewards.cli",  # reward
    "herl.data.cli",  # data
    "herl.evaluation.cli",  # eval
    "herl_operator.cli",  # operator, render
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="herl",
        description="HeRL: hindsight-experience RL for LLMs, on Kubernetes (KubeRay) or on one machine.",
    )
    parser.add_argument("--version", action="version", version=f"herl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # An area whose optional extra is not installed (e.g. the operator image has no torch).
            if exc.name and (exc.name == name or name.startswith(exc.name + ".")):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"herl {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"herl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
