"""The HeRLJob API (``herl.dev/v1alpha1``): the one source of truth.

The CRD's ``openAPIV3Schema`` (manifests/crds, the chart's crds/), ``docs/api.md`` and ``herl validate``
are all generated from these pydantic models. Cross-field rules are declared once in ``herl.api.rules``
and appear both as CEL ``x-kubernetes-validations`` (enforced at admission by the API server) and as
Python checks (enforced by ``herl validate``, the operator and the trainer).

Defaults: the numbers are the official HeRL instruction-following recipe (Qwen3_herl.sh, see
docs/algorithm.md). Where the released code does something by accident, our default fixes it and a
named switch restores it; the ``official-if`` / ``official-medical`` presets switch every quirk back on.
The CRD carries no ``default:`` values on purpose: a preset fills in what the user left out, so the
server must not pre-fill fields and make them look user-set. Each field's description names its default.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from herl import images
from herl.api.rules import check_spec

API_GROUP = "herl.dev"
API_VERSION = "v1alpha1"
KIND = "HeRLJob"
PLURAL = "herljobs"

#: The trainer image each engine runs when spec.resources.image is not set (images/, `make images`).
#: veRL needs the GPU image (veRL + vLLM); the local engine runs from the CPU image (torch CPU + herl).
TRAINER_IMAGES: dict[str, str] = {"verl": images.TRAINER_IMAGE, "local": images.LOCAL_ENGINE_IMAGE}
SINGULAR = "herljob"
SHORT_NAMES = ("herl",)
MAX_NAME_LENGTH = 40  # RayJob names may be 47 chars; we add "-aNN" per attempt and keep headroom.

DNS1035 = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
NO_SPACE = r"^\S+$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
# Hydra override grammar, as far as a schema can check it: [+|++|~]key[=value], one line.
VERL_OVERRIDE = r"^(\+{1,2}|~)?[A-Za-z_][A-Za-z0-9_.\-]*(=[^\n\r]*)?$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Model(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are errors (like a structural CRD)."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=to_camel, serialization_alias=to_camel),
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


class Preset(StrEnum):
    none = "none"
    official_if = "official-if"
    official_medical = "official-medical"


# --------------------------------------------------------------------------------------------- model


class ModelSpec(_Model):
    """The policy model to train (also the reference model for the KL term)."""

    path: Annotated[str, Field(min_length=1, max_length=1024, pattern=NO_SPACE)]
    """Hugging Face id (``Qwen/Qwen2.5-7B-Instruct``), a path on a mounted volume (``/models/qwen``), or an
    object-store URI (``s3://bucket/qwen``). Clusters without internet need a volume path or a URI."""

    tokenizer_path: Annotated[str | None, Field(max_length=1024, pattern=NO_SPACE)] = None
    """Tokenizer location when it differs from ``path``. Default: ``path``."""

    chat_template: Annotated[str | None, Field(max_length=65536)] = None
    """A Jinja chat template that replaces the tokenizer's own. Default: the tokenizer's template."""

    trust_remote_code: bool = False
    """Allow model code from the model repository to run. Default: false."""

    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    """Parameter dtype of the actor. Default: bfloat16 (the local engine uses float32 on CPU)."""


# ---------------------------------------------------------------------------------------------- data


class SyntheticDataSpec(_Model):
    """Synthetic instruction-following prompts built from the checkers' descriptions (works offline)."""

    num_prompts: Annotated[int, Field(ge=1, le=1_000_000)] = 256
    """How many prompts to generate. Default: 256."""

    constraints_per_prompt: Annotated[int, Field(ge=1, le=6)] = 2
    """Constraints attached to each prompt. Default: 2."""

    seed: Annotated[int, Field(ge=0)] = 0
    """Generator seed. Default: 0."""


class DataSpec(_Model):
    """Training and validation prompts, and the token budgets that must hold them."""

    format: Literal["verl-parquet", "hir16k-jsonl", "rar-medicine", "synthetic-if"] = "verl-parquet"
    """How ``train``/``val`` are stored: veRL parquet rows, HIR-16K jsonl, RaR-Medicine, or ``synthetic-if``
    (generated, no files). Default: verl-parquet."""

    train: Annotated[str | None, Field(max_length=1024, pattern=NO_SPACE)] = None
    """Training file: a path on a mounted volume or an object-store URI. Required unless format is
    synthetic-if."""

    val: Annotated[str | None, Field(max_length=1024, pattern=NO_SPACE)] = None
    """Validation file (same format). Default: none (no validation runs)."""

    synthetic: SyntheticDataSpec | None = None
    """Settings for format synthetic-if. Default: 256 prompts, 2 constraints each, seed 0."""

    max_prompt_length: Annotated[int, Field(ge=16, le=131072)] = 6144
    """Longest prompt in tokens, hindsight prompts included (veRL left-truncates longer ones).
    Default: 6144 (official IF; medical 4096)."""

    max_response_length: Annotated[int, Field(ge=1, le=131072)] = 2048
    """Longest response in tokens. Default: 2048 (official IF; medical 4096)."""

    max_instruction_length: Annotated[int, Field(ge=1, le=131072)] = 2048
    """Longest original instruction in tokens; longer training prompts are rejected when loading.
    Default: 2048."""

    hindsight_prompt_margin: Annotated[int, Field(ge=0, le=65536)] = 512
    """Tokens reserved in a hindsight prompt for the role lines and the constraint list. Default: 512."""

    allow_hindsight_truncation: bool = False
    """Released-code quirk: allow hindsight prompts longer than maxPromptLength (they get left-truncated,
    losing the start of the instruction). The official-medical preset sets it. Default: false, so the
    spec must satisfy maxPromptLength >= maxInstructionLength + maxResponseLength + hindsightPromptMargin."""


# -------------------------------------------------------------------------------------------- reward


class SecretKeyRef(_Model):
    """A key in a Secret of the HeRLJob's namespace. Secret values never appear in a spec or a log."""

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]
    """Secret name."""

    key: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")]
    """Key inside the Secret."""


