"""GPU smoke of the veRL plugin: 3 GRPO steps and 3 HeRL steps on a tiny random Qwen2, through veRL + vLLM.

Everything is built locally (the GPU machine has no internet): a byte-level BPE tokenizer trained
in-process, a random Qwen2 (hidden 64), a 32-prompt parquet with checkable constraints and an
offline reward (``herl_smoke_reward.py`` beside this file). The runs go through the real launcher
(:func:`herl.train.build_argv` from a HeRLJob), so the entry-point plugin, the ``herl_sync`` trainer,
the set_loss_fn outer loss and the TransferQueue write-back are all exercised.

    python bench/gpu/herl_smoke.py --work /tmp/herl_smoke     # prints metrics and the step-time ratio

Exit code 0 only when both runs finished 3 steps and the HeRL run logged hindsight metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time
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
    "herl/bonus_mean",
    "herl/he_token_frac",
    "actor/on_pg_loss",
    "actor/off_pg_loss",
)


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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/herl_smoke")
    ap.add_argument("--timeout", type=int, default=210, help="seconds per run")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    tok = build_tokenizer(work / "model")
    build_model(work / "model", tok)
    data = build_data(work)
    print(f"built tokenizer+model+data in {time.time() - t0:.1f}s under {work}")

    results = {}
    for hindsight in (False, True):
        job = job_yaml(work, work / "model", data, hindsight)
        steps, wall, rc = run(work, job, args.timeout)
        results["herl" if hindsight else "grpo"] = (steps, wall, rc)
        print(f"{job.stem}: rc={rc} wall={wall:.1f}s steps={sorted(steps)}")

    ok = True
    for name, (steps, _, rc) in results.items():
        if rc != 0 or len(steps) < STEPS:
            print(f"FAIL: {name} finished {len(steps)} of {STEPS} steps (rc={rc})")
            ok = False
    herl_steps = results["herl"][0]
    for s in sorted(herl_steps):
        shown = {k: herl_steps[s].get(k) for k in HERL_KEYS}
        print(
            f"herl step {s}: "
            + ", ".join(f"{k}={v:.4g}" if v is not None else f"{k}=MISSING" for k, v in shown.items())
        )
    if herl_steps and not any("herl/prompts_attempted" in v for v in herl_steps.values()):
        print("FAIL: no herl/* metrics in the HeRL run")
        ok = False

    def step_time(steps: dict[int, dict[str, float]]) -> float | None:
        ts = [v["timing_s/step"] for s, v in sorted(steps.items()) if "timing_s/step" in v and s > 1]
        ts = ts or [v["timing_s/step"] for v in steps.values() if "timing_s/step" in v]
        return sum(ts) / len(ts) if ts else None

    tg, th = step_time(results["grpo"][0]), step_time(results["herl"][0])
    if tg and th:
        print(
            f"step time (mean of steps 2..{STEPS}): GRPO {tg:.2f}s, HeRL {th:.2f}s, HeRL/GRPO ratio {th / tg:.2f}"
        )
    print(f"total {time.time() - t0:.1f}s; {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
