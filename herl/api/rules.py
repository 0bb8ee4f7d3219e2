"""Cross-field rules of a HeRLJob spec, declared once and enforced twice.

Each :class:`Rule` carries a CEL expression (emitted into the CRD as ``x-kubernetes-validations`` on
``spec``, so the API server rejects bad objects at admission) and a Python predicate (used by the
pydantic model, i.e. by ``herl validate``, the operator and the trainer). Tests evaluate every CEL
expression with a CEL library on the same valid and invalid specs and require the two to agree.

CEL sees the object as stored: fields the user left out are absent, and a preset has not been applied
(the CRD has no ``default:`` values, see herl/api/model.py). So a CEL template names fields as
``{data.maxPromptLength}``, and :func:`herl.api.crd.cel_value` expands that into "the user's value if
set, else the preset's, else the model default" — the same effective value the Python side reads after
validation.

This module imports the model only for type hints: the model calls :func:`check_spec` from its
validator, and the expansion, which needs the model's defaults, lives with the CRD generator. So the
import graph runs one way, model → rules (tests/test_import_cycles.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from herl.api.model import HeRLJobSpec

# veRL keys the operator and trainer set from the spec; an override would break resume or placement.
RESERVED_OVERRIDE_KEYS: tuple[str, ...] = (
    "trainer.default_local_dir",
    "trainer.resume_mode",
    "trainer.nnodes",
    "trainer.n_gpus_per_node",
)
_RESERVED_RE = (
    r"^(\+{1,2}|~)?(" + "|".join(k.replace(".", r"\.") for k in RESERVED_OVERRIDE_KEYS) + r")(=.*)?$"
)


@dataclass(frozen=True)
class Problem:
    """One violated rule: ``path`` is the field (``spec.data.train``), ``message`` what is allowed."""

    path: str
    message: str


@dataclass(frozen=True)
class Rule:
    id: str
    path: str  # spec-relative, dotted camelCase
    message: str
    cel: str  # template; {a.b} expands to the effective value of spec.a.b
    holds: Callable[[HeRLJobSpec], bool]
    reason: str = "FieldValueInvalid"


def cel_has_chain(path: str) -> str:
    parts = path.split(".")
    return " && ".join("has(self." + ".".join(parts[: i + 1]) + ")" for i in range(len(parts)))


def _prompt_fits(s: HeRLJobSpec) -> bool:
    d = s.data_
    if not s.hindsight_.enabled or d.allow_hindsight_truncation:
        return True
    return d.max_prompt_length >= d.max_instruction_length + d.max_response_length + d.hindsight_prompt_margin


def _budget_covers_attempt(s: HeRLJobSpec) -> bool:
    rp = s.run_policy_
    if rp.total_budget_seconds is None or rp.attempt_deadline_seconds is None:
        return True
    return rp.total_budget_seconds >= rp.attempt_deadline_seconds


def _no_reserved_override(s: HeRLJobSpec) -> bool:
    import re

    return not any(re.match(_RESERVED_RE, o) for o in s.verl_overrides or ())


RULES: tuple[Rule, ...] = (
    Rule(
        "train-data-required",
        "data.train",
        "spec.data.train is required unless spec.data.format is synthetic-if",
        "{data.format} == 'synthetic-if' || (has(self.data) && has(self.data.train))",
        lambda s: s.data_.format == "synthetic-if" or s.data_.train is not None,
        "FieldValueRequired",
    ),
    Rule(
        "synthetic-only-for-synthetic-format",
        "data.synthetic",
        "spec.data.synthetic is only allowed when spec.data.format is synthetic-if",
        "!(has(self.data) && has(self.data.synthetic)) || {data.format} == 'synthetic-if'",
        lambda s: s.data_.synthetic is None or s.data_.format == "synthetic-if",
        "FieldValueForbidden",
    ),
    Rule(
        "mini-batch-divides-batch",
        "algorithm.miniBatchSize",
        "spec.algorithm.miniBatchSize must divide spec.algorithm.trainBatchSize (and so be at most it)",
        "{algorithm.trainBatchSize} % {algorithm.miniBatchSize} == 0",
        lambda s: s.algorithm_.train_batch_size % s.algorithm_.mini_batch_size == 0,
    ),
    Rule(
        "judge-required-for-rubric",
        "reward.judge",
        "spec.reward.judge (with an endpoint) is required when spec.reward.type is rubric-judge",
        "{reward.type} != 'rubric-judge' || (has(self.reward) && has(self.reward.judge))",
        lambda s: s.reward_.type != "rubric-judge" or s.reward_.judge is not None,
        "FieldValueRequired",
    ),
    Rule(
        "hindsight-prompt-fits",
        "data.maxPromptLength",
        "spec.data.maxPromptLength must be >= maxInstructionLength + maxResponseLength + hindsightPromptMargin "
        "when hindsight is enabled (the hindsight prompt holds the instruction and the draft); raise it, or set "
        "spec.data.allowHindsightTruncation to accept left-truncated hindsight prompts",
        "!{algorithm.hindsight.enabled} || {data.allowHindsightTruncation} || {data.maxPromptLength} >= "
        "{data.maxInstructionLength} + {data.maxResponseLength} + {data.hindsightPromptMargin}",
        _prompt_fits,
    ),
    Rule(
        "revision-fits-response",
        "algorithm.hindsight.revision.maxTokens",
        "spec.algorithm.hindsight.revision.maxTokens must be <= spec.data.maxResponseLength (the kept revision "
        "is trained as a response)",
        "!(" + cel_has_chain("algorithm.hindsight.revision.maxTokens") + ") || "
        "self.algorithm.hindsight.revision.maxTokens <= {data.maxResponseLength}",
        lambda s: s.revision_.max_tokens is None or s.revision_.max_tokens <= s.data_.max_response_length,
    ),
    Rule(
        "tensor-parallel-divides-gpus",
        "resources.tensorParallel",
        "spec.resources.tensorParallel must divide spec.resources.gpusPerWorker",
        "{resources.gpusPerWorker} % {resources.tensorParallel} == 0",
        lambda s: s.resources_.gpus_per_worker % s.resources_.tensor_parallel == 0,
    ),
    Rule(
        "local-engine-one-process",
        "resources.workers",
        "spec.resources.workers must be 1 with spec.engine local: the local engine trains in one process on "
        "the Ray head and no worker pods are created (use spec.engine verl for several GPU workers)",
        "{engine} != 'local' || {resources.workers} == 1",
        lambda s: s.engine != "local" or s.resources_.workers == 1,
        "FieldValueForbidden",
    ),
    Rule(
        "head-gpus-local-only",
        "resources.head.gpus",
        "spec.resources.head.gpus must be 0 with spec.engine verl: veRL runs on the GPU workers and keeps "
        "the head GPU-free (spec.resources.head.gpus is for spec.engine local)",
        "{engine} == 'local' || {resources.head.gpus} == 0",
        lambda s: s.engine == "local" or s.resources_.head is None or s.resources_.head.gpus == 0,
        "FieldValueForbidden",
    ),
    Rule(
        "checkpoint-storage-exclusive",
        "checkpoints",
        "set at most one of spec.checkpoints.pvc and spec.checkpoints.uri",
        "!(has(self.checkpoints) && has(self.checkpoints.pvc) && has(self.checkpoints.uri))",
        lambda s: not (s.checkpoints_.pvc is not None and s.checkpoints_.uri is not None),
        "FieldValueForbidden",
    ),
    Rule(
        "budget-covers-attempt",
        "runPolicy.totalBudgetSeconds",
        "spec.runPolicy.totalBudgetSeconds must be >= spec.runPolicy.attemptDeadlineSeconds",
        "!("
        + cel_has_chain("runPolicy.totalBudgetSeconds")
        + " && has(self.runPolicy.attemptDeadlineSeconds)) || "
        "self.runPolicy.totalBudgetSeconds >= self.runPolicy.attemptDeadlineSeconds",
        _budget_covers_attempt,
    ),
    Rule(
        "no-reserved-overrides",
        "verlOverrides",
        "spec.verlOverrides must not set " + ", ".join(RESERVED_OVERRIDE_KEYS) + " (the operator owns them: "
        "use spec.checkpoints and spec.resources)",
        "!has(self.verlOverrides) || self.verlOverrides.all(o, !o.matches('"
        + _RESERVED_RE.replace("\\", "\\\\").replace("{", "{{").replace("}", "}}")
        + "'))",
        _no_reserved_override,
        "FieldValueForbidden",
    ),
    Rule(
        "env-value-or-secret",
        "env",
        "each spec.env entry sets exactly one of value and secretKeyRef",
        "!has(self.env) || self.env.all(e, has(e.value) != has(e.secretKeyRef))",
        lambda s: all((e.value is not None) != (e.secret_key_ref is not None) for e in s.env or ()),
    ),
)

# Root-level rule: object metadata can only be checked from the top of the schema.
# The apiserver itself only requires a DNS-1123 *subdomain* (dots allowed); the derived RayJob, its
# Service and pods need a DNS-1035 *label*, so the name must be one too.
NAME_RULE = {
    "rule": "self.metadata.name.size() <= 40 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
    "message": "metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', starting with a "
    "letter, ending with a letter or digit) of at most 40 characters (derived RayJob names must fit 47)",
    "reason": "FieldValueInvalid",
}


def check_spec(spec: HeRLJobSpec) -> list[Problem]:
    return [Problem(f"spec.{r.path}", r.message) for r in RULES if not r.holds(spec)]
