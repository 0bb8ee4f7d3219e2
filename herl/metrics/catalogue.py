"""The one catalogue of every Prometheus metric herl exports (trainer engines and operator).

Why one table: the trainer publisher, the operator exporter, the Grafana dashboards, the alert rules
and ``docs/metrics.md`` all derive names, types and labels from here, so a rename is one edit and a
drift is a failing test rather than an empty panel on a cluster.

Naming follows the Prometheus conventions: prefix ``herl_``, base units in the name (``_seconds``,
``_tokens``, ``_ratio`` for 0..1 fractions), counters end in ``_total``. Labels are low-cardinality
only: ``herl_job``, ``namespace``, ``data_source``, ``stage``, ``reason`` (trainer) and ``phase``,
``result`` (operator). Never a step or prompt label, and never a label named ``job`` or ``instance``
(Prometheus owns those and renames ours to ``exported_job``).

The operator imports its names from here (``OPERATOR_*`` constants, :data:`OPERATOR_METRICS`) and
may build its collectors with :func:`create_collectors` (``engine=Engine.OPERATOR``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class MetricType(StrEnum):
    """The Prometheus metric types herl uses."""

    GAUGE = "gauge"
    COUNTER = "counter"
    HISTOGRAM = "histogram"


class Engine(StrEnum):
    """Who exports a metric: the local engine, the veRL plugin (trainer on Ray) or the operator."""

    LOCAL = "local"
    VERL = "verl"
    OPERATOR = "operator"


TRAINER = frozenset({Engine.LOCAL, Engine.VERL})
OPERATOR = frozenset({Engine.OPERATOR})

#: Labels every trainer metric carries (set once per process by the publisher).
JOB_LABELS: tuple[str, ...] = ("herl_job", "namespace")

#: Label names that must never appear: Prometheus renames ``job``/``instance`` to ``exported_*``,
#: and a step or prompt label would create one series per step/prompt.
FORBIDDEN_LABELS = frozenset({"job", "instance", "step", "prompt", "uid", "pod", "__name__"})

#: Default reconcile-latency buckets (seconds): kopf handlers take ms..tens of seconds.
RECONCILE_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its full exposition name, type, unit, labels and meaning.

    ``name`` is the name as scraped (counters include ``_total``; histograms are the base name of
    ``_bucket``/``_sum``/``_count``).
    """

    name: str
    type: MetricType
    unit: str
    labels: tuple[str, ...]
    help: str
    family: str
    engines: frozenset[Engine]
    buckets: tuple[float, ...] | None = None
    #: Where the value comes from (step-dict key or operator event), for the docs.
    source: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def client_name(self) -> str:
        """Name to hand to prometheus_client (it appends ``_total`` to counters itself)."""
        if self.type is MetricType.COUNTER and self.name.endswith("_total"):
            return self.name[: -len("_total")]
        return self.name


def _t(
    name: str, typ: MetricType, unit: str, help_: str, family: str, source: str, labels: tuple[str, ...] = ()
) -> MetricSpec:
    """A trainer metric: always carries :data:`JOB_LABELS` first."""
    return MetricSpec(name, typ, unit, JOB_LABELS + labels, help_, family, TRAINER, source=source)


G, C, H = MetricType.GAUGE, MetricType.COUNTER, MetricType.HISTOGRAM

# ------------------------------------------------------------------------------------------ operator
# Agreed with herl_operator/metrics.py. Phases are HeRLJob.status.phase values (herl.api.model.Phase).

OPERATOR_JOBS = "herl_operator_jobs"
OPERATOR_JOB_PHASE = "herl_operator_job_phase"
OPERATOR_RECONCILE_TOTAL = "herl_operator_reconcile_total"
OPERATOR_RECONCILE_DURATION = "herl_operator_reconcile_duration_seconds"
OPERATOR_RETRIES_TOTAL = "herl_operator_retries_total"
OPERATOR_GPU_SECONDS = "herl_operator_gpu_seconds"
OPERATOR_JOB_LAST_REWARD = "herl_operator_job_last_reward"

#: Values of the ``result`` label of :data:`OPERATOR_RECONCILE_TOTAL`. Alerts use ``error``.
RECONCILE_RESULTS: tuple[str, ...] = ("success", "error")
#: Phases the alerts and dashboards rely on (full list: herl.api.model.Phase).
JOB_PHASES: tuple[str, ...] = (
    "Pending",
    "Queued",
    "Suspended",
    "Provisioning",
    "Running",
    "Retrying",
    "Succeeded",
    "Failed",
)

