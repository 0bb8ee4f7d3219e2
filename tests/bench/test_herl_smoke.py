"""The GPU smoke's verdict and prerequisite check, on CPU (bench/gpu/herl_smoke.py has not run on a GPU).

The verdict is fed veRL-format step logs (``step:N - key:value - ...``), a good pair and one broken
variant per requirement; the prerequisite check runs for real on this machine and with fakes.
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu" / "herl_smoke.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("herl_smoke", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


smoke = _load()

GRPO_STEP = {"critic/score/mean": 0.25, "actor/pg_loss": -0.01, "timing_s/step": 10.0}
HERL_STEP = {
    "critic/score/mean": 0.3,
    "actor/pg_loss": -0.02,
    "actor/on_pg_loss": -0.015,
    "actor/off_pg_loss": -0.005,
    "actor/he_frac": 0.1,
    "timing_s/step": 14.0,
    "herl/prompts_attempted": 3.0,
    "herl/revisions_generated": 3.0,
    "herl/kept": 2.0,
    "herl/he_rows": 2.0,
}


def _log(steps: dict[int, dict[str, float]]) -> str:
    """Step lines as veRL's console logger prints them, among other log noise."""
    lines = ["(TaskRunner pid=1) starting"]
    for s, m in steps.items():
        lines.append(f"(TaskRunner pid=1) step:{s} - " + " - ".join(f"{k}:{v}" for k, v in m.items()))
    return "\n".join(lines) + "\n"


def _runs(
    grpo: dict[int, dict[str, float]] | None = None, herl: dict[int, dict[str, float]] | None = None
) -> tuple[object, object]:
    grpo = grpo if grpo is not None else {s: dict(GRPO_STEP) for s in (1, 2, 3)}
    herl = herl if herl is not None else {s: dict(HERL_STEP) for s in (1, 2, 3)}
    return smoke.RunLog(smoke.parse_steps(_log(grpo)), 0), smoke.RunLog(smoke.parse_steps(_log(herl)), 0)


def test_good_logs_pass_and_print_every_required_fact() -> None:
    verdict = smoke.judge(*_runs())
    assert verdict.ok, verdict.failures
    text = "\n".join(verdict.lines)
    assert "herl: 9 revisions generated, 6 kept, 6 rows written with he_mask" in text
    assert "HE tokens reached the loss (actor/he_frac > 0) on 3 of the 3 steps" in text
    assert "grpo step 2: critic/score/mean=0.25" in text and "herl step 3: critic/score/mean=0.3" in text
    assert "GRPO 10.00s, HeRL 14.00s, HeRL/GRPO ratio 1.40" in text


def _herl_with(step: int, **changes: float | None) -> dict[int, dict[str, float]]:
    steps = {s: dict(HERL_STEP) for s in (1, 2, 3)}
    for key, value in changes.items():
        key = key.replace("__", "/")
        if value is None:
            steps[step].pop(key)
        else:
            steps[step][key] = value
    return steps


def _all_steps(**changes: float | None) -> dict[int, dict[str, float]]:
    steps = _herl_with(1, **changes)
    for s in (2, 3):
        steps[s] = _herl_with(s, **changes)[s]
    return steps


@pytest.mark.parametrize(
    ("herl", "needle"),
    [
        # what the old check accepted: herl/prompts_attempted is there, but nothing was revised
        (
            _all_steps(herl__revisions_generated=0.0, herl__kept=0.0, herl__he_rows=0.0),
            "no revision generated",
        ),
        (_all_steps(herl__kept=0.0, herl__he_rows=0.0), "no revision kept"),
        (_all_steps(herl__he_rows=None), "no row written with he_mask"),
        (_herl_with(2, actor__he_frac=0.0), "herl step 2: wrote 2 HE rows but actor/he_frac = 0"),
        (
            _herl_with(3, actor__off_pg_loss=None),
            "herl step 3: wrote 2 HE rows but the loss logged no actor/off_pg_loss",
        ),
        (_herl_with(2, actor__pg_loss=math.nan), "herl step 2: actor/pg_loss = nan (not finite)"),
        (_herl_with(1, actor__off_pg_loss=math.inf), "herl step 1: actor/off_pg_loss = inf (not finite)"),
        (_herl_with(1, actor__pg_loss=None), "herl step 1: no actor/pg_loss"),
        (_herl_with(3, critic__score__mean=None), "herl step 3: reward metric critic/score/mean is MISSING"),
        (_all_steps(timing_s__step=None), "no HeRL/GRPO step-time ratio"),
        ({1: dict(HERL_STEP), 2: dict(HERL_STEP)}, "herl: rc=0, logged steps [1, 2] of 1..3"),
    ],
)
def test_each_broken_requirement_fails_with_its_reason(
    herl: dict[int, dict[str, float]], needle: str
) -> None:
    verdict = smoke.judge(*_runs(herl=herl))
    assert not verdict.ok
    assert any(needle in why for why in verdict.failures), verdict.failures


def test_a_failed_grpo_run_fails_the_smoke() -> None:
    grpo, herl = _runs()
    verdict = smoke.judge(smoke.RunLog(grpo.steps, 1), herl)
    assert [why for why in verdict.failures if why.startswith("grpo:")] == [
        "grpo: rc=1, logged steps [1, 2, 3] of 1..3"
    ]
    nan_reward = {s: dict(GRPO_STEP, **{"critic/score/mean": math.nan}) for s in (1, 2, 3)}
    assert (
        "grpo step 1: reward metric critic/score/mean is nan" in smoke.judge(*_runs(grpo=nan_reward)).failures
    )


def test_prerequisites_with_fakes_list_every_missing_piece() -> None:
    def importer(name: str) -> object:
        if name in {"vllm", "transfer_queue"}:
            raise ModuleNotFoundError(f"No module named '{name}'")
        return object()

    missing = smoke.missing_prerequisites(importer, cuda_devices=lambda: 0, plugin_registered=lambda: False)
    assert missing == [
        "python module vllm (ModuleNotFoundError: No module named 'vllm')",
        "python module transfer_queue (ModuleNotFoundError: No module named 'transfer_queue')",
        "a CUDA device (torch sees none: a CPU build of torch, or no NVIDIA GPU/driver)",
        "herl's verl.plugins entry point (pip install --no-deps -e . from the repository root)",
    ]

    class Algos:
        @staticmethod
        def get_policy_loss_fn(name: str) -> object:
            return object()

    everything = smoke.missing_prerequisites(
        lambda name: Algos if name.endswith("core_algos") else object(),
        cuda_devices=lambda: 1,
        plugin_registered=lambda: True,
    )
    assert everything == []


def test_prerequisite_check_on_this_machine_names_what_is_missing() -> None:
    """The real check, as the device tool would run it: here (no GPU, no vllm) it must refuse."""
    env = dict(os.environ, PYTHONSAFEPATH="1")
    res = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )
    import torch

    has_vllm = importlib.util.find_spec("vllm") is not None
    has_cuda = torch.cuda.is_available()
    if has_vllm and has_cuda:  # a GPU machine with everything: the check lets the smoke run
        assert res.returncode == 0, res.stderr
        assert "prerequisites: all present" in res.stdout
        return
    assert res.returncode == smoke.EXIT_MISSING == 3, (res.returncode, res.stdout, res.stderr)
    assert ("MISSING: python module vllm (" in res.stderr) == (not has_vllm), res.stderr
    assert ("MISSING: a CUDA device" in res.stderr) == (not has_cuda), res.stderr
    assert "prerequisite(s) missing" in res.stderr
