"""``python -m herl_operator [options]``: run the operator.

Our own options are parsed here; everything else goes to ``kopf run`` unchanged. Defaults suit the
Helm chart: cluster-wide, liveness on :8081/healthz, metrics on :8080, JSON logs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="herl operator", add_help=True)
    parser.add_argument("--metrics-port", type=int, default=8080, help="operator /metrics port (0: off)")
    parser.add_argument("--resync-seconds", type=float, default=30.0, help="periodic reconcile interval")
    parser.add_argument(
        "--progress-seconds",
        type=float,
        default=30.0,
        help="least seconds between two scrapes of one trainer's /metrics",
    )
    parser.add_argument(
        "--submission-mode",
        choices=("K8sJobMode", "HTTPMode"),
        default="K8sJobMode",
        help="how KubeRay submits the trainer: a submitter pod (K8sJobMode) or a POST to the Ray dashboard "
        "(HTTPMode, no extra pod)",
    )
    parser.add_argument(
        "--progress-via",
        choices=("direct", "apiserver"),
        default="direct",
        help="read trainers' /metrics via the head Service's DNS name (in-cluster) or the apiserver's "
        "service proxy (an operator outside the cluster network; needs get on services/proxy)",
    )
    parser.add_argument("--server", default=None, help="API server URL (tests/dev; insecure)")
    ours, kopf_args = parser.parse_known_args(list(argv if argv is not None else sys.argv[1:]))

    import kopf
    from herl_operator.handlers import OperatorConfig, build_registry

    registry, _ = build_registry(
        OperatorConfig(
            server=ours.server,
            resync_seconds=ours.resync_seconds,
            progress_seconds=ours.progress_seconds,
            metrics_port=ours.metrics_port or None,
            submission_mode=ours.submission_mode,
            progress_via=ours.progress_via,
        )
    )
    kopf_parser = argparse.ArgumentParser(prog="kopf-options")
    kopf_parser.add_argument("--namespace", "-n", action="append", default=[])
    kopf_parser.add_argument("--all-namespaces", "-A", action="store_true")
    kopf_parser.add_argument("--liveness", default="http://0.0.0.0:8081/healthz")
    kopf_parser.add_argument("--log-format", default="json", choices=["plain", "full", "json"])
    kopf_parser.add_argument("--verbose", action="store_true")
    kopf_parser.add_argument("--debug", action="store_true")
    opts = kopf_parser.parse_args(kopf_args)
    kopf.configure(
        verbose=opts.verbose,
        debug=opts.debug,
        log_format=kopf.LogFormat[opts.log_format.upper()],
        log_refkey="object",
    )
    kopf.run(
        registry=registry,
        standalone=True,
        clusterwide=not opts.namespace,
        namespaces=opts.namespace or (),
        liveness_endpoint=opts.liveness or None,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