class InstructionFollowingSpec(_Model):
    """Rule-based instruction-following reward (IFEval, IFBench and MulDimIF checkers)."""

    workers: Annotated[int, Field(ge=0, le=1024)] = 0
    """Parallel scoring processes. Default: 0 = one per CPU core of the trainer pod."""


class JudgeSpec(_Model):
    """Rubric reward scored by an LLM judge behind any OpenAI-compatible chat endpoint."""

    endpoint: Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^https?://\S+$")]
    """Base URL of the OpenAI-compatible API, e.g. ``https://api.openai.com/v1``."""

    model: Annotated[str, Field(min_length=1, max_length=256, pattern=NO_SPACE)] = "gpt-4o-mini"
    """Judge model name. Default: gpt-4o-mini (official)."""

    temperature: Annotated[float, Field(ge=0, le=2)] = 0.1
    """Judge sampling temperature. Default: 0.1."""

    max_tokens: Annotated[int, Field(ge=1, le=65536)] = 4096
    """Judge completion limit. Default: 4096."""

    concurrency: Annotated[int, Field(ge=1, le=4096)] = 512
    """Requests in flight at once. Default: 512."""

    timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 60
    """Per-request timeout. Default: 60."""

    max_retries: Annotated[int, Field(ge=0, le=20)] = 2
    """Retries after a failed request (timeouts, 429, 5xx, unparsable answers). Default: 2."""

    retry_backoff_seconds: Annotated[float, Field(ge=0, le=600)] = 0.5
    """First retry delay; doubles each retry. Default: 0.5."""

    pitfall_policy: Literal["clamp", "subtract"] = "clamp"
    """Negative-weight (pitfall) rubric items: ``clamp`` ignores them (released behaviour), ``subtract``
    deducts them (RaR's explicit aggregation). Default: clamp."""

    api_key_secret_ref: SecretKeyRef | None = None
    """Secret key holding the API key, injected as an environment variable. Default: none (no key)."""


