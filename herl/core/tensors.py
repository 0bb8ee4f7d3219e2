"""Tensor helpers that turn stage outcomes into training tensors (shared by both engines).

Shapes follow veRL: ``(batch, response_length)`` for token rewards and masks; rows are batch rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from herl.core.types import GroupOutcome


def spread_bonus(
    token_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    rows: Sequence[int] | torch.Tensor,
    deltas: Sequence[float] | torch.Tensor,
) -> torch.Tensor:
    """Add Δ_r spread evenly over row r's response tokens; returns a new tensor.

    The row's summed token reward moves by exactly Δ_r (up to float rounding), negative Δ included,
    which is what GRPO's outcome scalar (the token sum) sees. Rows without response tokens are left
    unchanged (the released code skips them). A row listed twice receives both deltas.
    """
    out = token_rewards.clone()
    rows_t = torch.as_tensor(rows, dtype=torch.long, device=out.device).reshape(-1)
    if rows_t.numel() == 0:
        return out
    d = torch.as_tensor(deltas, dtype=out.dtype, device=out.device).reshape(-1)
    if d.numel() != rows_t.numel():
        raise ValueError(f"{rows_t.numel()} rows but {d.numel()} deltas")
    mask = response_mask[rows_t].to(out.dtype)
    count = mask.sum(dim=-1, keepdim=True)
    per_token = torch.where(count > 0, d.unsqueeze(-1) / count.clamp(min=1), torch.zeros_like(count))
    out.index_add_(0, rows_t, per_token * mask)
    return out


def build_he_mask(response_mask: torch.Tensor, he_rows: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """1 exactly on the HE rows' response tokens (those rows' response_mask), 0 elsewhere."""
    he = torch.zeros_like(response_mask)
    rows_t = torch.as_tensor(he_rows, dtype=torch.long, device=response_mask.device).reshape(-1)
    if rows_t.numel():
        he[rows_t] = response_mask[rows_t]
    return he


def he_response_tokens(
    token_ids: Sequence[int],
    max_len: int,
    eos_id: int,
    pad_id: int,
    *,
    append_eos: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded response ids and mask for an HE row.

    The revision is truncated to ``max_len``; with ``append_eos`` an EOS is written right after the
    text when there is room and the text does not already end with one. The mask covers the text and
    that EOS (released ``response_mask_mode=eos``: the model learns to stop after a revision).
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    ids = list(token_ids[:max_len])
    if append_eos and len(ids) < max_len and (not ids or ids[-1] != eos_id):
        ids.append(eos_id)
    n = len(ids)
    out = torch.full((max_len,), pad_id, dtype=torch.long)
    mask = torch.zeros(max_len, dtype=torch.long)
    if n:
        out[:n] = torch.tensor(ids, dtype=torch.long)
        mask[:n] = 1
    return out, mask


def outcome_bonus_rows(
    outcomes: Sequence[GroupOutcome], group_rows: Sequence[Sequence[int]]
) -> tuple[list[int], list[float]]:
    """Flatten the outcomes' BR deltas into (batch rows, deltas) for :func:`spread_bonus`.

    ``group_rows[g][i]`` is the batch row of rollout i of group g (engines own the layout).
    """
    rows: list[int] = []
    deltas: list[float] = []
    for oc in outcomes:
        for ci, delta in oc.bonus:
            rows.append(group_rows[oc.group][ci])
            deltas.append(delta)
    return rows, deltas
