"""Alert rules for HeRL, generated into a PrometheusRule and a plain rules file from one source.

Why two outputs: the prometheus-operator loads the ``PrometheusRule`` object
(``manifests/alerts/herl-rules.yaml``), while ``promtool check rules`` / ``promtool test rules`` and a
plain Prometheus need the bare ``groups:`` file (``manifests/alerts/herl-rules.rules.yaml``). Both are
rendered here so they cannot disagree; a test fails when the checked-in files drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: Steps without a new best step-mean reward before HeRLRewardStalled fires.
REWARD_STALL_STEPS = 50
#: Judge error ratio (errors / calls over 10 min) that HeRLJudgeErrorRateHigh tolerates.
JUDGE_ERROR_RATIO = 0.1
#: Seconds without a new step (trainer alive, loop stuck) before HeRLTrainingStuck fires.
STEP_STALE_SECONDS = 1800

BY_JOB = "namespace, herl_job"


@dataclass(frozen=True)
class Alert:
    """One alerting rule; ``expr`` must return one series per affected job when it fires."""

    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    labels: dict[str, str] = field(default_factory=dict)

    def rule(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity, **self.labels},
            "annotations": {"summary": self.summary, "description": self.description},
        }


TRAINER_ALERTS: tuple[Alert, ...] = (
    Alert(
        "HeRLJobNoMetrics",
        f'max by ({BY_JOB}) (herl_operator_job_phase{{phase="Running"}} == 1) '
        f"unless on ({BY_JOB}) max by ({BY_JOB}) (herl_training_step)",
        "15m",
        "warning",
        "HeRLJob {{ $labels.namespace }}/{{ $labels.herl_job }} is Running but exports no trainer metrics",
        "The operator reports the job Running for 15 minutes, yet Prometheus has no herl_training_step for "
        "it. Check that the trainer runs on the Ray head (metrics port herl-metrics) and the PodMonitor.",
    ),
    Alert(
        "HeRLTrainingStuck",
        f"time() - max by ({BY_JOB}) (herl_training_last_step_timestamp_seconds) > {STEP_STALE_SECONDS}",
        "5m",
        "warning",
        "HeRLJob {{ $labels.namespace }}/{{ $labels.herl_job }} has not finished a step for "
        f"{STEP_STALE_SECONDS // 60} minutes",
        "The trainer still exports metrics but its last step is {{ $value | humanizeDuration }} old: a "
        "hung rollout, judge or NCCL collective.",
    ),
    Alert(
        "HeRLRewardStalled",
        f"max by ({BY_JOB}) (herl_training_step - herl_reward_best_step) >= {REWARD_STALL_STEPS}",
        "5m",
        "info",
        "HeRLJob {{ $labels.namespace }}/{{ $labels.herl_job }}: no reward improvement for "
        "{{ $value }} steps",
        f"The step-mean reward has not beaten its best for at least {REWARD_STALL_STEPS} steps. Look at "
        "entropy (collapse?), the hindsight success rate and the all-met rate.",
    ),
    Alert(
        "HeRLJudgeErrorRateHigh",
        f"sum by ({BY_JOB}) (rate(herl_judge_errors_total[10m])) / "
        f"sum by ({BY_JOB}) (rate(herl_judge_calls_total[10m])) > {JUDGE_ERROR_RATIO}",
        "10m",
        "warning",
        "HeRLJob {{ $labels.namespace }}/{{ $labels.herl_job }}: {{ $value | humanizePercentage }} "
        "of judge calls fail",
        "Rubric judge calls fail (see herl_judge_errors_total by reason); failed calls score 0 and bias "
        "the reward.",
    ),
)

OPERATOR_ALERTS: tuple[Alert, ...] = (
    Alert(
        "HeRLJobFailed",
        'sum(herl_operator_jobs{phase="Failed"}) > 0',
        "0m",
        "warning",
        "{{ $value }} HeRLJob(s) in phase Failed",
        "At least one HeRLJob failed after its retries. `kubectl get herljobs -A` and the job's "
        "status.conditions / status.attempts say why.",
    ),
    Alert(
        "HeRLOperatorReconcileErrors",
        'sum(rate(herl_operator_reconcile_total{result="error"}[5m])) > 0',
        "15m",
        "warning",
        "The HeRL operator keeps failing reconciles",
        "Reconcile errors for 15 minutes ({{ $value | humanize }}/s). Check the operator logs and its RBAC.",
    ),
)

ALL_ALERTS: tuple[Alert, ...] = TRAINER_ALERTS + OPERATOR_ALERTS


def rule_groups() -> list[dict[str, Any]]:
    """The ``groups:`` list shared by both outputs."""
    return [
        {"name": "herl-trainer", "rules": [a.rule() for a in TRAINER_ALERTS]},
        {"name": "herl-operator", "rules": [a.rule() for a in OPERATOR_ALERTS]},
    ]


def rules_file() -> dict[str, Any]:
    """Plain Prometheus rules file (promtool, a bare Prometheus)."""
    return {"groups": rule_groups()}


def prometheus_rule(name: str = "herl-rules") -> dict[str, Any]:
    """The prometheus-operator ``PrometheusRule``. Add your Prometheus's ``ruleSelector`` label (often
    ``release: <helm release>``) when applying; the herl chart does this from its values."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": name,
            "labels": {
                "app.kubernetes.io/name": "herl",
                "app.kubernetes.io/component": "alerts",
                "app.kubernetes.io/part-of": "herl",
            },
        },
        "spec": {"groups": rule_groups()},
    }


HEADER = "# Generated by herl.metrics.alerts (herl generate); do not edit by hand.\n"


def _dump(obj: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(obj, sort_keys=False, width=110, allow_unicode=True)


def write_alerts(directory: str | Path = "manifests/alerts") -> list[Path]:
    """Write ``herl-rules.yaml`` (PrometheusRule) and ``herl-rules.rules.yaml`` (plain) into ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out = {d / "herl-rules.yaml": _dump(prometheus_rule()), d / "herl-rules.rules.yaml": _dump(rules_file())}
    for p, text in out.items():
        p.write_text(text, encoding="utf-8")
    return list(out)


RENDERED = {
    "herl-rules.yaml": lambda: _dump(prometheus_rule()),
    "herl-rules.rules.yaml": lambda: _dump(rules_file()),
}
