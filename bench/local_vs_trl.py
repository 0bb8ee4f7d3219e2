"""GRPO steps of the herl local engine vs TRL's GRPOTrainer: same model, prompts, group size, lengths.

Each side runs in its own subprocess, one after the other (same process tree, same machine state):
fp32, N torch threads, SmolLM2-135M-Instruct (``herl-asset://``), synthetic IF prompts, the same IF
reward (herl.rewards.score_if, in-process on both sides), no KL/reference model, one optimiser step per
step. Reported: settled step time (median after ``--warmup`` steps), peak RSS of each child
(``ru_maxrss``), their ratios, and where our step time goes (timing_s/*).

    .venv/bin/python bench/local_vs_trl.py --prompts 8 --group 4 --tokens 64 --steps 4 --warmup 1 \
        --out runs/bench/local_vs_trl.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _rows(n: int, seed: int) -> list[dict[str, Any]]:
    from herl.data.synthetic import generate_synthetic_if

    return generate_synthetic_if(n, 2, seed)


def run_ours(a: argparse.Namespace) -> dict[str, Any]:
    import torch

    from herl.api.validate import validate_document
    from herl.engine.trainer import LocalTrainer

    torch.set_num_threads(a.threads)
    doc = {
        "apiVersion": "herl.dev/v1alpha1",
        "kind": "HeRLJob",
        "metadata": {"name": "bench-ours"},
        "spec": {
            "model": {"path": "herl-asset://smollm2-135m-instruct", "dtype": "float32"},
            "data": {
                "format": "synthetic-if",
                "synthetic": {"numPrompts": 64, "constraintsPerPrompt": 2, "seed": 0},
                "maxPromptLength": 512,
                "maxInstructionLength": 192,
                "maxResponseLength": a.tokens,
                "hindsightPromptMargin": 64,
            },
            "reward": {"instructionFollowing": {"workers": 1}},
            "algorithm": {
                "groupSize": a.group,
                "trainBatchSize": a.prompts,
                "miniBatchSize": a.prompts,
                "microBatchSizePerGpu": a.micro,
                "learningRate": 1e-6,
                "totalSteps": a.steps,
                "seed": a.seed,
                "hindsight": {"enabled": False},
            },
            "checkpoints": {"saveEverySteps": 1000},
            "metrics": {"enabled": False},
        },
    }
    job, findings = validate_document(doc)
    assert job is not None, findings
    out = Path(a.workdir) / "ours"
    tr = LocalTrainer(job, out, resume=False, progress=False, threads=a.threads, echo=lambda s: None)
    tr.prepare()
    steps: list[dict[str, float]] = []
    for s in range(1, a.steps + 1):
        t = time.perf_counter()
        m = tr.train_step(s)
        m["wall"] = time.perf_counter() - t
        steps.append(
            {
                k: float(v)
                for k, v in m.items()
                if k.startswith(("timing_s/", "critic/score/mean", "wall", "response_length/mean"))
            }
        )
    return {"steps": steps}


def run_trl(a: argparse.Namespace) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from herl.engine.models import fetch_asset_model
    from herl.rewards.instruction_following import score_if

    torch.set_num_threads(a.threads)
    path = fetch_asset_model("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    rows = _rows(64, 0)
    ds = Dataset.from_list(
        [{"prompt": r["prompt"], "gt": json.dumps(r["reward_model"]["ground_truth"])} for r in rows]
    )

    def if_reward(prompts: list[Any], completions: list[Any], gt: list[str], **_: Any) -> list[float]:
        out = []
        for c, g in zip(completions, gt, strict=True):
            text = c[0]["content"] if isinstance(c, list) else str(c)
            out.append(score_if(text, json.loads(g), "ifeval").score)
        return out

    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.t = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            times.append(time.perf_counter() - self.t)

    n = a.prompts * a.group
    cfg = GRPOConfig(
        output_dir=str(Path(a.workdir) / "trl"),
        per_device_train_batch_size=n,
        num_generations=a.group,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        max_completion_length=a.tokens,
        temperature=1.0,
        top_p=1.0,
        beta=0.0,
        learning_rate=1e-6,
        max_steps=a.steps,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        seed=a.seed,
        num_iterations=1,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[if_reward],
        args=cfg,
        train_dataset=ds,
        processing_class=tok,
        callbacks=[Timer()],
    )
    trainer.train()
    return {"steps": [{"wall": t} for t in times]}


def child(a: argparse.Namespace) -> None:
    res = run_ours(a) if a.child == "ours" else run_trl(a)
    res["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20)
    res["threads"] = a.threads
    print("@@RESULT " + json.dumps(res), flush=True)


def settled(steps: list[dict[str, float]], warmup: int) -> float:
    walls = [s["wall"] for s in steps[warmup:]] or [s["wall"] for s in steps]
    return statistics.median(walls)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--group", type=int, default=4)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--micro", type=int, default=8, help="our micro-batch rows (TRL runs all rows at once)")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default="/tmp/herl-bench-trl")
    p.add_argument("--out", default=str(ROOT / "runs" / "bench" / "local_vs_trl.json"))
    p.add_argument("--only", choices=["ours", "trl"], default=None)
    p.add_argument("--child", choices=["ours", "trl"], default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        child(a)
        return 0
    results: dict[str, Any] = {
        "config": {k: v for k, v in vars(a).items() if k not in ("child", "out")},
        "loadavg_start": os.getloadavg(),
    }
    for side in [a.only] if a.only else ["trl", "ours"]:
        cmd = [sys.executable, __file__, "--child", side] + [
            x for k, v in vars(a).items() if k not in ("child", "only", "out") for x in (f"--{k}", str(v))
        ]
        t = time.perf_counter()
        env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), TOKENIZERS_PARALLELISM="false")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("@@RESULT ")), None)
        if proc.returncode != 0 or line is None:
            print(proc.stdout[-3000:], proc.stderr[-5000:], file=sys.stderr)
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.out).write_text(json.dumps(results, indent=1) + "\n")
            raise SystemExit(f"{side} failed (rc {proc.returncode}); partial results in {a.out}")
        res = json.loads(line[len("@@RESULT ") :])
        res["total_wall_s"] = time.perf_counter() - t
        res["settled_step_s"] = settled(res["steps"], a.warmup)
        results[side] = res
        print(
            f"{side}: settled step {res['settled_step_s']:.1f} s, peak RSS {res['peak_rss_gib']:.2f} GiB",
            flush=True,
        )
    results["loadavg_end"] = os.getloadavg()
    if "ours" in results and "trl" in results:
        results["step_time_ratio"] = results["ours"]["settled_step_s"] / results["trl"]["settled_step_s"]
        results["peak_rss_ratio"] = results["ours"]["peak_rss_gib"] / results["trl"]["peak_rss_gib"]
        print(
            f"ratio ours/TRL: step time {results['step_time_ratio']:.2f}x, peak RSS {results['peak_rss_ratio']:.2f}x"
        )
    if "ours" in results:
        st = results["ours"]["steps"][a.warmup :] or results["ours"]["steps"]
        keys = sorted({k for s in st for k in s if k.startswith("timing_s/")})
        results["ours_breakdown_s"] = {
            k[len("timing_s/") :]: statistics.mean(s.get(k, 0.0) for s in st) for k in keys
        }
        print(
            "ours, where the time goes (mean s/step):",
            ", ".join(f"{k}={v:.2f}" for k, v in results["ours_breakdown_s"].items()),
        )
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
