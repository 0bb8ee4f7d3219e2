"""The policy update of the local engine: advantages, log-probs, and the optimiser steps.

Mini-batches are whole groups (veRL's split), each cut into micro-batches that fit the activation
budget (:func:`herl.engine.policy.split_for_budget`); the loss is :func:`herl.core.herl_policy_loss`
plus the KL term (:func:`herl.core.kl_penalty`) and the entropy bonus, aggregated over the mini-batch's
global token / sequence counts so gradient accumulation equals one pass over the mini-batch.

Mixed into :class:`herl.engine.trainer.LocalTrainer`, which owns the state named in
:class:`UpdateMixin`'s annotations (set by ``prepare``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from herl.core import TokenRow, aggregate, build_he_mask, grpo_advantages, herl_policy_loss, kl_penalty
from herl.engine import policy
from herl.engine.settings import EngineSettings

log = logging.getLogger(__name__)


def row_advantages(rows: Sequence[TokenRow]) -> list[float]:
    """GRPO advantage of each row over its group (``uid``), the HE row included.

    One scalar per row: GRPO normalises the summed token reward and broadcasts it over the response,
    so a ``(rows, 1)`` tensor of rewards gives exactly the per-token advantage.
    """
    rewards = torch.tensor([[r.reward] for r in rows], dtype=torch.float32)
    adv, _ = grpo_advantages(rewards, torch.ones_like(rewards), [r.uid for r in rows])
    return adv[:, 0].tolist()


class UpdateMixin:
    """Log-probs and the optimiser steps of the local engine."""

    settings: EngineSettings
    model: Any
    optimizer: torch.optim.Optimizer
    device: torch.device
    pad_id: int
    chunk_tokens: int
    autocast: torch.dtype | None
    act_model: policy.ActivationModel
    act_budget: int
    ckpt_mode: str
    _ckpt_on: bool

    def _logprobs(
        self, model: Any, rows: Sequence[TokenRow], *, with_entropy: bool
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per-row 1-D log-probs (and entropies) of each response under its own prompt, no grad."""
        lps: list[torch.Tensor] = []
        ents: list[torch.Tensor] = []
        mb = max(1, self.settings.micro_batch_rows)
        with torch.no_grad():
            for i in range(0, len(rows), mb):
                chunk = rows[i : i + mb]
                lp, ent, _mask = policy.response_log_probs(
                    model,
                    [r.prompt_ids for r in chunk],
                    [r.response_ids for r in chunk],
                    pad_id=self.pad_id,
                    temperature=self.settings.temperature,
                    chunk_tokens=self.chunk_tokens,
                    with_entropy=with_entropy,
                    autocast_dtype=self.autocast,
                )
                for j, r in enumerate(chunk):
                    n = len(r.response_ids)
                    lps.append(lp[j, :n].detach())
                    ents.append(ent[j, :n].detach())
        return lps, ents

    @property
    def single_update(self) -> bool:
        """One optimiser step per training step: every group fits one mini-batch, one PPO epoch."""
        s = self.settings
        return s.ppo_epochs == 1 and s.mini_batch_prompts >= s.batch_prompts

    def _update(
        self,
        rows: list[TokenRow],
        groups_rows: list[list[TokenRow]],
        adv_rows: list[float],
        old_lp: list[torch.Tensor] | None,
        ref_lp: list[torch.Tensor] | None,
        timing: dict[str, float],
        entropies: list[torch.Tensor],
    ) -> dict[str, float]:
        s = self.settings
        dev = self.device
        # Mini-batches are whole groups (mini_batch_prompts groups each), in order, like veRL's split.
        starts = []
        pos = 0
        for g in groups_rows:
            starts.append(pos)
            pos += len(g)
        starts.append(pos)
        sums: dict[str, float] = {}
        weights: dict[str, float] = {}
        n_updates = 0
        grad_norms: list[float] = []
        timing.setdefault("fwd", 0.0)
        timing.setdefault("bwd", 0.0)
        timing.setdefault("optim", 0.0)
        self.model.train()
        for _epoch in range(s.ppo_epochs):
            for gs in range(0, len(groups_rows), s.mini_batch_prompts):
                ge = min(gs + s.mini_batch_prompts, len(groups_rows))
                lo, hi = starts[gs], starts[ge]
                mb_rows = list(range(lo, hi))
                tokens = float(sum(len(rows[i].response_ids) for i in mb_rows))
                seqs = float(sum(1 for i in mb_rows if rows[i].response_ids))
                self.optimizer.zero_grad(set_to_none=True)
                for ms, sel, ckpt_on in self._micro_batches(rows, mb_rows):
                    chunk = [rows[i] for i in sel]
                    self._set_ckpt(ckpt_on)
                    t = time.perf_counter()
                    logp, ent, mask = policy.response_log_probs(
                        self.model,
                        [r.prompt_ids for r in chunk],
                        [r.response_ids for r in chunk],
                        pad_id=self.pad_id,
                        temperature=s.temperature,
                        chunk_tokens=self.chunk_tokens,
                        with_entropy=s.entropy_coeff > 0 or old_lp is None,
                        autocast_dtype=self.autocast,
                    )
                    width = logp.shape[1]
                    if old_lp is None:
                        old = logp.detach()
                        entropies.extend(ent[j, : len(r.response_ids)].detach() for j, r in enumerate(chunk))
                    else:
                        old = _pad_rows([old_lp[i] for i in sel], width, dev)
                    advm = torch.tensor([adv_rows[i] for i in sel], dtype=torch.float32, device=dev)
                    advm = advm.unsqueeze(-1) * mask.float()
                    he = build_he_mask(mask, [j for j, r in enumerate(chunk) if r.he])
                    loss, m = herl_policy_loss(
                        old, logp, advm, mask, he, s.loss, batch_num_tokens=tokens, global_batch_size=seqs
                    )
                    if ref_lp is not None:
                        ref = _pad_rows([ref_lp[i] for i in sel], width, dev)
                        kld = kl_penalty(logp, ref, s.kl_type)
                        kl_loss = aggregate(
                            kld,
                            mask.float(),
                            s.loss.loss_agg_mode,
                            batch_num_tokens=tokens,
                            global_batch_size=seqs,
                        )
                        loss = loss + s.kl_coef * kl_loss
                        m["kl_loss"] = float(kl_loss.detach()) * tokens / max(float(mask.sum()), 1.0)
                    if s.entropy_coeff > 0:
                        ent_loss = aggregate(
                            ent,
                            mask.float(),
                            s.loss.loss_agg_mode,
                            batch_num_tokens=tokens,
                            global_batch_size=seqs,
                        )
                        loss = loss - s.entropy_coeff * ent_loss
                    timing["fwd"] += time.perf_counter() - t
                    t = time.perf_counter()
                    loss.backward()
                    timing["bwd"] += time.perf_counter() - t
                    w = float(mask.sum())
                    m["pg_loss"] = float(loss.detach())  # already scaled to the mini-batch
                    for k, v in m.items():
                        if k == "pg_loss":
                            sums[k] = sums.get(k, 0.0) + v
                            weights[k] = weights.get(k, 0.0) + (1.0 if ms == 0 else 0.0)
                        else:
                            sums[k] = sums.get(k, 0.0) + v * w
                            weights[k] = weights.get(k, 0.0) + w
                t = time.perf_counter()
                gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), s.grad_clip)
                gnf = float(gn)
                grad_norms.append(gnf)
                if math.isfinite(gnf):
                    self.optimizer.step()
                else:
                    log.warning("non-finite grad norm %s: optimizer step skipped", gnf)
                    self.optimizer.zero_grad(set_to_none=True)
                n_updates += 1
                timing["optim"] += time.perf_counter() - t
        out = {f"actor/{k}": (sums[k] / weights[k] if weights.get(k) else 0.0) for k in sums}
        out["actor/grad_norm"] = float(np.mean(grad_norms)) if grad_norms else 0.0
        out["actor/lr"] = s.lr
        out["actor/updates"] = float(n_updates)
        return out

    def _set_ckpt(self, on: bool) -> None:
        if on != self._ckpt_on:
            if on:
                self.model.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs={"use_reentrant": False}
                )
            else:
                self.model.gradient_checkpointing_disable()
            self._ckpt_on = on

    def _micro_batches(self, rows: list[TokenRow], mb_rows: list[int]) -> list[tuple[int, list[int], bool]]:
        """(index, rows, checkpointing) per micro-batch: the spec's micro-batches, split to fit the
        activation budget (see :func:`policy.split_for_budget`)."""
        out: list[tuple[int, list[int], bool]] = []
        for ms in range(0, len(mb_rows), self.settings.micro_batch_rows):
            sel = mb_rows[ms : ms + self.settings.micro_batch_rows]
            if self.ckpt_mode in ("0", "1"):
                out.append((len(out), sel, self.ckpt_mode == "1"))
                continue
            lengths = [(len(rows[i].prompt_ids), len(rows[i].response_ids)) for i in sel]
            for piece, ckpt_on in policy.split_for_budget(lengths, self.act_model, self.act_budget):
                out.append((len(out), [sel[j] for j in piece], ckpt_on))
        return out


def _pad_rows(rows: Sequence[torch.Tensor], width: int, device: torch.device) -> torch.Tensor:
    out = torch.zeros((len(rows), width), dtype=torch.float32, device=device)
    for i, r in enumerate(rows):
        out[i, : r.numel()] = r.to(device)
    return out
