"""GPU smoke of the veRL plugin: 3 GRPO steps and 3 HeRL steps on a tiny random Qwen2, through veRL + vLLM.

Everything is built locally (the GPU machine has no internet): a byte-level BPE tokenizer trained
in-process, a random Qwen2 (hidden 64), a 32-prompt parquet with checkable constraints and an
offline reward (``herl_smoke_reward.py`` beside this file). The runs go through the real launcher
(:func:`herl.train.build_argv` from a HeRLJob), so the entry-point plugin, the ``herl_sync`` trainer,
the set_loss_fn outer loss and the TransferQueue write-back are all exercised.

    python bench/gpu/herl_smoke.py --work /tmp/herl_smoke     # prints metrics and the step-time ratio
    python bench/gpu/herl_smoke.py --check                    # only the prerequisites

Before anything is built it checks its prerequisites (:func:`missing_prerequisites`) and exits 3 with
one line per missing piece. The verdict (:func:`judge`) is a pure function of the two runs' parsed
step logs, unit-tested on CPU (tests/bench/test_herl_smoke.py). Exit code 0 only when both runs
finished every step and the HeRL run shows the algorithm really ran: revisions generated, HE rows
kept and written with he_mask, HE tokens seen by the loss, finite losses, the reward metric on every
step, and a measurable HeRL/GRPO step-time ratio. Not run on a GPU yet (see bench/gpu/README.md).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

HERE = Path(__file__).resolve().parent
STEPS = 3
WORDS = ["ocean", "river", "forest", "mountain", "desert", "city", "garden", "winter", "summer", "night"]
TOPICS = ["the sea", "a journey", "a friend", "rain", "music", "a library", "coffee", "the moon"]
HERL_KEYS = (
    "herl/prompts_attempted",
    "herl/revisions_generated",
    "herl/success_rate",
    "herl/over_prev_best",
    "herl/kept",
    "herl/fallbacks",
    "herl/he_rows",
    "herl/bonus_mean",
    "herl/he_token_frac",
    "actor/he_frac",
    "actor/on_pg_loss",
    "actor/off_pg_loss",
)
#: What the GPU machine must have; each is imported (not just looked up), so a broken install counts too.
REQUIRED_MODULES = (
    "torch",
    "vllm",
    "verl",
    "ray",
    "transfer_queue",
    "tensordict",
    "transformers",
    "tokenizers",
    "pandas",
    "pyarrow",
    "hydra",
    "pydantic",
    "yaml",
)
EXIT_MISSING = 3
REWARD_KEY = "critic/score/mean"
STEP_TIME_KEY = "timing_s/step"
#: Loss metrics: each one present must be finite; the first must be on every step of both runs.
LOSS_KEYS = ("actor/pg_loss", "actor/on_pg_loss", "actor/off_pg_loss")
#: Written by our loss on every HeRL step (veRL's vanilla loss, used by the GRPO run, does not).
HERL_LOSS_KEYS = ("actor/on_pg_loss", "actor/off_pg_loss", "actor/he_frac")


def _cuda_devices() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _plugin_registered() -> bool:
    return any(ep.name == "herl" for ep in entry_points(group="verl.plugins"))


def missing_prerequisites(
    import_module: Callable[[str], object] = importlib.import_module,
    cuda_devices: Callable[[], int] = _cuda_devices,
    plugin_registered: Callable[[], bool] = _plugin_registered,
) -> list[str]:
    """One line per missing prerequisite of the smoke (empty when it can run); every one is reported.

    The probes are parameters so the check itself is tested on CPU with fakes, besides the real run.
    """
    missing = []
    for mod in REQUIRED_MODULES:
        try:
            import_module(mod)
        except Exception as exc:  # ImportError, or a CUDA build that fails at import: both mean "cannot run"
            missing.append(f"python module {mod} ({exc.__class__.__name__}: {exc})")
    if not any(m.startswith("python module torch ") for m in missing) and cuda_devices() < 1:
        missing.append("a CUDA device (torch sees none: a CPU build of torch, or no NVIDIA GPU/driver)")
    if not plugin_registered():
        missing.append(
            "herl's verl.plugins entry point (pip install --no-deps -e . from the repository root)"
        )
    elif not any(m.startswith("python module verl ") for m in missing):
        try:
            core_algos = import_module("verl.trainer.ppo.core_algos")
            core_algos.get_policy_loss_fn("herl_mixpolicy")  # type: ignore[attr-defined]
        except Exception as exc:
            missing.append(f"the herl_mixpolicy loss after import verl ({exc.__class__.__name__}: {exc})")
    return missing


def build_tokenizer(out: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [
        f"Write a few sentences about {t}. Use the word {w}. Keep it under {n} words and end with a period."
        for t in TOPICS
        for w in WORDS
        for n in (20, 30, 40)
    ]
    corpus += [
        "You act as a revision assistant. Satisfied: Unmet: Draft: Instruction: Candidate: none",
        "Reply with the revised answer and nothing else. user assistant system",
    ] * 10
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        corpus,
        trainer=trainers.BpeTrainer(
            vocab_size=1024,
            special_tokens=["<|pad|>", "<|im_end|>", "<|im_start|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    fast.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    fast.save_pretrained(out)
    return fast


def build_model(out: Path, tok) -> None:
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        torch_dtype="bfloat16",
    )
    model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    ).save_pretrained(out)


def build_data(out: Path, n: int = 32) -> Path:
    import pandas as pd

    rng = random.Random(0)
    rows = []
    for i in range(n):
        topic, word, limit = rng.choice(TOPICS), rng.choice(WORDS), rng.choice((20, 30, 40))
        text = f"Write a few sentences about {topic}. Use the word {word}. Keep it under {limit} words."
        gt = {"word": word, "max_words": limit}
        rows.append(
            {
                "data_source": "herl_smoke",
                "prompt": [{"role": "user", "content": text}],
                "ability": "instruction_following",
                "reward_model": {"style": "rule", "ground_truth": json.dumps(gt)},
                "extra_info": {"index": i, "question": text},
            }
        )
    path = out / "train.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


def job_yaml(work: Path, model: Path, data: Path, hindsight: bool) -> Path:
    import yaml

    spec = {
        "model": {"path": str(model)},
        "data": {
            "train": str(data),
            "maxPromptLength": 1024,
            "maxResponseLength": 48,
            "maxInstructionLength": 64,
            "hindsightPromptMargin": 512,
        },
        "algorithm": {
            "groupSize": 4,
            "trainBatchSize": 4,
            "miniBatchSize": 4,
            "microBatchSizePerGpu": 8,
            "learningRate": 1e-5,
            "epochs": 1,
            "totalSteps": STEPS,
            "seed": 1,
            "klLoss": {"enabled": False},
            "hindsight": {"enabled": hindsight, "revision": {"temperature": 0.3, "maxTokens": 48}},
        },
        "resources": {"workers": 1, "gpusPerWorker": 1, "tensorParallel": 1, "gpuMemoryUtilization": 0.35},
        "checkpoints": {"saveEverySteps": 1000, "resume": "disable"},
        "testFreq": -1,
        "metrics": {"enabled": False},
    }
    name = "smoke-herl" if hindsight else "smoke-grpo"
    path = work / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {"apiVersion": "herl.dev/v1alpha1", "kind": "HeRLJob", "metadata": {"name": name}, "spec": spec}
        )
    )
    return path


def extra_overrides() -> list[str]:
    """Small-scale knobs on top of the translated job (appended last, so they win)."""
    return [
        f"reward.custom_reward_function.path={HERE / 'herl_smoke_reward.py'}",
        "reward.custom_reward_function.name=compute_score",
        "reward.num_workers=1",
        "trainer.save_freq=-1",
        "trainer.val_before_train=false",
        "actor_rollout_ref.rollout.enforce_eager=true",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "actor_rollout_ref.rollout.max_num_seqs=64",
        "actor_rollout_ref.model.use_remove_padding=false",
        "actor_rollout_ref.model.enable_gradient_checkpointing=false",
        "actor_rollout_ref.actor.use_torch_compile=false",
        "actor_rollout_ref.ref.use_torch_compile=false",
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
    ]


STEP_LINE = re.compile(r"step:(\d+) - (.*)$")


def parse_steps(log: str) -> dict[int, dict[str, float]]:
    steps: dict[int, dict[str, float]] = {}
    for line in log.splitlines():
        m = STEP_LINE.search(line)
        if not m:
            continue
        vals: dict[str, float] = {}
        for item in m.group(2).split(" - "):
            k, _, v = item.rpartition(":")
            try:
                vals[k.strip()] = float(v)
            except ValueError:
                continue
        steps[int(m.group(1))] = vals
    return steps


def run(work: Path, job: Path, timeout: int) -> tuple[dict[int, dict[str, float]], float, int]:
    from herl.train import build_argv, load_job

    env = dict(
        os.environ,
        HERL_CHECKPOINT_DIR=str(work / f"ckpt-{job.stem}"),
        PYTHONUNBUFFERED="1",
        TOKENIZERS_PARALLELISM="false",
        RAY_DEDUP_LOGS="0",
    )
    argv = build_argv(load_job(job), env=env) + extra_overrides()
    log_path = work / f"{job.stem}.log"
    t0 = time.time()
    with open(log_path, "w") as fh:
        try:
            rc = subprocess.run(
                argv, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=timeout
            ).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    wall = time.time() - t0
    text = log_path.read_text(errors="replace")
    if rc != 0:
        print(f"--- {job.stem} failed (rc={rc}); last lines of {log_path}:")
        print("\n".join(text.splitlines()[-60:]))
    return parse_steps(text), wall, rc


@dataclass(frozen=True)
class RunLog:
    """One veRL run as the smoke saw it: parsed step metrics and the process exit code."""

    steps: dict[int, dict[str, float]]
    rc: int


@dataclass
class Verdict:
    """``ok`` only without failures; ``lines`` is the report to print (facts first, then FAIL lines)."""

    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, why: str) -> None:
        self.failures.append(why)


def _total(steps: Mapping[int, Mapping[str, float]], key: str) -> float:
    return sum(v.get(key, 0.0) for v in steps.values() if math.isfinite(v.get(key, 0.0)))


def mean_step_time(steps: Mapping[int, Mapping[str, float]]) -> float | None:
    """Mean ``timing_s/step`` of steps 2.. (step 1 pays compilation and warm-up); None if absent."""
    ts = [v[STEP_TIME_KEY] for s, v in sorted(steps.items()) if s > 1 and STEP_TIME_KEY in v]
    return sum(ts) / len(ts) if ts else None


def _positive(metrics: Mapping[str, float], key: str) -> bool:
    value = metrics.get(key)
    return value is not None and math.isfinite(value) and value > 0


def _fmt(v: float | None) -> str:
    return "MISSING" if v is None else f"{v:.4g}"


def judge(grpo: RunLog, herl: RunLog, n_steps: int = STEPS) -> Verdict:
    """The smoke's verdict from both runs' step logs (pure: no GPU, no files).

    Passing needs every one of: both runs exit 0 with steps 1..n_steps logged; the reward metric
    (critic/score/mean) finite on every step; actor/pg_loss on every step and every loss metric
    present finite; in the HeRL run ≥ 1 revision generated, ≥ 1 revision kept, ≥ 1 row written with
    he_mask (herl/he_rows) and, on each step that wrote such rows, HE tokens in the loss
    (actor/he_frac > 0, our loss's own metrics present); and a finite HeRL/GRPO step-time ratio.
    """
    v = Verdict()
    runs = {"grpo": grpo, "herl": herl}
    for name, run in runs.items():
        want = set(range(1, n_steps + 1))
        if run.rc != 0 or not want <= set(run.steps):
            v.fail(f"{name}: rc={run.rc}, logged steps {sorted(run.steps)} of 1..{n_steps}")
        for s, m in sorted(run.steps.items()):
            reward = m.get(REWARD_KEY)
            v.lines.append(f"{name} step {s}: {REWARD_KEY}={_fmt(reward)}")
            if reward is None or not math.isfinite(reward):
                v.fail(f"{name} step {s}: reward metric {REWARD_KEY} is {_fmt(reward)}")
            if LOSS_KEYS[0] not in m:
                v.fail(f"{name} step {s}: no {LOSS_KEYS[0]}")
            for key in LOSS_KEYS:
                if key in m and not math.isfinite(m[key]):
                    v.fail(f"{name} step {s}: {key} = {m[key]} (not finite)")

    for s, m in sorted(herl.steps.items()):
        v.lines.append(f"herl step {s}: " + ", ".join(f"{k}={_fmt(m.get(k))}" for k in HERL_KEYS))
    revisions = _total(herl.steps, "herl/revisions_generated")
    kept = _total(herl.steps, "herl/kept")
    he_rows = _total(herl.steps, "herl/he_rows")
    he_steps = [s for s, m in sorted(herl.steps.items()) if m.get("herl/he_rows", 0.0) > 0]
    seen = [s for s in he_steps if _positive(herl.steps[s], "actor/he_frac")]
    v.lines.append(
        f"herl: {revisions:g} revisions generated, {kept:g} kept, {he_rows:g} rows written with he_mask; "
        f"HE tokens reached the loss (actor/he_frac > 0) on {len(seen)} of the {len(he_steps)} steps "
        "that wrote them"
    )
    if revisions < 1:
        v.fail("herl: no revision generated (herl/revisions_generated is 0 or missing on every step)")
    if kept < 1:
        v.fail("herl: no revision kept (herl/kept is 0 or missing on every step)")
    if he_rows < 1:
        v.fail("herl: no row written with he_mask (herl/he_rows is 0 or missing on every step)")
    for s in he_steps:
        m = herl.steps[s]
        absent = [k for k in HERL_LOSS_KEYS if k not in m]
        if absent:
            v.fail(
                f"herl step {s}: wrote {m['herl/he_rows']:g} HE rows but the loss logged no {', '.join(absent)}"
            )
        elif s not in seen:
            v.fail(
                f"herl step {s}: wrote {m['herl/he_rows']:g} HE rows but actor/he_frac = {m['actor/he_frac']:g}"
            )

    tg, th = mean_step_time(grpo.steps), mean_step_time(herl.steps)
    if tg and th and math.isfinite(tg) and math.isfinite(th):
        v.lines.append(
            f"step time (mean of steps 2..{n_steps}): GRPO {tg:.2f}s, HeRL {th:.2f}s, HeRL/GRPO ratio {th / tg:.2f}"
        )
    else:
        v.fail(f"no HeRL/GRPO step-time ratio: {STEP_TIME_KEY} mean GRPO {_fmt(tg)}, HeRL {_fmt(th)}")
    return v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/herl_smoke")
    ap.add_argument("--timeout", type=int, default=210, help="seconds per run")
    ap.add_argument("--check", action="store_true", help="only check the prerequisites, then exit")
    args = ap.parse_args(argv)
    missing = missing_prerequisites()
    for line in missing:
        print(f"MISSING: {line}", file=sys.stderr)
    if missing:
        print(f"cannot run the GPU smoke: {len(missing)} prerequisite(s) missing", file=sys.stderr)
        return EXIT_MISSING
    print("prerequisites: all present")
    if args.check:
        return 0
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    tok = build_tokenizer(work / "model")
    build_model(work / "model", tok)
    data = build_data(work)
    print(f"built tokenizer+model+data in {time.time() - t0:.1f}s under {work}")

    runs = {}
    for hindsight in (False, True):
        job = job_yaml(work, work / "model", data, hindsight)
        steps, wall, rc = run(work, job, args.timeout)
        runs["herl" if hindsight else "grpo"] = RunLog(steps, rc)
        print(f"{job.stem}: rc={rc} wall={wall:.1f}s steps={sorted(steps)}")

    verdict = judge(runs["grpo"], runs["herl"])
    for line in verdict.lines:
        print(line)
    for why in verdict.failures:
        print(f"FAIL: {why}")
    print(f"total {time.time() - t0:.1f}s; {'PASS' if verdict.ok else 'FAIL'}")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