class RewardSpec(_Model):
    """What the trainer optimises."""

    type: Literal["instruction-following", "rubric-judge"] = "instruction-following"
    """``instruction-following`` (rule checkers, per-constraint verdicts) or ``rubric-judge`` (LLM judge
    over weighted rubrics). Default: instruction-following."""

    instruction_following: InstructionFollowingSpec | None = None
    """Settings of the instruction-following reward. Default: one scoring process per core."""

    judge: JudgeSpec | None = None
    """Judge settings; required when type is rubric-judge."""

    max_error_fraction: Annotated[float, Field(ge=0, le=1)] = 0.05
    """Local engine: stop, without training on the step, when more than this fraction of a step's
    scored responses (rollouts and revisions) came back with a reward error (score 0 because a checker
    failed to load or raised, or the judge was unreachable) instead of a real score. 0 stops at the
    first error, 1 never stops. Both engines count the errors in ``herl_reward_errors_total``.
    Default: 0.05."""


# ----------------------------------------------------------------------------------------- algorithm


class KLLossSpec(_Model):
    """KL penalty to the reference model, added to the loss (not to the reward)."""

    enabled: bool = True
    """Default: true (official, with coefficient 0)."""

    coef: Annotated[float, Field(ge=0, le=10)] = 0.0
    """Default: 0.0 (official IF; medical 0.001)."""

    type: Literal["low_var_kl", "kl", "abs", "mse"] = "low_var_kl"
    """KL estimator. Default: low_var_kl."""


class RolloutSpec(_Model):
    """Sampling of the on-policy rollouts."""

    temperature: Annotated[float, Field(gt=0, le=5)] = 1.0
    """Default: 1.0."""

    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    """Default: 1.0."""


class RevisionSpec(_Model):
    """Sampling of the hindsight revisions."""

    temperature: Annotated[float, Field(gt=0, le=5)] = 0.3
    """Default: 0.3 (what the official scripts ask for)."""

    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    """Default: 1.0."""

    max_tokens: Annotated[int | None, Field(ge=1, le=131072)] = None
    """Longest revision in tokens; at most maxResponseLength. Default: maxResponseLength."""

    use_rollout_sampling: bool = False
    """Released-code quirk: in veRL's sync rollout mode the revision temperature and length are silently
    ignored and revisions sample at the rollout settings. True reproduces that (official presets).
    Default: false (the settings above really apply)."""


class BonusSpec(_Model):
    """Bonus reward (BR): r_i <- r_i + alpha * (r~_i - r_i) for drafts that were revised."""

    enabled: bool = True
    """Default: true."""

    alpha: Annotated[float, Field(ge=0, le=1)] = 0.05
    """Default: 0.05."""


class HindsightSpec(_Model):
    """The HeRL stage: revise the best rollouts of failing groups under a hindsight prompt."""

    enabled: bool = True
    """False gives the GRPO/RLVR baseline with everything else equal. Default: true."""

    threshold: Annotated[float, Field(ge=0, le=1)] = 1.0
    """Groups whose best score reaches this are not revised. Default: 1.0 (only groups with no perfect
    rollout)."""

    candidate_limit: Annotated[int, Field(ge=1, le=256)] = 16
    """Most drafts revised per group (all rollouts tied at the group best, up to this). Default: 16."""

    revisions_per_candidate: Annotated[int, Field(ge=1, le=16)] = 1
    """Revisions sampled per draft. Default: 1."""

    train_under: Literal["hindsight", "instruction"] = "hindsight"
    """Prompt the kept revision is trained under: ``hindsight`` (HE, released) or the original
    ``instruction`` (NaiveHE ablation). Default: hindsight."""

    incorporation: Literal["replace", "append"] = "replace"
    """``replace`` one rollout of the group (released; group size stays) or ``append`` the revision
    (the paper's figure; group grows by one). Default: replace."""

    fallback: Literal["duplicate-best", "skip"] = "duplicate-best"
    """When no revision ties or beats the group best: ``duplicate-best`` copies the best original into
    the replaced slot (released), ``skip`` leaves the group as sampled. Default: duplicate-best."""

    prompt_template: Literal["auto", "constraint", "rubric"] = "auto"
    """Hindsight prompt: ``constraint`` (met/unmet list), ``rubric`` (weights and unclear items), ``auto``
    (rubric for rubric-judge rewards). The released code can only reach ``constraint`` (official presets).
    Default: auto."""

    chat_template: bool = False
    """Wrap the hindsight prompt in the model's chat template as a user turn. Default: false (released:
    raw text, no BOS)."""

    revision: RevisionSpec | None = None
    """Revision sampling. Default: temperature 0.3, top-p 1.0, up to maxResponseLength tokens."""

    gamma: Annotated[float, Field(gt=0, le=100)] = 1.0
    """gamma of the shaped off-policy loss -A * rho / (rho + gamma) on hindsight tokens. Default: 1.0
    (official IF; medical 0.1)."""

    bonus: BonusSpec | None = None
    """Bonus reward. Default: enabled, alpha 0.05."""

    seeded_slots: bool = True
    """Draw the replaced slot from the job's seeded RNG. Released quirk (false): an unseeded RNG.
    Default: true."""


