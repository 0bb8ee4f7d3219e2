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


def _kube_args(p: argparse.ArgumentParser) -> None:
    """kubectl's conventions: KUBECONFIG (or ~/.kube/config), --kubeconfig, --context, -n."""
    p.add_argument("--namespace", "-n", default=None, help="namespace (default: the context's, else default)")
    p.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")
    p.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)"
    )


def _cmd_status(args: argparse.Namespace) -> int:
    import json

    from herl_operator import jobview
    from herl_operator.userclient import get_herljob, list_herljobs, load_client

    uc = load_client(args.context, args.kubeconfig)
    ns = args.namespace or uc.namespace
    if args.name:
        if args.all_namespaces:
            raise UserError("NAME and --all-namespaces do not go together: give -n NAMESPACE for one job")
        job = get_herljob(uc, ns, args.name)
        print(json.dumps(job.get("status") or {}, indent=2) if args.output == "json" else jobview.detail(job))
        return 0
    jobs = list_herljobs(uc, None if args.all_namespaces else ns)
    if args.output == "json":
        print(
            json.dumps([{"metadata": j["metadata"], "status": j.get("status") or {}} for j in jobs], indent=2)
        )
    elif not jobs:
        where = "any namespace" if args.all_namespaces else f"namespace {ns}"
        print(f"No HeRLJobs in {where}.", file=sys.stderr)
    else:
        print(jobview.table(jobs, with_namespace=args.all_namespaces))
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    from herl_operator.joblogs import stream_logs
    from herl_operator.userclient import load_client

    uc = load_client(args.context, args.kubeconfig)
    for chunk in stream_logs(uc, args.namespace or uc.namespace, args.name, follow=args.follow):
        sys.stdout.write(chunk)
        sys.stdout.flush()
    return 0


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
    st = subparsers.add_parser(
        "status",
        help="HeRLJobs on the cluster: one line each, or the details of NAME",
        description="Phase, step/total, reward, hindsight success, attempts, GPU-hours and checkpoint of "
        "each HeRLJob (from its status), or everything about one: conditions and attempts too. "
        "Exit codes: 0 shown, 1 not found / forbidden / unreachable, 2 bad arguments or no credentials.",
    )
    st.add_argument("name", nargs="?", help="one HeRLJob (default: list them)")
    st.add_argument("--all-namespaces", "-A", action="store_true", help="list HeRLJobs of every namespace")
    st.add_argument("--output", "-o", choices=["text", "json"], default="text", help="text (default) or json")
    _kube_args(st)
    st.set_defaults(func=_cmd_status)
    lg = subparsers.add_parser(
        "logs",
        help="the trainer's log of a HeRLJob's current attempt",
        description="The log of the Ray job KubeRay runs for the current attempt: from the Ray dashboard "
        "through the apiserver's service proxy, else the Ray head pod's log. "
        "Exit codes: 0 log shown, 3 the job has not started (no log yet), 1 not found or no log, "
        "2 bad arguments or no credentials.",
    )
    lg.add_argument("name", help="the HeRLJob")
    lg.add_argument("--follow", "-f", action="store_true", help="stream the log until the Ray job ends")
    _kube_args(lg)
    lg.set_defaults(func=_cmd_logs)


__all__ = ["UserError", "register", "render"]
