"""``trainer.v1.trainer_mode=herl_sync``: veRL's v1 sync trainer plus the hindsight stage.

Where the stage runs, and why here: in the v1 sync trainer a step is
``replay_buffer.sample`` (the rollouts, already scored by the reward loop inside the agent loop) →
``on_sample_end`` (puts the vLLM replicas to sleep) → balance → old log-prob → ref → advantage →
update. The stage must come after the rewards and before the old log-probs, and it needs the rollout
replicas awake to generate the revisions. The one point that satisfies both without re-implementing
``_step_once`` is the replay buffer's ``sample``: :class:`HeRLTrainerSync` wraps the buffer veRL
builds (``_build_replay_buffer``) so that, for the train partition, the sampled batch goes through
the stage before ``sample`` returns. Its metrics ride along in the sampler's metric dict, which
``_step_once`` merges into the step metrics. Nothing else of the trainer changes.

The stage itself (:mod:`herl.verl_plugin.stage`, on top of :mod:`herl.core`) reads the batch rows
from TransferQueue, generates every revision in one batched fan-out through the same
:class:`LLMServerClient` the agent loop uses (current weights = π_old), scores them with the same
reward loop workers (under the ORIGINAL prompt), and writes the changed rows and every row's
``he_mask`` back to TransferQueue, where the actor's outer loss finds them.

The outer loss (:func:`herl.verl_plugin.loss.herl_ppo_loss`) is installed on the actor workers with
the ``set_loss_fn`` RPC right after the workers start.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import functools
import logging
import time
import uuid
from typing import Any

import numpy as np
import torch
import transfer_queue as tq
from tensordict import TensorDict
from transfer_queue import KVBatchMeta
from verl import DataProto
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils.tensordict_utils import list_of_dict_to_tensordict

from herl.core import slot_rng
from herl.verl_plugin.loss import HE_MASK_KEY, LOSS_MODE, HeRLLossParams, herl_ppo_loss
from herl.verl_plugin.overrides import TRAINER_MODE_HERL
from herl.verl_plugin.reward import result_from_extra_info, to_extra_info
from herl.verl_plugin.settings import herl_seed, hindsight_config_from_verl, metrics_settings
from herl.verl_plugin.stage import RolloutSampling, Row, TokenRevision, run_stage_on_rows

log = logging.getLogger(__name__)

_DATASET_FIELDS = ("data_source", "reward_model", "extra_info", "raw_prompt")


def _rows_of(value: Any, n: int) -> list[Any]:
    """Per-row items of a TransferQueue field: nested/dense tensors or a non-tensor stack."""
    if isinstance(value, torch.Tensor):
        return list(value.unbind(0)) if value.is_nested else [value[i] for i in range(n)]
    if hasattr(value, "tolist") and not isinstance(value, list):
        try:
            return list(value.tolist())
        except (TypeError, ValueError):
            pass
    return list(value)


def _run_async(coro_factory: Any) -> Any:
    """Run a coroutine to completion from sync code, even if this thread already has a loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(coro_factory())).result()


class _HindsightSampler:
    """Wraps veRL's replay buffer: ``sample`` on the train partition runs the hindsight stage."""

    def __init__(self, inner: Any, trainer: HeRLTrainerSync) -> None:
        self._inner = inner
        self._trainer = trainer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def sample(self, global_steps: int, partition_id: str, batch_size: int) -> tuple[KVBatchMeta, dict]:
        batch, metrics = self._inner.sample(
            global_steps=global_steps, partition_id=partition_id, batch_size=batch_size
        )
        if partition_id != "train" or len(batch) == 0:
            return batch, metrics
        t0 = time.perf_counter()
        batch, herl_metrics = self._trainer.hindsight_step(batch, global_steps)
        herl_metrics["timing_s/herl_stage"] = time.perf_counter() - t0
        return batch, {**metrics, **herl_metrics}


