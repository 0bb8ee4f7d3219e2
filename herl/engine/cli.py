"""``herl train FILE``: run a HeRLJob with the local engine (default) or submit it to a cluster.

Only argparse at import time: torch and transformers load when the command runs.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "train",
        help="train a HeRLJob on this machine (CPU or one GPU), or --submit it to Kubernetes",
        description="Run the SAME HeRLJob file end to end on this machine: generation, rewards, the hindsight "
        "stage, GRPO and the HeRL loss. Writes metrics.jsonl, checkpoints and reward_curve.png "
        "under --out.",
    )
    p.add_argument("file", help="HeRLJob YAML")
    p.add_argument("--steps", type=int, default=None, help="number of training steps (default: the spec's)")
    p.add_argument("--out", default=None, help="output directory (default: runs/<metadata.name>)")
    p.add_argument(
        "--resume",
        dest="resume",
        action="store_true",
        default=None,
        help="continue from the newest checkpoint in --out (default: spec.checkpoints.resume)",
    )
    p.add_argument("--no-resume", dest="resume", action="store_false", help="start from step 0")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="Prometheus /metrics port on 127.0.0.1 (default spec.metrics.port; 0 = any free port; -1 = off)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (one line per step instead)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--submit", action="store_true", help="submit to the cluster instead of training locally")
    p.add_argument("--namespace", default=None, help="namespace for --submit")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from herl.api.validate import load_job
    from herl.errors import UserError

    if args.submit:
        try:
            from herl_operator.submit import submit
        except ModuleNotFoundError as exc:
            raise UserError(f"--submit needs the operator package ({exc.name} is not installed)") from None
        result = submit(args.file, args.namespace)
        if result is not None:
            print(result)
        return 0
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be >= 1, got {args.steps}")
    job = load_job(args.file)
    from herl.engine.trainer import LocalTrainer

    out = args.out or f"runs/{job.metadata.name}"
    trainer = LocalTrainer(
        job,
        out,
        steps=args.steps,
        resume=args.resume,
        metrics_port=args.metrics_port,
        progress=not args.no_progress and sys.stderr.isatty(),
        device=args.device,
    )
    summary = trainer.run()
    last = summary.history[-1] if summary.history else {}
    state = "interrupted at" if summary.interrupted else "finished at"
    print(
        f"herl train: {state} step {summary.last_step}/{trainer.total_steps}"
        + (
            f"; reward mean {last.get('critic/score/mean', 0):.3f}, all met "
            f"{last.get('herl/all_met_rate', 0):.2f}"
            if last
            else ""
        )
    )
    if summary.history and trainer.settings.hindsight.enabled:
        from herl.engine.showcase import REPORT_FILE, report

        print(report(summary.out_dir, summary.history, summary.last_step), end="")
        print(
            f"  hindsight report: {summary.out_dir / REPORT_FILE} (every revision: hindsight_examples.jsonl)"
        )
    if summary.plot:
        print(f"  reward curve: {summary.plot}")
    print(f"  metrics log:  {summary.metrics_file}")
    if summary.metrics_url:
        print(f"  prometheus:   {summary.metrics_url} (while the run was alive)")
    if summary.checkpoint:
        print(f"  checkpoint:   {summary.checkpoint}")
    return 130 if summary.interrupted else 0
