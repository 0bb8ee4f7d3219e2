"""Local checkpoints: model + tokenizer (a loadable transformers dir), optimizer, RNG states, step, cursor.

Each checkpoint is written into a temporary sibling and renamed into ``<out>/checkpoints/step_NNNNNN``
with a marker file, so an interrupted save never looks complete and ``--resume`` always finds the newest
finished one. Only the newest ``keep_last`` are kept.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from herl.assets import MARKER, build_atomically

PREFIX = "step_"


def checkpoint_name(step: int) -> str:
    """The folder of step ``step`` under :func:`checkpoint_root` (the operator reports the same path:
    HeRLJobSpec.checkpoint_relpath, kept equal by a test)."""
    return f"{PREFIX}{step:06d}"


def checkpoint_root(out: Path) -> Path:
    return out / "checkpoints"


def list_checkpoints(out: Path) -> list[tuple[int, Path]]:
    """Finished checkpoints, oldest first."""
    root = checkpoint_root(out)
    found = []
    if root.is_dir():
        for p in root.iterdir():
            if p.is_dir() and p.name.startswith(PREFIX) and (p / MARKER).exists():
                try:
                    found.append((int(p.name[len(PREFIX) :]), p))
                except ValueError:
                    continue
    return sorted(found)


def latest_checkpoint(out: Path) -> Path | None:
    found = list_checkpoints(out)
    return found[-1][1] if found else None


def rng_states() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.random.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_states(state: dict[str, Any]) -> None:
    torch.random.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    out: Path,
    step: int,
    model: Any,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write checkpoint ``step`` atomically and prune old ones; returns its directory."""
    root = checkpoint_root(out)
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)

    def build(tmp: Path) -> None:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save({**trainer_state, "step": step, "rng": rng_states()}, tmp / "trainer_state.pt")

    build_atomically(final, build)
    for _, old in list_checkpoints(out)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_trainer_state(path: Path) -> dict[str, Any]:
    return torch.load(path / "trainer_state.pt", weights_only=False)


def load_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))


class CheckpointMixin:
    """Saving and resuming the local engine's training state (mixed into ``LocalTrainer``).

    A checkpoint holds the model, tokenizer, optimizer, RNG states and the trainer's step, data cursor
    and metric history, so a resumed run continues exactly where the saved one stopped.
    """

    out: Path
    spec: Any
    name: str
    settings: Any
    model: Any
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    step: int
    cursor: int
    history: list[dict[str, Any]]
    last_checkpoint: Path | None

    def _save(self, step: int) -> Path:
        state = {"cursor": self.cursor, "seed": self.settings.seed, "job": self.name, "history": self.history}
        path = save_checkpoint(
            self.out,
            step,
            self.model,
            self.tokenizer,
            self.optimizer,
            state,
            keep_last=self.spec.checkpoints_.keep_last,
        )
        self.last_checkpoint = path
        return path

    def _restore(self, path: Path) -> None:
        """Optimizer, step, cursor, history and RNG states from checkpoint ``path`` (weights load apart)."""
        load_optimizer(path, self.optimizer)
        state = load_trainer_state(path)
        self.step = int(state["step"])
        self.cursor = int(state["cursor"])
        self.history = list(state.get("history", []))
        set_rng_states(state["rng"])
