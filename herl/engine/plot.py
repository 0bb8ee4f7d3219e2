"""The reward-curve PNG written at the end of a local run (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def reward_figure(history: Sequence[Mapping[str, Any]], title: str) -> Any:
    """Reward mean, all-met rate and hindsight success rate per step (one panel, integer steps), with a
    star on the steps where a revision was kept. Returns the matplotlib Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    steps = [int(h["training/global_step"]) for h in history]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    for key, label, style in (
        ("critic/score/mean", "reward mean", "-o"),
        ("herl/all_met_rate", "all constraints met", "-s"),
        ("herl/success_rate", "hindsight success rate", "--^"),
    ):
        vals = [h.get(key) for h in history]
        if any(v is not None for v in vals) and not (key == "herl/success_rate" and not any(vals)):
            ax.plot(steps, [float("nan") if v is None else v for v in vals], style, label=label, markersize=3)
    # Steps where a revision joined its group as an HE row: where hindsight changed what was trained on.
    kept = [
        (st, h.get("critic/score/mean")) for st, h in zip(steps, history, strict=True) if h.get("herl/kept")
    ]
    if kept:
        ax.plot(
            [k[0] for k in kept],
            [float("nan") if k[1] is None else k[1] for k in kept],
            "*",
            color="crimson",
            markersize=11,
            label="revision kept (HE row)",
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_reward_curve(history: Sequence[Mapping[str, Any]], path: Path, title: str) -> Path:
    """:func:`reward_figure` saved as a PNG at ``path``."""
    import matplotlib.pyplot as plt

    fig = reward_figure(history, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
