"""HeRLJob → veRL 0.9.1 Hydra overrides (a pure function; golden-tested against the released scripts).

``job_to_verl_overrides(job)`` returns the argv tail for ``python -m verl.trainer.main_ppo``: one list
element per override, ours first and ``spec.verlOverrides`` appended verbatim after them (Hydra
applies overrides in order, so the user's win). Every string value is quoted for Hydra's grammar
(:func:`hydra_value`), so paths with commas, brackets, quotes or ``${`` stay one literal value; the
list is passed to ``os.execv``, never through a shell.

The HeRL stage's own settings travel under the ``herl`` top-level key (``+herl.*``), where the HeRL
trainer (``trainer.v1.trainer_mode=herl_sync``) reads them; see :func:`herl_keys`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from herl.api.model import HeRLJob, HeRLJobSpec

TRAINER_MODE_HERL = "herl_sync"
TRAINER_MODE_GRPO = "sync"
LOSS_MODE_HERL = "herl_mixpolicy"
PROJECT_NAME = "herl"

_PLAIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./\-]*$")
_RESERVED = {"true", "false", "null", "none", "nan", "inf", "-inf", "+inf"}


def hydra_quote(text: str) -> str:
    """Quote ``text`` as one Hydra string literal that OmegaConf resolves back to exactly ``text``.

    Single quotes are escaped, backslashes that would precede a quote (an escaped quote, or the
    closing one) are doubled as Hydra's grammar requires, and ``${`` is escaped so that OmegaConf
    does not treat it as an interpolation.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            j = i
            while j < n and text[j] == "\\":
                j += 1
            run = j - i
            # backslashes right before a quote, before the closing quote, or before our `\${` escape
            if j == n or text[j] == "'" or text.startswith("${", j):
                out.append("\\" * (2 * run))
            else:
                out.append("\\" * run)
            i = j
            continue
        if ch == "'":
            out.append("\\'")
        elif text.startswith("${", i):
            out.append("\\${")
            i += 2
            continue
        else:
            out.append(ch)
        i += 1
    return "'" + "".join(out) + "'"


