"""Step metrics of the local engine: the veRL-style step dict, the metrics file, Prometheus, the log line.

Both engines produce the same flat step dict (``critic/score/mean``, ``actor/*``, ``herl/*``,
``timing_s/*`` ...), so :mod:`herl.metrics` exports either one the same way.

Mixed into :class:`herl.engine.trainer.LocalTrainer`, which owns the state named in
:class:`MetricsMixin`'s annotations.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from herl.core import TokenRow
from herl.engine.settings import EngineSettings
from herl.metrics.keys import CHECKPOINT_STEP, REWARD_ERRORS
from herl.rewards.types import RewardResult

METRICS_FILE = "metrics.jsonl"


def step_line(m: dict[str, Any], total: int) -> str:
    """One log line per step (when there is no progress bar)."""
    return (
        f"step {m['training/global_step']}/{total}: reward {m['critic/score/mean']:.3f}, all met "
        f"{m['herl/all_met_rate']:.2f}, hindsight success {m.get('herl/success_rate', 0.0):.2f}, "
        f"reward errors {m.get(REWARD_ERRORS, 0.0):.0f}, "
        f"{m['perf/throughput']:.0f} tok/s, {m['timing_s/step']:.1f} s"
    )


class MetricsMixin:
    """The step dict, the metrics file and the Prometheus publisher of the local engine."""

    settings: EngineSettings
    job: Any
    name: str
    out: Path
    step: int
    cursor: int
    records: list[dict[str, Any]]
    total_steps: int
    eos_ids: set[int]
    metrics_port: int | None
    metrics_addr: str
    publisher: Any
    progress: bool
    history: list[dict[str, Any]]
    _bar: Any
    echo: Callable[[str], None]

    def _step_metrics(
        self,
        step: int,
        originals: list[TokenRow],
        rows: list[TokenRow],
        stage: dict[str, float],
        upd: dict[str, float],
        entropies: list[torch.Tensor],
        timing: dict[str, float],
    ) -> dict[str, Any]:
        s = self.settings
        scores = np.array([r.result.score for r in originals], dtype=np.float64)
        lens = np.array([len(r.response_ids) for r in originals], dtype=np.float64)
        clipped = [
            len(r.response_ids) >= s.max_response_length and r.response_ids[-1] not in self.eos_ids
            for r in originals
        ]
        train_scores = np.array([r.reward for r in rows], dtype=np.float64)
        ent_tok = torch.cat(entropies) if entropies else torch.zeros(1)
        total_tokens = float(sum(len(r.prompt_ids) + len(r.response_ids) for r in rows))
        m: dict[str, Any] = {
            "training/global_step": step,
            "training/epoch": (self.cursor - 1) // max(1, len(self.records)),
            "training/total_steps": self.total_steps,
            "critic/score/mean": float(scores.mean()),
            "critic/score/max": float(scores.max()),
            "critic/score/min": float(scores.min()),
            "critic/score/std": float(scores.std(ddof=1)) if len(scores) > 1 else 0.0,
            "critic/train_score/mean": float(train_scores.mean()),
            "herl/all_met_rate": float(np.mean([r.result.all_met for r in originals])),
            "response_length/mean": float(lens.mean()),
            "response_length/max": float(lens.max()),
            "response_length/clip_ratio": float(np.mean(clipped)),
            "actor/entropy": float(ent_tok.mean()) if ent_tok.numel() else 0.0,
            "herl/he_rows": float(sum(r.he for r in rows)),
            "actor/he_frac": float(
                sum(len(r.response_ids) for r in rows if r.he)
                / max(1, sum(len(r.response_ids) for r in rows))
            ),
            "perf/total_num_tokens": total_tokens,
            "perf/throughput": total_tokens / max(timing["step"], 1e-9),
            "perf/gen_tokens_per_s": float(lens.sum()) / max(timing["gen"], 1e-9),
        }
        by_source: dict[str, list[RewardResult]] = {}
        for r in originals:
            by_source.setdefault(r.result.data_source or "unknown", []).append(r.result)
        for src, res in by_source.items():
            m[f"herl/reward/{src}/mean"] = float(np.mean([x.score for x in res]))
            m[f"herl/reward/{src}/all_met_rate"] = float(np.mean([x.all_met for x in res]))
        m.update(stage)
        m.update(upd)
        for k, v in timing.items():
            m[f"timing_s/{k}"] = float(v)
        return m

    def _start_metrics(self) -> str | None:
        if self.metrics_port is None:
            return None
        from herl.metrics.publisher import StepMetricsPublisher, set_default_publisher

        # The same labels a cluster run gets, so dashboards and the operator's progress puller match.
        namespace = self.job.metadata.namespace or "local"
        self.publisher = StepMetricsPublisher(herl_job=self.name, namespace=namespace)
        set_default_publisher(self.publisher)
        try:
            port = self.publisher.serve(self.metrics_port, self.metrics_addr)
        except OSError as exc:
            self.echo(f"herl train: metrics port {self.metrics_port} unavailable ({exc}); using a free port")
            port = self.publisher.serve(0, self.metrics_addr)
        host = "127.0.0.1" if self.metrics_addr in ("0.0.0.0", "::") else self.metrics_addr
        return f"http://{host}:{port}/metrics"

    def _rewrite_metrics_file(self) -> Path:
        path = self.out / METRICS_FILE
        keep = []
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if int(rec.get("training/global_step", 0)) <= self.step:
                    keep.append(line)
        path.write_text("".join(x + "\n" for x in keep))
        return path

    def _open_progress_bar(self) -> None:
        """The tqdm bar on stderr (disabled with ``progress=False``: one log line per step instead)."""
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc=self.name,
            unit="step",
            disable=not self.progress,
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def _record_step(self, metrics: dict[str, Any], step: int, metrics_file: TextIO) -> None:
        """One finished step: history (numbers only, kept in checkpoints), the metrics file, Prometheus,
        and the progress bar (or one log line when the bar is off)."""
        self.history.append({k: v for k, v in metrics.items() if isinstance(v, int | float)})
        metrics_file.write(json.dumps(metrics, sort_keys=True) + "\n")
        metrics_file.flush()
        if self.publisher is not None:
            self.publisher.publish(metrics, step)
        self._bar.set_postfix(
            reward=f"{metrics['critic/score/mean']:.3f}",
            all_met=f"{metrics['herl/all_met_rate']:.2f}",
            he_succ=f"{metrics.get('herl/success_rate', 0.0):.2f}",
            errors=f"{metrics.get(REWARD_ERRORS, 0.0):.0f}",
            tok_s=f"{metrics['perf/throughput']:.0f}",
            refresh=False,
        )
        self._bar.update(1)
        if not self.progress:
            self.echo(step_line(metrics, self.total_steps))

    def _publish_history(self) -> None:
        """A resumed run republishes its saved steps, so Prometheus shows the whole run."""
        if self.publisher is not None:
            for h in self.history:
                self.publisher.publish(h, int(h["training/global_step"]))

    def _publish_checkpoint(self, step: int) -> None:
        if self.publisher is not None:  # the operator's CheckpointAvailable condition reads this
            self.publisher.publish({CHECKPOINT_STEP: step}, step)
