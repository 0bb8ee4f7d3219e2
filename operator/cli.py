"""``herl operator`` (run the operator) and ``herl render FILE`` (print what it would create).

kopf is imported only inside the ``operator`` command, so ``herl --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from herl.errors import UserError


def render(path: str, namespace: str | None = None) -> str:
    """The ConfigMap + RayJob YAML the operator would create for the HeRLJob in ``path``."""
    from herl_operator import builders as b

    from herl.api.validate import load_documents, load_job

    job = load_job(path)
    from pathlib import Path

    docs, _ = load_documents(Path(path))
    ns = namespace or job.metadata.namespace or "default"
    ctx = b.Context(namespace=ns, uid=None)
    objs = [b.build_configmap(job, ctx, docs[0].get("spec")), b.build_rayjob(job, ctx)]
    header = (
        "# Rendered by `herl render` (what the operator creates; the operator also adds an\n"
        "# ownerReference to the HeRLJob's uid and the herl.dev/spec-digest annotation).\n"
    )
    return header + yaml.safe_dump_all(objs, sort_keys=False, allow_unicode=True)


def _cmd_render(args: argparse.Namespace) -> int:
    sys.stdout.write(render(args.file, args.namespace))
    return 0


def _cmd_operator(args: argparse.Namespace) -> int:
    from herl_operator.__main__ import main

    return main(args.kopf_args)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "operator",
        help="run the HeRLJob operator (kopf options pass through)",
        description="Run the HeRLJob → KubeRay operator. Options: --metrics-port, "
        "--resync-seconds, --progress-seconds, plus any `kopf run` option "
        "(e.g. --namespace, --all-namespaces, --liveness).",
    )
    p.add_argument("kopf_args", nargs=argparse.REMAINDER, help="operator/kopf options")
    p.set_defaults(func=_cmd_operator)
    r = subparsers.add_parser(
        "render",
        help="print the RayJob + ConfigMap the operator would create",
        description="Validate FILE and print exactly what the operator would create (for review and GitOps).",
    )
    r.add_argument("file")
    r.add_argument("--namespace", "-n", default=None, help="namespace (default: the file's, else default)")
    r.set_defaults(func=_cmd_render)


__all__ = ["UserError", "register", "render"]