class AlgorithmSpec(_Model):
    """GRPO hyper-parameters and the hindsight stage."""

    group_size: Annotated[int, Field(ge=2, le=256)] = 8
    """Rollouts per prompt (rollout.n). Default: 8."""

    train_batch_size: Annotated[int, Field(ge=1, le=65536)] = 64
    """Prompts per training step. Default: 64."""

    mini_batch_size: Annotated[int, Field(ge=1, le=65536)] = 32
    """Prompts per optimiser update; must divide trainBatchSize. Default: 32 (official IF; medical 16)."""

    micro_batch_size_per_gpu: Annotated[int, Field(ge=1, le=4096)] = 16
    """Sequences per forward/backward on one GPU. Default: 16."""

    learning_rate: Annotated[float, Field(gt=0, le=1)] = 1e-6
    """AdamW learning rate (constant). Default: 1e-6."""

    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.01
    """Default: 0.01."""

    grad_clip: Annotated[float, Field(gt=0, le=1000)] = 1.0
    """Gradient-norm clip. Default: 1.0."""

    epochs: Annotated[int, Field(ge=1, le=1000)] = 6
    """Passes over the training prompts. Default: 6 (official IF; medical 3)."""

    total_steps: Annotated[int | None, Field(ge=1, le=10_000_000)] = None
    """Stop after this many steps. Default: epochs x steps per epoch."""

    ppo_epochs: Annotated[int, Field(ge=1, le=16)] = 1
    """Passes over each step's batch. Default: 1."""

    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 42
    """Seed for data order, sampling and the hindsight slot RNG. Default: 42."""

    kl_loss: KLLossSpec | None = None
    """Default: enabled, coefficient 0.0, low_var_kl."""

    entropy_coeff: Annotated[float, Field(ge=0, le=1)] = 0.0
    """Default: 0."""

    clip_ratio: Annotated[float, Field(gt=0, le=1)] = 0.2
    """PPO clip epsilon. Default: 0.2."""

    dual_clip_c: Annotated[float, Field(gt=1, le=100)] = 3.0
    """Dual-clip constant c (> 1). Default: 3.0."""

    loss_agg_mode: Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"] = "token-mean"
    """Default: token-mean."""

    rollout: RolloutSpec | None = None
    """Default: temperature 1.0, top-p 1.0."""

    hindsight: HindsightSpec | None = None
    """Default: enabled, with the official IF settings and our quirk fixes."""


# ------------------------------------------------------------------------------------------ resources


