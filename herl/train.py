"""``python -m herl.train --job FILE``: run a HeRLJob on veRL 0.9.1 (what the RayJob entrypoint calls).

Reads the HeRLJob YAML (the operator mounts it at ``/etc/herl/job.yaml``), validates it with the
``herl.api`` model, translates it into veRL Hydra overrides with the pure
:func:`herl.verl_plugin.overrides.job_to_verl_overrides`, and replaces this process with
``python -m herl.verl_plugin.launch <overrides...>`` (veRL's PPO main with the TaskRunner pinned to the
Ray head, where the metrics port is) via ``os.execv``: every override is one argv
element, no shell ever parses them, and signals (preemption, SIGTERM from KubeRay) reach veRL
directly. ``--dry-run`` prints the overrides, one per line, and exits.

Checkpoint directory: ``HERL_CHECKPOINT_DIR`` (set by the operator: the PVC mount or the local
staging dir of an object-store URI), else one derived from the spec. Resume is veRL's
``trainer.resume_mode`` (``auto`` by default), so a retried attempt continues from the newest
checkpoint there.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from herl.errors import UserError

DEFAULT_JOB_FILE = "/etc/herl/job.yaml"
ENV_CHECKPOINT_DIR = "HERL_CHECKPOINT_DIR"


def load_job(path: str | Path) -> object:
    """Parse and validate a HeRLJob file (the same checks as ``herl validate``); raises UserError."""
    from herl.api.validate import load_job as _load

    return _load(path)


def build_argv(job: object, env: dict[str, str] | None = None) -> list[str]:
    """The full argv that starts veRL for ``job`` (interpreter first), honouring HERL_CHECKPOINT_DIR."""
    from herl.verl_plugin.overrides import job_to_verl_overrides

    env = dict(os.environ) if env is None else env
    ckdir = env.get(ENV_CHECKPOINT_DIR) or None
    overrides = job_to_verl_overrides(job, checkpoint_dir=ckdir)  # type: ignore[arg-type]
    return [sys.executable, "-m", "herl.verl_plugin.launch", *overrides]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m herl.train", description=__doc__.splitlines()[0])
    parser.add_argument("--job", default=DEFAULT_JOB_FILE, help=f"HeRLJob YAML (default {DEFAULT_JOB_FILE})")
    parser.add_argument("--dry-run", action="store_true", help="print the veRL overrides and exit")
    args = parser.parse_args(argv)
    try:
        job = load_job(args.job)
        full = build_argv(job)
    except (OSError, ValueError, UserError) as exc:
        print(f"herl.train: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        for item in full[3:]:
            print(item)
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(full[0], full)
    return 0  # pragma: no cover - execv does not return


if __name__ == "__main__":
    raise SystemExit(main())
