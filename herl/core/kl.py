"""The KL-to-reference estimators the loss can add (``spec.algorithm.klLoss.type``).

veRL has these as ``core_algos.kl_penalty``, but the local engine must not import veRL (seconds of
imports, Ray, the plugin hook), so the one copy the local engine uses lives here; the veRL plugin never
calls it, veRL's own loss adds its KL. ``tests/core/test_core_verl_parity.py`` holds the two to the
same values and gradients for every type the spec allows.
"""

from __future__ import annotations

import torch

from herl.errors import UserError

KL_TYPES = ("kl", "abs", "mse", "low_var_kl")


def kl_penalty(logp: torch.Tensor, ref: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-token estimate of KL(π_θ ‖ π_ref) from the two log-probs (Schulman's k1 / |k1| / k2 / k3)."""
    diff = logp - ref
    if kind == "kl":
        return diff
    if kind == "abs":
        return diff.abs()
    if kind == "mse":
        return 0.5 * diff.square()
    if kind == "low_var_kl":
        # k3 = exp(ref − logp) − (ref − logp) − 1, clamped both ways as veRL does for stability
        kl = (ref - logp).clamp(-20, 20)
        return (kl.exp() - kl - 1).clamp(-10, 10)
    raise UserError(f"spec.algorithm.klLoss.type {kind!r} is not supported (one of {', '.join(KL_TYPES)})")