class Toleration(_Model):
    """A Kubernetes toleration (core/v1)."""

    key: Annotated[str | None, Field(max_length=317)] = None
    """Taint key to tolerate (empty with operator Exists: every taint)."""

    operator: Literal["Exists", "Equal"] | None = None
    """Exists or Equal. Default: Equal."""

    value: Annotated[str | None, Field(max_length=63)] = None
    """Taint value (operator Equal)."""

    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to tolerate. Default: all effects."""

    toleration_seconds: Annotated[int | None, Field(ge=0)] = None
    """How long a NoExecute taint is tolerated. Default: forever."""


class HeadSpec(_Model):
    """The Ray head pod (runs the driver; no GPUs unless engine local asks for one)."""

    cpu: Annotated[str, Field(pattern=QUANTITY, max_length=32)] = "4"
    """Default: 4."""

    memory: Annotated[str, Field(pattern=QUANTITY, max_length=32)] = "32Gi"
    """Default: 32Gi."""

    gpus: Annotated[int, Field(ge=0, le=8)] = 0
    """GPUs (nvidia.com/gpu) on the head, only with engine ``local`` (a one-GPU run: the trainer runs on
    the head, placed by gpuType, nodeSelector and tolerations). Default: 0."""

    node_selector: Annotated[dict[str, Annotated[str, Field(max_length=63)]] | None, Field(max_length=32)] = (
        None
    )
    """Node labels the head must match (e.g. a CPU pool for Ray heads). Default: none."""

    tolerations: Annotated[list[Toleration] | None, Field(max_length=32)] = None
    """Tolerations of the head pod (e.g. for a tainted head pool). Default: none."""


class ResourcesSpec(_Model):
    """Where and on what the trainer runs."""

    image: Annotated[str | None, Field(min_length=1, max_length=512, pattern=r"^[^\s'\"$`\\;|&<>]+$")] = None
    """Trainer image. Default: ghcr.io/herl-dev/herl-trainer:0.1.0 (veRL + vLLM) with engine verl,
    ghcr.io/herl-dev/herl-trainer-cpu:0.1.0 (torch CPU + herl) with engine local."""

    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """Default: IfNotPresent."""

    workers: Annotated[int, Field(ge=1, le=512)] = 1
    """GPU worker pods. Default: 1."""

    gpus_per_worker: Annotated[int, Field(ge=1, le=16)] = 4
    """GPUs per worker pod (nvidia.com/gpu). Default: 4."""

    gpu_type: Annotated[
        str | None, Field(max_length=63, pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
    ] = None
    """Required GPU model, matched against the node label named by gpuTypeLabel (e.g. NVIDIA-H100-80GB-HBM3).
    Default: any."""

    gpu_type_label: Annotated[str, Field(max_length=317, pattern=r"^([a-z0-9.-]+/)?[A-Za-z0-9._-]+$")] = (
        "nvidia.com/gpu.product"
    )
    """Node label that carries the GPU model. Default: nvidia.com/gpu.product (GPU feature discovery)."""

    cpu: Annotated[str, Field(pattern=QUANTITY, max_length=32)] = "32"
    """CPU per worker pod. Default: 32."""

    memory: Annotated[str, Field(pattern=QUANTITY, max_length=32)] = "256Gi"
    """Memory per worker pod. Default: 256Gi."""

    shared_memory: Annotated[str, Field(pattern=QUANTITY, max_length=32)] = "16Gi"
    """Size of /dev/shm (NCCL and vLLM need a large one). Default: 16Gi."""

    tensor_parallel: Annotated[int, Field(ge=1, le=16)] = 2
    """vLLM tensor-parallel size; must divide gpusPerWorker. Default: 2."""

    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.3
    """Share of GPU memory vLLM may take. Default: 0.3 (official)."""

    head: HeadSpec | None = None
    """The Ray head pod. Default: 4 CPU, 32Gi."""

    node_selector: Annotated[dict[str, Annotated[str, Field(max_length=63)]] | None, Field(max_length=32)] = (
        None
    )
    """Node labels the GPU workers must match (a GPU node pool). Default: none."""

    tolerations: Annotated[list[Toleration] | None, Field(max_length=32)] = None
    """Tolerations for GPU node taints. Default: none."""

    affinity: dict[str, Any] | None = None
    """A core/v1 Affinity for the GPU workers, passed through unchanged. Default: none."""

    service_account_name: Annotated[str | None, Field(max_length=253, pattern=DNS1123_LABEL)] = None
    """Service account of the Ray pods (e.g. for object-store access). Default: the namespace default."""


# ---------------------------------------------------------------------------------------- checkpoints


class PVCSpec(_Model):
    """An existing PersistentVolumeClaim (ReadWriteMany when workers > 1)."""

    claim_name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS1123_LABEL)]
    """PVC name in the HeRLJob's namespace."""

    sub_path: Annotated[str | None, Field(max_length=1024, pattern=r"^[^/\s][^\s]*$")] = None
    """Folder inside the volume. Default: herl/<namespace>/<name>."""