OPERATOR_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        OPERATOR_JOBS,
        G,
        "jobs",
        ("phase",),
        "Number of HeRLJobs per phase, across all watched namespaces.",
        "operator",
        OPERATOR,
        source="operator: recount on every reconcile/timer tick",
    ),
    MetricSpec(
        OPERATOR_JOB_PHASE,
        G,
        "1",
        ("namespace", "herl_job", "phase"),
        "1 for the current phase of each HeRLJob, 0 for its other phases (set all phases so a "
        "phase change does not leave a stale 1). Lets alerts join a job to its trainer metrics.",
        "operator",
        OPERATOR,
        source="operator: status.phase",
    ),
    MetricSpec(
        OPERATOR_RECONCILE_TOTAL,
        C,
        "reconciles",
        ("result",),
        "Reconcile passes of the HeRLJob controller, by result (success|error).",
        "operator",
        OPERATOR,
        source="operator: each handler/timer run",
    ),
    MetricSpec(
        OPERATOR_RECONCILE_DURATION,
        H,
        "seconds",
        (),
        "Wall time of one reconcile pass.",
        "operator",
        OPERATOR,
        buckets=RECONCILE_BUCKETS,
        source="operator: each handler/timer run",
    ),
    MetricSpec(
        OPERATOR_RETRIES_TOTAL,
        C,
        "retries",
        (),
        "RayJob attempts restarted by the operator (a new RayCluster each; resume from checkpoint).",
        "operator",
        OPERATOR,
        source="operator: a new attempt in status.attempts",
    ),
    MetricSpec(
        OPERATOR_GPU_SECONDS,
        G,
        "seconds",
        ("namespace", "herl_job"),
        "GPU time consumed by a HeRLJob so far, all attempts, in GPU-seconds (status.gpuHours × 3600; "
        "dashboards divide by 3600). A gauge, not a counter, because it is read back from status and so "
        "survives operator restarts; it only grows. Base unit seconds and no _total suffix, as "
        "promtool's lint requires of a gauge.",
        "operator",
        OPERATOR,
        source="operator: status.gpuHours × 3600",
    ),
    MetricSpec(
        OPERATOR_JOB_LAST_REWARD,
        G,
        "score",
        ("namespace", "herl_job"),
        "Last mean training reward the trainer reported into status.progress.rewardMean.",
        "operator",
        OPERATOR,
        source="operator: status.progress.rewardMean",
    ),
)

# ------------------------------------------------------------------------------------------- trainer

