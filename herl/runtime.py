"""How models run on this machine: the device, the dtype weights load in, and CPU threads.

One place for these decisions, because ``herl train`` and ``herl eval`` must agree on them:

- **float32 on CPU.** Checkpoints such as SmolLM2 are stored in bfloat16, and ``dtype="auto"`` keeps
  that. CPUs without native bf16 arithmetic (AVX2-only x86, most laptops) emulate it: a 4 × 600-token
  prefill of SmolLM2-135M took 38.1 s in bf16 against 7.9 s in float32 on our machines, and a whole
  evaluation ran for over 20 minutes without finishing. float32 costs only memory, which small models
  have to spare on a CPU. On a GPU the checkpoint's own dtype (``auto``) is what it was trained in.
- **Threads.** One torch thread per core, but ONE when the machine is already busy (see
  :func:`default_threads`); ``HERL_THREADS=N`` overrides.
- **Denormals** are flushed to zero on CPU (a slow path on x86; nothing a float32 run can notice).

Only the standard library at import time: torch loads when a function needs it.
"""

from __future__ import annotations

import os
from typing import Any


def pick_device(device: str | None = None) -> str:
    """``device`` as given, else ``cuda`` when a GPU is visible, else ``cpu``."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_dtype(device: str, requested: str = "auto") -> Any:
    """The dtype to load weights in on ``device``: float32 on CPU whatever the checkpoint says (see the
    module doc), ``requested`` elsewhere (``auto`` keeps the checkpoint's dtype)."""
    import torch

    if str(device).startswith("cpu"):
        return torch.float32
    if requested in ("auto", None):
        return "auto"
    return getattr(torch, requested)


def default_threads() -> int:
    """One torch thread per core, but ONE when the machine is already busy: intra-op threads that
    compete with other processes for the same cores run several times slower than a single thread
    (measured here: SmolLM2-135M generation 12.8 s with 1 thread vs 40.7 s with 2 at load 4.9 on 2 cores)."""
    from herl.rewards.batch import available_cores

    cores = available_cores()
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return 1 if load >= cores else cores


def configure_cpu(threads: int | None = None) -> int:
    """Set torch's intra-op threads (``threads``, else ``HERL_THREADS``, else :func:`default_threads`) and
    flush denormals (~1.7x slower generation measured here without it); returns the thread count."""
    import torch

    n = threads or int(os.environ.get("HERL_THREADS", "0")) or default_threads()
    torch.set_num_threads(n)
    torch.set_flush_denormal(True)
    return n