class CheckpointSpec(_Model):
    """Checkpoints on storage that outlives the Ray cluster, so retries and preemptions resume."""

    pvc: PVCSpec | None = None
    """Store checkpoints on a PVC (mutually exclusive with uri)."""

    uri: Annotated[str | None, Field(max_length=1024, pattern=r"^(s3|gs|hdfs)://\S+$")] = None
    """Store checkpoints in object storage: s3://, gs:// or hdfs:// (mutually exclusive with pvc)."""

    save_every_steps: Annotated[int, Field(ge=1, le=1_000_000)] = 40
    """Default: 40."""

    keep_last: Annotated[int, Field(ge=1, le=1000)] = 3
    """Checkpoints kept; older ones are deleted. Default: 3."""

    resume: Literal["auto", "disable"] = "auto"
    """``auto`` continues from the newest checkpoint after a retry or a preemption. Default: auto."""

    retention: Literal["Retain", "Delete"] = "Retain"
    """What happens to the checkpoints when the HeRLJob is deleted. Default: Retain."""


# -------------------------------------------------------------------------------------- run policy


class RunPolicySpec(_Model):
    """Retries, deadlines and budgets."""

    backoff_limit: Annotated[int, Field(ge=0, le=100)] = 2
    """Retries after a failed attempt (each retry is a new Ray cluster that resumes). Default: 2."""

    submission_mode: Literal["K8sJobMode", "HTTPMode"] | None = None
    """How KubeRay submits the trainer to the Ray cluster: ``K8sJobMode`` (a submitter pod runs ``ray job
    submit``) or ``HTTPMode`` (KubeRay posts the job to the Ray dashboard; no extra pod). Default: the
    operator's setting (chart value operator.submissionMode, K8sJobMode)."""

    attempt_deadline_seconds: Annotated[int | None, Field(ge=1, le=31_536_000)] = None
    """Wall-clock limit of one attempt (RayJob activeDeadlineSeconds). Default: none."""

    total_budget_seconds: Annotated[int | None, Field(ge=1, le=31_536_000)] = None
    """Wall-clock limit over all attempts together (KubeRay has none). Default: none."""

    suspend: bool = False
    """Stop the job and release its GPUs; set back to false to resume from the last checkpoint.
    Default: false."""


class QueueSpec(_Model):
    """Kueue admission."""

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS1123_LABEL)]
    """Kueue LocalQueue name (label kueue.x-k8s.io/queue-name)."""

    priority_class: Annotated[str | None, Field(max_length=253, pattern=DNS1123_LABEL)] = None
    """Kueue WorkloadPriorityClass (label kueue.x-k8s.io/priority-class). Default: none."""


class MetricsSpec(_Model):
    """Prometheus metrics of the trainer."""

    enabled: bool = True
    """Default: true."""

    port: Annotated[int, Field(ge=1024, le=65535)] = 9400
    """Port of the trainer's /metrics endpoint on the Ray head. Default: 9400."""


class EnvVar(_Model):
    """An extra environment variable for the trainer (plain values only; secrets go through
    secretKeyRef)."""

    name: Annotated[str, Field(min_length=1, max_length=256, pattern=ENV_NAME)]
    """Variable name."""

    value: Annotated[str | None, Field(max_length=4096)] = None
    """Plain value (set exactly one of value and secretKeyRef)."""

    secret_key_ref: SecretKeyRef | None = None
    """Read the value from a Secret key."""


# ------------------------------------------------------------------------------------------------ spec