TRAINER_METRICS: tuple[MetricSpec, ...] = (
    # reward
    _t(
        "herl_reward_score_mean",
        G,
        "score",
        "Mean sequence score of the step's rollouts (before hindsight incorporation).",
        "reward",
        "critic/score/mean",
    ),
    _t("herl_reward_score_max", G, "score", "Max sequence score of the step.", "reward", "critic/score/max"),
    _t("herl_reward_score_min", G, "score", "Min sequence score of the step.", "reward", "critic/score/min"),
    _t(
        "herl_reward_score_std",
        G,
        "score",
        "Std of sequence scores of the step.",
        "reward",
        "critic/score/std",
    ),
    _t(
        "herl_reward_all_met_ratio",
        G,
        "ratio",
        "Fraction of rollouts that meet every constraint/rubric item (the sparse success signal).",
        "reward",
        "herl/all_met_rate",
    ),
    _t(
        "herl_reward_errors_total",
        C,
        "responses",
        "Scored responses (rollouts and revisions) whose reward came back with an error instead of a "
        "score (a checker that failed to load or raised, an unreachable judge); they count as 0. The "
        "local engine stops past spec.reward.maxErrorFraction of a step.",
        "reward",
        "herl/reward_errors",
    ),
    _t(
        "herl_reward_score_mean_best",
        G,
        "score",
        "Best step-mean score so far in this process (running max of herl_reward_score_mean).",
        "reward",
        "derived",
    ),
    _t(
        "herl_reward_best_step",
        G,
        "steps",
        "Step at which herl_reward_score_mean_best was reached; "
        "herl_training_step minus this is the stall length used by the HeRLRewardStalled alert.",
        "reward",
        "derived",
    ),
    _t(
        "herl_reward_source_score_mean",
        G,
        "score",
        "Mean score per data_source of the step.",
        "reward",
        "herl/reward/<data_source>/mean",
        ("data_source",),
    ),
    _t(
        "herl_reward_source_all_met_ratio",
        G,
        "ratio",
        "All-met rate per data_source of the step.",
        "reward",
        "herl/reward/<data_source>/all_met_rate",
        ("data_source",),
    ),
    _t(
        "herl_validation_score_mean",
        G,
        "score",
        "Validation mean reward per data_source (veRL val-core/<data_source>/reward/mean@N).",
        "reward",
        "val-core/<data_source>/reward/mean@<n>",
        ("data_source",),
    ),
    # hindsight exploration
    _t(
        "herl_hindsight_groups_attempted_total",
        C,
        "groups",
        "Rollout groups in which hindsight revision was attempted (all drafts below the success bar).",
        "hindsight",
        "herl/groups_attempted",
    ),
    _t(
        "herl_hindsight_revisions_generated_total",
        C,
        "revisions",
        "Revisions generated by the policy from a draft plus its unmet rubric items.",
        "hindsight",
        "herl/revisions_generated",
    ),
    _t(
        "herl_hindsight_revisions_kept_total",
        C,
        "samples",
        "Revisions incorporated into their group (ties or beats the group best).",
        "hindsight",
        "herl/kept",
    ),
    _t(
        "herl_hindsight_fallbacks_total",
        C,
        "samples",
        "Groups where no revision tied/beat the best and a "
        "copy of the best original was used instead (the released code's fallback).",
        "hindsight",
        "herl/fallbacks",
    ),
    _t(
        "herl_hindsight_revision_success_ratio",
        G,
        "ratio",
        "Fraction of revisions scoring above their draft in the step.",
        "hindsight",
        "herl/success_rate",
    ),
    _t(
        "herl_hindsight_over_previous_best_ratio",
        G,
        "ratio",
        "Fraction of attempted groups whose best revision beats the group's previous best reward.",
        "hindsight",
        "herl/over_prev_best",
    ),
    _t(
        "herl_hindsight_bonus_mean",
        G,
        "score",
        "Mean bonus reward α·(r̃−r) applied to drafts (can be negative).",
        "hindsight",
        "herl/bonus_mean",
    ),
    _t(
        "herl_hindsight_token_ratio",
        G,
        "ratio",
        "Fraction of response tokens in the update that come from hindsight (off-policy) samples.",
        "hindsight",
        "actor/he_frac",
    ),
    # policy
    _t("herl_policy_loss", G, "loss", "Policy-gradient loss (all tokens).", "policy", "actor/pg_loss"),
    _t(
        "herl_policy_on_policy_loss",
        G,
        "loss",
        "Policy-gradient loss on on-policy tokens.",
        "policy",
        "actor/on_pg_loss",
    ),
    _t(
        "herl_policy_off_policy_loss",
        G,
        "loss",
        "Policy-gradient loss on hindsight (off-policy) tokens.",
        "policy",
        "actor/off_pg_loss",
    ),
    _t(
        "herl_policy_entropy",
        G,
        "nats",
        "Mean token entropy of the policy (exploration signal).",
        "policy",
        "actor/entropy",
    ),
    _t(
        "herl_policy_kl",
        G,
        "nats",
        "Approximate KL between the current and the rollout policy (PPO KL).",
        "policy",
        "actor/ppo_kl",
    ),
    _t(
        "herl_policy_kl_loss",
        G,
        "loss",
        "KL-to-reference loss term, when enabled.",
        "policy",
        "actor/kl_loss",
    ),
    _t(
        "herl_policy_clip_ratio",
        G,
        "ratio",
        "Fraction of tokens where the PPO ratio was clipped.",
        "policy",
        "actor/pg_clipfrac",
    ),
    _t("herl_policy_grad_norm", G, "norm", "Gradient norm before clipping.", "policy", "actor/grad_norm"),
    # lengths
    _t(
        "herl_response_length_mean_tokens",
        G,
        "tokens",
        "Mean response length of the step.",
        "lengths",
        "response_length/mean",
    ),
    _t(
        "herl_response_length_max_tokens",
        G,
        "tokens",
        "Max response length of the step.",
        "lengths",
        "response_length/max",
    ),
    _t(
        "herl_response_clip_ratio",
        G,
        "ratio",
        "Fraction of responses cut at max response length.",
        "lengths",
        "response_length/clip_ratio",
    ),
    # progress
    _t(
        "herl_training_step",
        G,
        "steps",
        "Current global training step.",
        "progress",
        "training/global_step (else the step argument)",
    ),
    _t("herl_training_epoch", G, "epochs", "Current epoch.", "progress", "training/epoch"),
    _t(
        "herl_training_total_steps",
        G,
        "steps",
        "Planned total training steps.",
        "progress",
        "training/total_steps",
    ),
    _t(
        "herl_training_steps_total",
        C,
        "steps",
        "Training steps published by this process (rate = steps per second).",
        "progress",
        "one per publish_step call with a new step",
    ),
    _t(
        "herl_checkpoint_last_step",
        G,
        "steps",
        "Step of the newest checkpoint saved by the trainer; the "
        "operator copies it into status.lastCheckpoint.",
        "progress",
        "herl/checkpoint_step",
    ),
    _t(
        "herl_training_last_step_timestamp_seconds",
        G,
        "seconds",
        "Unix time of the last published step; drives the stuck-trainer alert.",
        "progress",
        "derived",
    ),
    # timing / throughput
    _t(
        "herl_stage_duration_seconds",
        G,
        "seconds",
        "Wall time of one stage in the last step (gen, "
        "hindsight, reward, old_log_prob, ref, adv, update_actor, step...).",
        "timing",
        "timing_s/<stage>",
        ("stage",),
    ),
    _t(
        "herl_throughput_tokens_per_second",
        G,
        "tokens/s",
        "Tokens processed per second per GPU in the last step (veRL perf/throughput).",
        "timing",
        "perf/throughput",
    ),
    _t(
        "herl_tokens_total",
        C,
        "tokens",
        "Tokens processed (prompt+response) by training steps.",
        "timing",
        "perf/total_num_tokens",
    ),
    # judge
    _t(
        "herl_judge_calls_total",
        C,
        "calls",
        "Calls to the rubric judge (LLM endpoint).",
        "judge",
        "judge/calls",
    ),
    _t(
        "herl_judge_errors_total",
        C,
        "calls",
        "Failed judge calls by reason (timeout, http, parse, refused...).",
        "judge",
        "judge/errors/<reason>",
        ("reason",),
    ),
)