def hydra_value(value: Any) -> str:
    """Render a Python value as a Hydra override value (strings quoted unless plainly safe)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"non-finite value {value!r} cannot be a veRL setting")
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _RESERVED and not _looks_numeric(text):
        return text
    return hydra_quote(text)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def reward_function_path() -> str:
    """Absolute path of the veRL custom reward function file (veRL loads it by file path)."""
    from herl.verl_plugin import reward

    return str(Path(reward.__file__).resolve())


def herl_keys(spec: HeRLJobSpec, job_name: str) -> list[tuple[str, Any]]:
    """The ``herl.*`` settings read by the HeRL trainer (added with ``+``: veRL has no such keys).

    Values come from :func:`herl.core.config.hindsight_config_from_spec`, the mapping the local engine
    uses too. Revision sampling is resolved here: with ``useRolloutSampling`` the revision temperature,
    top-p and length are null, meaning "the rollout's own" (the released sync-rollout behaviour).
    """
    from herl.core.config import hindsight_config_from_spec

    cfg = hindsight_config_from_spec(spec)
    quirk = cfg.revision_use_rollout_sampling
    return [
        ("herl.job_name", job_name),
        ("herl.seed", spec.algorithm_.seed),
        ("herl.hindsight.enabled", cfg.enabled),
        ("herl.hindsight.threshold", float(cfg.threshold)),
        ("herl.hindsight.candidate_limit", cfg.candidate_limit),
        ("herl.hindsight.revisions_per_candidate", cfg.revisions_per_candidate),
        ("herl.hindsight.train_under", cfg.train_under),
        ("herl.hindsight.incorporation", cfg.incorporation),
        ("herl.hindsight.fallback", cfg.fallback),
        ("herl.hindsight.prompt_template", cfg.prompt_template),
        ("herl.hindsight.chat_template", cfg.chat_template),
        ("herl.hindsight.gamma", float(cfg.gamma)),
        ("herl.hindsight.bonus_enabled", cfg.bonus_enabled),
        ("herl.hindsight.bonus_alpha", float(cfg.bonus_alpha)),
        ("herl.hindsight.seeded_slots", cfg.seeded_slots),
        ("herl.revision.use_rollout_sampling", quirk),
        ("herl.revision.temperature", None if quirk else float(cfg.revision_temperature)),
        ("herl.revision.top_p", None if quirk else float(cfg.revision_top_p)),
        ("herl.revision.max_tokens", None if quirk else cfg.revision_max_tokens),
        ("herl.metrics.enabled", spec.metrics_.enabled),
        ("herl.metrics.port", spec.metrics_.port),
    ]


def _reward_kwargs(spec: HeRLJobSpec) -> list[tuple[str, Any]]:
    rw = spec.reward_
    out: list[tuple[str, Any]] = [("reward.custom_reward_function.reward_kwargs.reward_type", rw.type)]
    if rw.type == "rubric-judge" and rw.judge is not None:
        j = rw.judge
        prefix = "reward.custom_reward_function.reward_kwargs."
        out += [
            (prefix + "base_url", j.endpoint),
            (prefix + "model", j.model),
            (prefix + "temperature", float(j.temperature)),
            (prefix + "max_tokens", j.max_tokens),
            (prefix + "concurrency", j.concurrency),
            (prefix + "timeout_s", float(j.timeout_seconds)),
            (prefix + "max_retries", j.max_retries),
            (prefix + "backoff_base_s", float(j.retry_backoff_seconds)),
            (prefix + "pitfall_policy", j.pitfall_policy),
            (prefix + "api_key_env", "HERL_JUDGE_API_KEY"),
        ]
    return out


def verl_settings(spec: HeRLJobSpec, *, job_name: str, checkpoint_dir: str) -> list[tuple[str, Any]]:
    """(key, value) pairs of our overrides, in emission order. Keys starting with ``+`` are additions."""
    a, d, m, res, ck = spec.algorithm_, spec.data_, spec.model, spec.resources_, spec.checkpoints_
    kl, ro, hs = spec.kl_loss_, spec.rollout_, spec.hindsight_
    herl_on = hs.enabled
    train = d.train if d.train is not None else ""
    has_val = d.val is not None
    settings: list[tuple[str, Any]] = [
        ("algorithm.adv_estimator", "grpo"),
        ("algorithm.use_kl_in_reward", False),
        ("algorithm.norm_adv_by_std_in_grpo", True),
        ("data.train_files", train),
        ("data.val_files", d.val if has_val else train),
        ("data.train_batch_size", a.train_batch_size),
        ("data.max_prompt_length", d.max_prompt_length),
        ("data.max_response_length", d.max_response_length),
        ("data.reward_fn_key", "data_source"),
        ("data.seed", a.seed),
        ("actor_rollout_ref.model.path", m.path),
    ]
    if m.tokenizer_path is not None:
        settings.append(("actor_rollout_ref.model.tokenizer_path", m.tokenizer_path))
    if m.chat_template is not None:
        settings.append(("actor_rollout_ref.model.custom_chat_template", m.chat_template))
    settings += [
        ("actor_rollout_ref.model.trust_remote_code", m.trust_remote_code),
        ("actor_rollout_ref.actor.optim.lr", float(a.learning_rate)),
        ("actor_rollout_ref.actor.optim.weight_decay", float(a.weight_decay)),
        ("actor_rollout_ref.actor.optim.clip_grad", float(a.grad_clip)),
        ("actor_rollout_ref.actor.grad_clip", float(a.grad_clip)),
        ("actor_rollout_ref.actor.ppo_mini_batch_size", a.mini_batch_size),
        ("actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu", a.micro_batch_size_per_gpu),
        ("actor_rollout_ref.actor.ppo_epochs", a.ppo_epochs),
        ("actor_rollout_ref.actor.use_kl_loss", kl.enabled),
        ("actor_rollout_ref.actor.kl_loss_coef", float(kl.coef)),
        ("actor_rollout_ref.actor.kl_loss_type", kl.type),
        ("actor_rollout_ref.actor.entropy_coeff", float(a.entropy_coeff)),
        ("actor_rollout_ref.actor.clip_ratio", float(a.clip_ratio)),
        ("actor_rollout_ref.actor.clip_ratio_low", float(a.clip_ratio)),
        ("actor_rollout_ref.actor.clip_ratio_high", float(a.clip_ratio)),
        ("actor_rollout_ref.actor.clip_ratio_c", float(a.dual_clip_c)),
        ("actor_rollout_ref.actor.loss_agg_mode", a.loss_agg_mode),
        ("actor_rollout_ref.actor.policy_loss.loss_mode", LOSS_MODE_HERL if herl_on else "vanilla"),
        ("actor_rollout_ref.actor.data_loader_seed", a.seed),
        ("actor_rollout_ref.actor.fsdp_config.dtype", m.dtype),
        ("actor_rollout_ref.rollout.name", "vllm"),
        ("actor_rollout_ref.rollout.n", a.group_size),
        ("actor_rollout_ref.rollout.temperature", float(ro.temperature)),
        ("actor_rollout_ref.rollout.top_p", float(ro.top_p)),
        ("actor_rollout_ref.rollout.dtype", m.dtype),
        ("actor_rollout_ref.rollout.tensor_model_parallel_size", res.tensor_parallel),
        ("actor_rollout_ref.rollout.gpu_memory_utilization", float(res.gpu_memory_utilization)),
        ("actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu", a.micro_batch_size_per_gpu),
        ("actor_rollout_ref.rollout.seed", a.seed),
        ("actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu", a.micro_batch_size_per_gpu),
        ("reward.reward_manager.name", "naive"),
        ("reward.custom_reward_function.path", reward_function_path()),
        ("reward.custom_reward_function.name", "compute_score"),
    ]
    settings += [("+" + k, v) for k, v in _reward_kwargs(spec)]
    settings += [
        ("trainer.use_v1", True),
        ("trainer.v1.trainer_mode", TRAINER_MODE_HERL if herl_on else TRAINER_MODE_GRPO),
        ("trainer.project_name", PROJECT_NAME),
        ("trainer.experiment_name", job_name),
        ("trainer.logger", ["console"]),
        ("trainer.nnodes", res.workers),
        ("trainer.n_gpus_per_node", res.gpus_per_worker),
        ("trainer.total_epochs", a.epochs),
    ]
    if a.total_steps is not None:
        settings.append(("trainer.total_training_steps", a.total_steps))
    settings += [
        ("trainer.save_freq", ck.save_every_steps),
        ("trainer.test_freq", spec.test_freq if has_val else -1),
        ("trainer.max_actor_ckpt_to_keep", ck.keep_last),
        ("trainer.default_local_dir", checkpoint_dir),
        ("trainer.resume_mode", ck.resume),
    ]
    if not has_val:
        settings.append(("trainer.val_before_train", False))
    settings += [("+" + k, v) for k, v in herl_keys(spec, job_name)]
    return settings


def default_checkpoint_dir(job: HeRLJob) -> str:
    """Where checkpoints go when the operator does not say (``HERL_CHECKPOINT_DIR`` wins over this)."""
    ns = job.metadata.namespace or "default"
    ck = job.spec.checkpoints
    if ck is not None and ck.pvc is not None:
        sub = ck.pvc.sub_path or f"herl/{ns}/{job.metadata.name}"
        return f"/checkpoints/{sub}"
    return f"/checkpoints/herl/{ns}/{job.metadata.name}"


def format_overrides(settings: Iterable[tuple[str, Any]]) -> list[str]:
    return [f"{key}={hydra_value(value)}" for key, value in settings]


def job_to_verl_overrides(job: HeRLJob, *, checkpoint_dir: str | None = None) -> list[str]:
    """The complete veRL argv tail for ``job``: our overrides, then ``spec.verlOverrides`` verbatim.

    Pure: no environment, no files. ``checkpoint_dir`` defaults to :func:`default_checkpoint_dir`
    (the launcher passes ``HERL_CHECKPOINT_DIR`` when the operator sets it).
    """
    spec = job.spec  # presets are already merged in by the model's validator
    ckdir = checkpoint_dir if checkpoint_dir is not None else default_checkpoint_dir(job)
    ours = format_overrides(verl_settings(spec, job_name=job.metadata.name, checkpoint_dir=ckdir))
    return ours + list(spec.verl_overrides or ())