class HeRLJobSpec(_Model):
    """A HeRL training run: model, data, reward, algorithm, resources and run policy."""

    preset: Preset = Preset.none
    """Start from a released recipe: ``official-if`` or ``official-medical`` reproduce the released scripts
    exactly, quirks included; fields you set still win. Default: none (official IF numbers, quirks fixed)."""

    engine: Literal["verl", "local"] = "verl"
    """What trains on the Ray cluster. ``verl``: veRL 0.9.1 + vLLM on the GPU workers. ``local``: the local
    engine (``herl train``) in one process on the Ray head, with no worker pods: CPU clusters, one-GPU
    jobs (resources.head.gpus) and CI. Same status, metrics, checkpoints and resume. Default: verl."""

    model: ModelSpec
    """The policy model."""

    data: DataSpec | None = None
    """Training data and token budgets."""

    reward: RewardSpec | None = None
    """The reward. Default: instruction-following."""

    algorithm: AlgorithmSpec | None = None
    """GRPO and hindsight settings."""

    resources: ResourcesSpec | None = None
    """Image, GPU node pool and sizes (cluster only)."""

    checkpoints: CheckpointSpec | None = None
    """Checkpoint storage and resume (cluster); the local engine writes under --out."""

    run_policy: RunPolicySpec | None = None
    """Retries, deadlines, budget, suspend."""

    queue: QueueSpec | None = None
    """Kueue queue and priority. Default: not queued."""

    metrics: MetricsSpec | None = None
    """Trainer metrics endpoint."""

    test_freq: Annotated[int, Field(ge=-1, le=1_000_000)] = 5
    """Validate every N steps (-1: never). Default: 5."""

    env: Annotated[list[EnvVar] | None, Field(max_length=64)] = None
    """Extra environment variables for the trainer. Default: none."""

    verl_overrides: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=512, pattern=VERL_OVERRIDE)]] | None,
        Field(max_length=128),
    ] = None
    """Extra veRL Hydra overrides (``key=value``, ``+key=value``, ``~key``), passed verbatim after ours as
    separate arguments (never through a shell). Keys the operator owns are refused. Default: none."""

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        # Presets are spec fragments in wire format (camelCase); they fill what the user left out.
        if isinstance(data, dict):
            from herl.api.presets import apply_preset

            return apply_preset(data)
        return data

    @model_validator(mode="after")
    def _cross_field(self) -> HeRLJobSpec:
        problems = check_spec(self)
        if problems:
            # ctx carries the problems one by one, so `herl validate` prints a line for each.
            raise PydanticCustomError(
                "herl_cross_field",
                "{summary}",
                {
                    "summary": "; ".join(f"{p.path}: {p.message}" for p in problems),
                    "problems": [(p.path, p.message) for p in problems],
                },
            )
        return self

    # Resolved views (None sub-objects → their defaults) so callers never test for None.
    @property
    def data_(self) -> DataSpec:
        return self.data or DataSpec()

    @property
    def reward_(self) -> RewardSpec:
        return self.reward or RewardSpec()

    @property
    def algorithm_(self) -> AlgorithmSpec:
        return self.algorithm or AlgorithmSpec()

    @property
    def hindsight_(self) -> HindsightSpec:
        return self.algorithm_.hindsight or HindsightSpec()

    @property
    def revision_(self) -> RevisionSpec:
        return self.hindsight_.revision or RevisionSpec()

    @property
    def bonus_(self) -> BonusSpec:
        return self.hindsight_.bonus or BonusSpec()

    @property
    def kl_loss_(self) -> KLLossSpec:
        return self.algorithm_.kl_loss or KLLossSpec()

    @property
    def rollout_(self) -> RolloutSpec:
        return self.algorithm_.rollout or RolloutSpec()

    @property
    def resources_(self) -> ResourcesSpec:
        return self.resources or ResourcesSpec()

    @property
    def checkpoints_(self) -> CheckpointSpec:
        return self.checkpoints or CheckpointSpec()

    @property
    def run_policy_(self) -> RunPolicySpec:
        return self.run_policy or RunPolicySpec()

    @property
    def metrics_(self) -> MetricsSpec:
        return self.metrics or MetricsSpec()

    @property
    def trainer_image(self) -> str:
        """The image the Ray pods run: spec.resources.image, else the engine's default."""
        return self.resources_.image or TRAINER_IMAGES[self.engine]

    def checkpoint_relpath(self, step: int) -> str:
        """Where the engine saves step ``step`` inside the checkpoint folder: veRL's ``global_step_N``, or
        the local engine's ``checkpoints/step_N`` (herl.engine.checkpoint; a test keeps them equal)."""
        return f"checkpoints/step_{step:06d}" if self.engine == "local" else f"global_step_{step}"

    @property
    def gpu_count(self) -> int:
        """GPUs one attempt holds: the worker pods' (engine verl) or the head's (engine local)."""
        res = self.resources_
        if self.engine == "local":
            return res.head.gpus if res.head else 0
        return res.workers * res.gpus_per_worker

    @property
    def revision_max_tokens(self) -> int:
        return self.revision_.max_tokens or self.data_.max_response_length


