"""Progress of an evaluation's generation rounds: prompts done, tokens/s and ETA, on stderr.

An IFEval run on a CPU takes many minutes per round; without a line on screen nobody can tell a slow run
from a hung one. Generators that batch (``TransformersGenerator``) report after every batch through a
``progress`` callback; others (vLLM, test fakes) are counted when the whole call returns.
"""

from __future__ import annotations

import inspect
import sys
import time
from typing import Any

from herl.evaluation.generator import Generator


def _accepts_progress(generator: Generator) -> bool:
    try:
        return "progress" in inspect.signature(generator.generate).parameters
    except (TypeError, ValueError):
        return False


def generate_with_progress(
    generator: Generator,
    prompts: list[str],
    *,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    seed: int,
    label: str,
    enabled: bool = True,
) -> list[str]:
    """``generator.generate`` with a tqdm bar named ``label`` (prompts, new tokens/s, ETA)."""
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(prompts), desc=label, unit="prompt", file=sys.stderr, disable=not enabled, mininterval=2.0
    )
    t0 = time.monotonic()
    tokens = [0]

    def on_batch(done: int, new_tokens: int) -> None:
        tokens[0] += new_tokens
        rate = tokens[0] / max(time.monotonic() - t0, 1e-9)
        bar.set_postfix(tok_s=f"{rate:.1f}", refresh=False)
        bar.update(done)

    kwargs: dict[str, Any] = {"progress": on_batch} if _accepts_progress(generator) else {}
    try:
        out = generator.generate(prompts, temperature, top_p, max_new_tokens, seed, **kwargs)
        if not kwargs:
            bar.update(len(prompts))
    finally:
        bar.close()
    return out