ALL_METRICS: tuple[MetricSpec, ...] = TRAINER_METRICS + OPERATOR_METRICS
BY_NAME: dict[str, MetricSpec] = {m.name: m for m in ALL_METRICS}

FAMILY_TITLES: dict[str, str] = {
    "reward": "Reward",
    "hindsight": "Hindsight exploration",
    "policy": "Policy health",
    "lengths": "Lengths",
    "progress": "Progress",
    "timing": "Timing and throughput",
    "judge": "Judge",
    "operator": "Operator",
}


def spec(name: str) -> MetricSpec:
    """The catalogue entry for ``name`` (KeyError with the name when unknown)."""
    return BY_NAME[name]


def metrics_for(engine: Engine) -> tuple[MetricSpec, ...]:
    """Every metric a given engine exports."""
    return tuple(m for m in ALL_METRICS if engine in m.engines)


def create_collectors(registry: CollectorRegistry, engine: Engine) -> dict[str, Counter | Gauge | Histogram]:
    """Create the prometheus_client collectors of ``engine`` in ``registry``, keyed by catalogue name.

    Both the trainer publisher and the operator use this so a type, label or bucket change in the
    catalogue reaches the exporter without a second edit.
    """
    out: dict[str, Counter | Gauge | Histogram] = {}
    for m in metrics_for(engine):
        if m.type is MetricType.GAUGE:
            out[m.name] = Gauge(m.client_name, m.help, m.labels, registry=registry)
        elif m.type is MetricType.COUNTER:
            out[m.name] = Counter(m.client_name, m.help, m.labels, registry=registry)
        else:
            buckets = m.buckets or Histogram.DEFAULT_BUCKETS
            out[m.name] = Histogram(m.client_name, m.help, m.labels, registry=registry, buckets=buckets)
    return out
