"""GRPO outcome advantage over each group, the HE row included.

A_j = (r_j − mean_g) / (std_g + ε), with the unbiased std and ε = 1e-6, broadcast to every response
token. r_j is the row's summed token reward (so a BR Δ spread over tokens counts in full). As in
veRL, a group of one gets mean 0 and std 1. Vectorised: no Python loop over rows.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import torch


def _group_ids(index: Sequence[Hashable] | np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    if isinstance(index, torch.Tensor) and not index.is_floating_point():
        return torch.unique(index.to(device), return_inverse=True)[1]
    ids: dict[Hashable, int] = {}
    seq = index.tolist() if isinstance(index, np.ndarray | torch.Tensor) else index
    return torch.tensor([ids.setdefault(u, len(ids)) for u in seq], dtype=torch.long, device=device)


def grpo_advantages(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Sequence[Hashable] | np.ndarray | torch.Tensor,
    *,
    eps: float = 1e-6,
    norm_by_std: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (advantages, returns), both ``(batch, response_length)`` and equal, like veRL.

    ``index`` gives each row's group (veRL's ``uid``); rows of one group need not be contiguous.
    """
    with torch.no_grad():
        scores = token_level_rewards.sum(dim=-1).to(torch.float64)
        gid = _group_ids(index, scores.device)
        if gid.numel() != scores.numel():
            raise ValueError(f"index has {gid.numel()} entries for {scores.numel()} rows")
        n_groups = int(gid.max().item()) + 1 if gid.numel() else 0
        count = torch.zeros(n_groups, dtype=torch.float64, device=scores.device).index_add_(
            0, gid, torch.ones_like(scores)
        )
        total = torch.zeros_like(count).index_add_(0, gid, scores)
        mean = total / count
        sq = torch.zeros_like(count).index_add_(0, gid, (scores - mean[gid]) ** 2)
        std = torch.sqrt(sq / (count - 1).clamp(min=1))
        single = count == 1
        mean = torch.where(single, torch.zeros_like(mean), mean)
        std = torch.where(single, torch.ones_like(std), std)
        adv = scores - mean[gid]
        if norm_by_std:
            adv = adv / (std[gid] + eps)
        out = adv.to(token_level_rewards.dtype).unsqueeze(-1) * response_mask.to(token_level_rewards.dtype)
    return out, out