# ---------------------------------------------------------------------------------------------- status


class Condition(_Model):
    """A metav1.Condition."""

    type: Annotated[str, Field(max_length=316, pattern=r"^([a-z0-9.-]+/)?[A-Za-z][A-Za-z0-9_.-]*$")]
    status: Literal["True", "False", "Unknown"]
    reason: Annotated[str, Field(max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")]
    message: Annotated[str, Field(max_length=32768)] = ""
    last_transition_time: str
    observed_generation: Annotated[int | None, Field(ge=0)] = None


class Attempt(_Model):
    """One RayJob attempt (KubeRay forgets earlier attempts when it retries; we keep them)."""

    index: Annotated[int, Field(ge=0)]
    ray_job_name: str | None = None
    ray_cluster_name: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    result: Literal["Running", "Succeeded", "Failed", "Suspended", "Retried"] | None = None
    reason: str | None = None
    message: Annotated[str | None, Field(max_length=4096)] = None
    gpu_seconds: Annotated[float, Field(ge=0)] = 0.0


class Progress(_Model):
    """RL progress reported by the trainer."""

    step: Annotated[int, Field(ge=0)] = 0
    total_steps: Annotated[int | None, Field(ge=0)] = None
    epoch: Annotated[int | None, Field(ge=0)] = None
    reward_mean: float | None = None
    all_met_rate: float | None = None
    hindsight_success_rate: float | None = None
    updated_at: str | None = None


class CheckpointStatus(_Model):
    step: Annotated[int, Field(ge=0)]
    path: Annotated[str, Field(max_length=2048)]
    time: str | None = None


Phase = Literal[
    "Pending", "Queued", "Suspended", "Provisioning", "Running", "Retrying", "Succeeded", "Failed"
]


class HeRLJobStatus(_Model):
    """Observed state, written by the operator (and progress by the trainer)."""

    phase: Phase | None = None
    conditions: list[Condition] | None = None
    observed_generation: Annotated[int | None, Field(ge=0)] = None
    ray_job_name: str | None = None
    dashboard_url: str | None = Field(default=None, alias="dashboardURL")
    attempts: list[Attempt] | None = None
    attempt_count: Annotated[int, Field(ge=0)] = 0
    start_time: str | None = None
    completion_time: str | None = None
    gpu_hours: Annotated[float, Field(ge=0)] = 0.0
    progress: Progress | None = None
    last_checkpoint: CheckpointStatus | None = None
    message: Annotated[str | None, Field(max_length=4096)] = None


class ObjectMeta(BaseModel):
    """The part of metadata we check; everything else passes through."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=DNS1035)]
    namespace: Annotated[str | None, Field(max_length=63, pattern=DNS1123_LABEL)] = None


class HeRLJob(BaseModel):
    """A HeRLJob object as stored in Kubernetes (or in a file for ``herl train`` / ``herl validate``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    api_version: Literal["herl.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["HeRLJob"]
    metadata: ObjectMeta
    spec: HeRLJobSpec
    status: HeRLJobStatus | None = None


def is_valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and re.fullmatch(DNS1035, name) is not None