class HeRLTrainerSync(PPOTrainerSync):
    """veRL's colocated sync trainer with the HeRL stage and loss (registered as ``herl_sync``)."""

    # ----------------------------------------------------------------- wiring into veRL

    def _build_replay_buffer(self) -> Any:
        # Everything in veRL that branches on the mode must see plain "sync" (replay-buffer class,
        # TransferQueue checkpointing, prompt persistence); the registry name only selects this class.
        self.trainer_mode = "sync"
        self.herl_cfg = hindsight_config_from_verl(self.config)
        return _HindsightSampler(super()._build_replay_buffer(), self)

    def _setup(self) -> None:
        if self.config.get("distillation", {}).get("enabled", False):
            raise ValueError("herl_sync does not support on-policy distillation")
        super()._setup()
        if self.herl_cfg.enabled and self.reward_loop_manager.reward_loop_worker_handles is None:
            raise ValueError(
                "HeRL needs the rewards at sampling time: use a rule/remote reward (reward.reward_model.enable="
                "false) or reward.reward_model.enable_resource_pool=true"
            )
        self._install_loss()

    def _install_loss(self) -> None:
        """Replace the actor's outer loss with herl_ppo_loss when loss_mode is herl_mixpolicy."""
        from verl.utils.config import omega_conf_to_dataclass

        actor = self.config.actor_rollout_ref.actor
        if actor.policy_loss.get("loss_mode", "vanilla") != LOSS_MODE:
            log.warning(
                "herl_sync with loss_mode=%s: HE rows are trained with that loss, without he_mask",
                actor.policy_loss.get("loss_mode"),
            )
            return
        actor_config = omega_conf_to_dataclass(actor)
        params = HeRLLossParams(gamma=self.herl_cfg.gamma)
        self.actor_rollout_wg.set_loss_fn(
            functools.partial(herl_ppo_loss, config=actor_config, params=params)
        )
        log.info("herl: installed herl_ppo_loss on the actor workers (gamma=%s)", params.gamma)

    def on_train_begin(self) -> None:
        super().on_train_begin()
        enabled, port = metrics_settings(self.config)
        self._publisher = None
        if enabled:
            try:
                from herl.metrics.publisher import default_publisher

                self._publisher = default_publisher()
                self._publisher.serve(port=port, addr="0.0.0.0")
            except Exception:  # metrics must never stop training
                log.warning("herl: Prometheus publisher not started", exc_info=True)

    def on_train_end(self) -> None:
        super().on_train_end()
        if getattr(self, "_publisher", None) is not None:
            # KubeRay deletes the cluster when the job ends: stay until the operator read the final step.
            from herl.train import final_read_timeout

            self._publisher.wait_final_read(final_read_timeout())

    def _compute_metrics(
        self, batch: Any, metrics: dict, timing_raw: dict, global_steps: int, epoch: int
    ) -> Any:
        out = super()._compute_metrics(batch, metrics, timing_raw, global_steps=global_steps, epoch=epoch)
        publish_step_metrics(getattr(self, "_publisher", None), metrics, global_steps)
        return out

    # ----------------------------------------------------------------- the stage

    def _rollout_sampling(self) -> RolloutSampling:
        r = self.config.actor_rollout_ref.rollout
        return RolloutSampling(
            temperature=float(r.temperature),
            top_p=float(r.top_p),
            top_k=int(r.top_k),
            response_length=int(r.response_length),
            logprobs=bool(r.calculate_log_probs),
        )

    def hindsight_step(self, batch: KVBatchMeta, global_steps: int) -> tuple[KVBatchMeta, dict[str, float]]:
        """Read the sampled rows, run the stage, write the result back; returns the new batch meta."""
        cfg = self.herl_cfg
        if not cfg.enabled:
            return batch, {}
        rollout = self.config.actor_rollout_ref.rollout
        fields = ["prompts", "responses", "response_mask", "rm_scores", "uid", "extra_fields"]
        if rollout.calculate_log_probs:
            fields.append("rollout_log_probs")
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        n = len(batch.keys)
        cols = {f: _rows_of(data[f], n) for f in fields}
        ds_cols: dict[str, list[Any]] = {}
        for f in _DATASET_FIELDS:  # one by one: a dataset may lack extra_info or raw_prompt
            if f == "raw_prompt":
                continue
            try:
                got = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=[f])
            except (ValueError, KeyError):
                continue
            ds_cols[f] = _rows_of(got[f], n)
        rows: list[Row] = []
        for i, key in enumerate(batch.keys):
            scores = cols["rm_scores"][i].float().tolist()
            extra_fields = cols["extra_fields"][i] or {}
            info = extra_fields.get("reward_extra_info", {}) if isinstance(extra_fields, dict) else {}
            rows.append(
                Row(
                    key=key,
                    uid=str(cols["uid"][i]),
                    prompt_ids=cols["prompts"][i].tolist(),
                    response_ids=cols["responses"][i].tolist(),
                    response_mask=cols["response_mask"][i].long().tolist(),
                    token_scores=scores,
                    result=result_from_extra_info(info, sum(scores)),
                    rollout_log_probs=(
                        cols["rollout_log_probs"][i].float().tolist() if "rollout_log_probs" in cols else None
                    ),
                    extra={
                        "tag": batch.tags[i],
                        "extra_fields": extra_fields,
                        **{f: ds_cols[f][i] for f in ds_cols},
                    },
                )
            )
        rng = slot_rng(herl_seed(self.config), global_steps) if cfg.seeded_slots else None
        out, report = run_stage_on_rows(
            rows,
            tokenizer=self.tokenizer,
            generate_tokens=self._generate_tokens,
            score_revisions=self._score_revisions,
            cfg=cfg,
            rng=rng,
            rollout=self._rollout_sampling(),
            max_prompt_length=int(rollout.prompt_length),
            max_response_length=int(rollout.response_length),
        )
        new_meta = self._write_back(batch, out)
        return new_meta, dict(report.metrics)

    def _generate_tokens(self, prompt_ids: list[list[int]], params: dict[str, Any]) -> list[TokenRevision]:
        """ONE batched fan-out of every revision through the rollout replicas (awake: before on_sample_end)."""
        client = self.get_llm_client()

        async def run() -> list[Any]:
            return await asyncio.gather(
                *[
                    client.generate(uuid.uuid4().hex, prompt_ids=ids, sampling_params=dict(params))
                    for ids in prompt_ids
                ]
            )

        outs = _run_async(run)
        return [TokenRevision(token_ids=list(o.token_ids), log_probs=o.log_probs) for o in outs]

    def _score_revisions(self, items: list[tuple[Row, list[int], str]]) -> list[Any]:
        """Score revisions with the job's reward loop, each under its group's ORIGINAL prompt."""
        if not items:
            return []
        pad = (
            self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id
        )
        p_len = max(len(r.prompt_ids) for r, _, _ in items)
        r_len = max(max(len(ids) for _, ids, _ in items), 1)
        n = len(items)
        prompts = torch.full((n, p_len), pad, dtype=torch.long)
        responses = torch.full((n, r_len), pad, dtype=torch.long)
        attn = torch.zeros((n, p_len + r_len), dtype=torch.long)
        non_tensor: dict[str, list[Any]] = {k: [] for k in _DATASET_FIELDS if k != "raw_prompt"}
        for i, (row, ids, _text) in enumerate(items):
            lp = len(row.prompt_ids)
            prompts[i, p_len - lp :] = torch.tensor(row.prompt_ids, dtype=torch.long)
            attn[i, p_len - lp : p_len] = 1
            if ids:
                responses[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                attn[i, p_len : p_len + len(ids)] = 1
            for k in non_tensor:
                value = copy.deepcopy(row.extra.get(k))
                non_tensor[k].append({} if value is None and k == "extra_info" else value)
        nt = {}
        for k, v in non_tensor.items():
            arr = np.empty(n, dtype=object)
            arr[:] = v
            nt[k] = arr
        dp = DataProto(
            batch=TensorDict(
                {"prompts": prompts, "responses": responses, "attention_mask": attn}, batch_size=[n]
            ),
            non_tensor_batch=nt,
        )
        scored = self.reward_loop_manager.compute_rm_score(dp)
        totals = scored.batch["rm_scores"].sum(dim=-1).tolist()
        keys = scored.meta_info.get("reward_extra_keys", [])
        results = []
        for i in range(n):
            info = {k: scored.non_tensor_batch[k][i] for k in keys}
            results.append(result_from_extra_info(info, float(totals[i])))
        return results

    def _write_back(self, batch: KVBatchMeta, rows: list[Row]) -> KVBatchMeta:
        """Write he_mask (every row), new token rows, BR-shaped rewards; return the new batch meta."""
        pid = batch.partition_id
        # 1. he_mask for every row (the actor's outer loss reads it from each micro-batch).
        he_fields = [
            {HE_MASK_KEY: torch.tensor([int(r.he) * m for m in r.response_mask], dtype=torch.int64)}
            for r in rows
            if not r.appended
        ]
        tq.kv_batch_put(
            keys=[r.key for r in rows if not r.appended],
            partition_id=pid,
            fields=list_of_dict_to_tensordict(he_fields),
        )
        # 2. rows whose tokens changed (HE rows, duplicates): every per-token field.
        changed = [r for r in rows if r.changed and not r.appended]
        if changed:
            tq.kv_batch_put(
                keys=[r.key for r in changed],
                partition_id=pid,
                fields=list_of_dict_to_tensordict([self._token_fields(r) for r in changed]),
                tags=[self._tag(r) for r in changed],
            )
        # 2b. appended rows are new keys: every field of their group's row, then the new tokens.
        appended = [r for r in rows if r.appended]
        if appended:
            src = tq.kv_batch_get(keys=[r.source_key for r in appended], partition_id=pid)
            cols = {k: _rows_of(src[k], len(appended)) for k in src.keys()}  # noqa: SIM118  (TensorDict: iteration yields rows)
            full = []
            for j, r in enumerate(appended):
                base = {k: v[j] for k, v in cols.items()}
                base.update(self._token_fields(r))
                full.append(base)
            tq.kv_batch_put(
                keys=[r.key for r in appended],
                partition_id=pid,
                fields=list_of_dict_to_tensordict(full),
                tags=[self._tag(r) for r in appended],
            )
        # 3. BR-shaped rows that keep their tokens: only rm_scores.
        shaped = [r for r in rows if r.scores_changed and not r.changed]
        if shaped:
            tq.kv_batch_put(
                keys=[r.key for r in shaped],
                partition_id=pid,
                fields=list_of_dict_to_tensordict(
                    [{"rm_scores": torch.tensor(r.token_scores, dtype=torch.float32)} for r in shaped]
                ),
            )
        new = KVBatchMeta(partition_id=pid, keys=[r.key for r in rows], tags=[self._tag(r) for r in rows])
        new.extra_info.update(copy.deepcopy(batch.extra_info))
        return new

    def _token_fields(self, r: Row) -> dict[str, Any]:
        prompts = torch.tensor(r.prompt_ids, dtype=torch.int64)
        responses = torch.tensor(r.response_ids, dtype=torch.int64)
        input_ids = torch.cat([prompts, responses])
        mask = torch.tensor(r.response_mask, dtype=torch.int64)
        extra_fields = copy.deepcopy(r.extra.get("extra_fields") or {})
        extra_fields["reward_extra_info"] = to_extra_info(r.result)
        fields: dict[str, Any] = {
            "prompts": prompts,
            "responses": responses,
            "input_ids": input_ids,
            "position_ids": torch.arange(input_ids.numel(), dtype=torch.int64),
            "response_mask": mask,
            "loss_mask": mask.clone(),
            "rm_scores": torch.tensor(r.token_scores, dtype=torch.float32),
            HE_MASK_KEY: mask * int(r.he),
            "extra_fields": extra_fields,
        }
        if r.rollout_log_probs is not None:
            fields["rollout_log_probs"] = torch.tensor(r.rollout_log_probs, dtype=torch.float32)
        return fields

    @staticmethod
    def _tag(r: Row) -> dict[str, Any]:
        tag = dict(r.extra.get("tag") or {})
        tag.update(
            prompt_len=len(r.prompt_ids),
            response_len=len(r.response_ids),
            seq_len=len(r.prompt_ids) + len(r.response_ids),
        )
        tag.setdefault("status", "success")
        return tag


def publish_step_metrics(publisher: Any, metrics: dict[str, Any], step: int) -> None:
    """Hand one step's metric dict to herl.metrics' Prometheus publisher (never raises)."""
    if publisher is None:
        return
    try:
        publisher.publish(metrics, step=step)
    except Exception:
        log.warning("herl: publishing step metrics failed", exc_info=True)


def register() -> None:
    """Register ``herl_sync`` with veRL's v1 trainer registry (idempotent). Called by the plugin's
    import hook once veRL's v1 package has loaded, and at the end of this module: when THIS module is
    what first imports v1 (tests, tools), the hook fires while this module is still executing, before
    ``HeRLTrainerSync`` exists, and only this second call can register it."""
    from verl.trainer.ppo.v1 import trainer_base

    if trainer_base.TRAINER_REGISTRY.get(TRAINER_MODE_HERL) is not HeRLTrainerSync:
        trainer_base.register_trainer(TRAINER_MODE_HERL)(HeRLTrainerSync)


register()
