"""``python -m herl.train --job FILE``: run a HeRLJob on the Ray head (what the RayJob entrypoint calls).

``spec.engine: local`` trains here, in this process, with the local engine (:mod:`herl.engine`): the
Ray head is the machine. Checkpoints go to ``HERL_CHECKPOINT_DIR`` (else a temporary folder) and a
retried attempt resumes from the newest one there; ``/metrics`` is served on ``spec.metrics.port`` on
all addresses (``HERL_METRICS_ADDR``), where the operator and Prometheus scrape the head.

``spec.engine: verl`` (the default) runs veRL 0.9.1: it reads the HeRLJob YAML (the operator mounts it at ``/etc/herl/job.yaml``), validates it with the
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
import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from herl.errors import UserError, failure_line

DEFAULT_JOB_FILE = "/etc/herl/job.yaml"
ENV_CHECKPOINT_DIR = "HERL_CHECKPOINT_DIR"
#: How long engine verl waits for the GPU workers' raylets to join the Ray cluster before it gives up.
ENV_GPU_WAIT = "HERL_GPU_WAIT_SECONDS"
DEFAULT_GPU_WAIT_SECONDS = 300.0
#: How long a finished trainer waits for the operator to read its final metrics.
ENV_FINAL_READ = "HERL_FINAL_METRICS_READ_SECONDS"
DEFAULT_FINAL_READ_SECONDS = 90.0
#: Engine local's log in the checkpoint folder (every attempt appends).
TRAIN_LOG = "train.log"


def load_job(path: str | Path) -> object:
    """Parse and validate a HeRLJob file (the same checks as ``herl validate``); raises UserError."""
    from herl.api.validate import load_job as _load

    return _load(path)


def build_argv(job: object, env: dict[str, str] | None = None) -> list[str]:
    """The full argv that starts veRL for ``job`` (interpreter first), honouring HERL_CHECKPOINT_DIR."""
    from herl.verl_plugin.overrides import job_to_verl_overrides

    # The launcher execs veRL's main: a missing veRL fails here, classified, not as a traceback after it.
    if importlib.util.find_spec("verl") is None:
        raise UserError(
            "spec.engine verl needs veRL, which this image does not have (verl is not installed): run "
            "engine verl on the GPU trainer image (ghcr.io/herl-dev/herl-trainer), or set spec.engine local",
            exit_code=3,
            reason="EngineNotInImage",
        )

    env = dict(os.environ) if env is None else env
    ckdir = env.get(ENV_CHECKPOINT_DIR) or None
    overrides = job_to_verl_overrides(job, checkpoint_dir=ckdir)  # type: ignore[arg-type]
    return [sys.executable, "-m", "herl.verl_plugin.launch", *overrides]


def final_read_timeout(env: dict[str, str] | None = None) -> float:
    """Seconds a finished trainer waits for the operator's last read of its metrics (both engines)."""
    env = dict(os.environ) if env is None else env
    return float(env.get(ENV_FINAL_READ) or DEFAULT_FINAL_READ_SECONDS)


def run_local(job: Any, env: dict[str, str] | None = None) -> int:
    """Engine local: train in this process (the Ray head), resuming from HERL_CHECKPOINT_DIR."""
    from herl.engine.trainer import LocalTrainer
    from herl.metrics.publisher import ENV_ADDR

    env = dict(os.environ) if env is None else env
    out = Path(env.get(ENV_CHECKPOINT_DIR) or Path(tempfile.gettempdir()) / "herl" / job.metadata.name)
    out.mkdir(parents=True, exist_ok=True)
    # The log also goes beside the checkpoints (TRAIN_LOG), appended by every attempt: the Ray job's own
    # log dies with its cluster, this one keeps each attempt's resume point and steps.
    with open(out / TRAIN_LOG, "a", encoding="utf-8") as log:

        def echo(line: str) -> None:
            print(line, flush=True)
            log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")
            log.flush()

        echo(f"herl.train: engine local, attempt started on {env.get('HOSTNAME', 'this host')}")
        trainer = LocalTrainer(
            job,
            out,
            metrics_addr=env.get(ENV_ADDR, "0.0.0.0"),
            progress=False,  # one line per step: the Ray job log is a file, not a terminal
            echo=echo,
        )
        summary = trainer.run()
        if trainer.publisher is not None:
            # KubeRay deletes the cluster as soon as this process ends: stay until the operator has
            # read the final step into status (bounded; see herl.metrics.endpoint).
            wait = final_read_timeout(env)
            if not trainer.publisher.wait_final_read(wait):
                echo(f"herl.train: the operator did not read the final metrics within {wait:g} s")
        state = "interrupted at" if summary.interrupted else "finished at"
        echo(f"herl.train: engine local {state} step {summary.last_step}/{trainer.total_steps} in {out}")
    return 130 if summary.interrupted else 0


def wait_for_gpus(needed: int, timeout: float, poll: float = 5.0) -> None:
    """Engine verl: wait until the Ray cluster this driver runs in has ``needed`` GPUs (the worker pods'
    raylets join after the head), else stop with a classified error instead of veRL's deep traceback."""
    import ray

    ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
    try:
        deadline = time.monotonic() + timeout
        while True:
            have = int(ray.cluster_resources().get("GPU", 0))
            if have >= needed:
                return
            if time.monotonic() >= deadline:
                raise UserError(
                    f"engine verl needs {needed} GPUs (spec.resources.workers × gpusPerWorker) but the Ray "
                    f"cluster has {have} after {timeout:g} s: the GPU worker pods did not join (pending, "
                    f"no GPU nodes, or no NVIDIA device plugin). For a CPU cluster use spec.engine local.",
                    exit_code=3,
                    reason="GPUsUnavailable",
                )
            print(f"herl.train: waiting for GPUs: {have}/{needed} in the Ray cluster", flush=True)
            time.sleep(poll)
    finally:
        ray.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m herl.train", description=__doc__.splitlines()[0])
    parser.add_argument("--job", default=DEFAULT_JOB_FILE, help=f"HeRLJob YAML (default {DEFAULT_JOB_FILE})")
    parser.add_argument("--dry-run", action="store_true", help="print the veRL overrides and exit")
    args = parser.parse_args(argv)
    try:
        job: Any = load_job(args.job)
        if job.spec.engine == "local":
            if args.dry_run:
                print("engine local: trains in this process with herl.engine (no veRL overrides)")
                return 0
            return run_local(job)
        full = build_argv(job)
        if not args.dry_run and os.environ.get("RAY_ADDRESS"):
            # Inside a Ray cluster (a Ray job's driver, KubeRay's head): its GPUs must be there. Outside
            # one, veRL starts its own local Ray and checks its own resources.
            wait = float(os.environ.get(ENV_GPU_WAIT) or DEFAULT_GPU_WAIT_SECONDS)
            wait_for_gpus(job.spec.gpu_count, wait)
    except UserError as exc:
        print(f"herl.train: {exc}", file=sys.stderr)
        print(failure_line(exc.reason, str(exc)), file=sys.stderr, flush=True)
        return exc.exit_code
    except (OSError, ValueError) as exc:
        print(f"herl.train: {exc}", file=sys.stderr)
        print(failure_line("InvalidJobFile", str(exc)), file=sys.stderr, flush=True)
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
