"""HeRL vs the GRPO baseline on SmolLM2-135M-Instruct with the local engine, side by side.

Both runs start from manifests/samples/local-smollm2.yaml (HeRL) and local-smollm2-grpo.yaml (GRPO):
same model, same synthetic prompts, same seed (so the same prompt order and the same step-1 sampling),
same sizes and learning rate; only ``algorithm.hindsight.enabled`` differs. The two trainers live in
one process and take turns step by step (HeRL step i, then GRPO step i), so machine load hits both
alike. Writes a JSON with per-step reward mean, all-met rate, hindsight metrics and step times, and
one PNG with both curves.

    nohup .venv/bin/python bench/herl_vs_grpo.py --steps 16 --prompts 4 --tokens 64 \
        --json runs/bench/herl_vs_grpo.json --png docs/img/herl_vs_grpo.png > runs/bench/herl_vs_grpo.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
KEYS = (
    "critic/score/mean",
    "herl/all_met_rate",
    "critic/train_score/mean",
    "herl/success_rate",
    "herl/groups_attempted",
    "herl/kept",
    "herl/fallbacks",
    "herl/he_rows",
    "herl/bonus_mean",
    "herl/revision_score_mean",
    "herl/draft_score_mean",
    "actor/pg_loss",
    "actor/grad_norm",
    "actor/entropy",
    "response_length/mean",
    "timing_s/step",
    "timing_s/gen",
    "timing_s/hindsight",
    "timing_s/update_actor",
)


def load_doc(name: str, a: argparse.Namespace) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "manifests" / "samples" / name).read_text())
    spec = doc["spec"]
    alg = spec["algorithm"]
    alg.update(
        trainBatchSize=a.prompts,
        miniBatchSize=a.prompts,
        groupSize=a.group,
        totalSteps=a.steps,
        seed=a.seed,
        learningRate=a.lr,
    )
    spec["data"]["maxResponseLength"] = a.tokens
    spec["data"]["synthetic"]["numPrompts"] = a.num_prompts
    # The documented run used 2 constraints per prompt (the samples now use 3 to make the demo revise early).
    spec["data"]["synthetic"]["constraintsPerPrompt"] = a.constraints
    if alg.get("hindsight", {}).get("enabled", True):
        alg["hindsight"].setdefault("revision", {})["maxTokens"] = a.tokens
    spec["metrics"] = {"enabled": False}
    spec["checkpoints"] = {"saveEverySteps": 10**6}
    spec.setdefault("reward", {})["instructionFollowing"] = {"workers": 1}
    return doc


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--prompts", type=int, default=4, help="prompts per step")
    p.add_argument("--constraints", type=int, default=2, help="constraints per synthetic prompt")
    p.add_argument("--group", type=int, default=4)
    p.add_argument("--tokens", type=int, default=64, help="max response (and revision) tokens")
    p.add_argument("--num-prompts", type=int, default=64, help="synthetic dataset size")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: engine default)")
    p.add_argument("--json", default=str(ROOT / "runs" / "bench" / "herl_vs_grpo.json"))
    p.add_argument("--png", default=str(ROOT / "docs" / "img" / "herl_vs_grpo.png"))
    p.add_argument("--workdir", default="/tmp/herl-bench-hvg")
    a = p.parse_args()

    from herl.api.validate import validate_document
    from herl.engine.trainer import LocalTrainer

    trainers = {}
    for label, name in (("herl", "local-smollm2.yaml"), ("grpo", "local-smollm2-grpo.yaml")):
        job, findings = validate_document(load_doc(name, a))
        assert job is not None, findings
        tr = LocalTrainer(
            job, Path(a.workdir) / label, resume=False, progress=False, threads=a.threads or None, echo=print
        )
        tr.prepare()
        trainers[label] = tr
    result: dict[str, Any] = {"config": vars(a), "loadavg_start": os.getloadavg(), "herl": [], "grpo": []}
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for step in range(1, a.steps + 1):
        for label, tr in trainers.items():
            m = tr.train_step(step)
            tr.step = step
            row = {"step": step, **{k: float(m[k]) for k in KEYS if k in m}}
            result[label].append(row)
            print(
                f"[{time.time() - t0:7.0f}s] {label} step {step}: reward {row['critic/score/mean']:.3f} "
                f"all-met {row['herl/all_met_rate']:.2f} he-success {row.get('herl/success_rate', 0):.2f} "
                f"{row['timing_s/step']:.1f}s",
                flush=True,
            )
        result["loadavg_end"] = os.getloadavg()
        out.write_text(json.dumps(result, indent=1) + "\n")
        plot(result, Path(a.png))
    for label in ("herl", "grpo"):
        rows = result[label]
        half = len(rows) // 2
        result[f"{label}_summary"] = {
            "reward_mean_all": sum(r["critic/score/mean"] for r in rows) / len(rows),
            "reward_mean_last_half": sum(r["critic/score/mean"] for r in rows[half:])
            / max(1, len(rows) - half),
            "all_met_last_half": sum(r["herl/all_met_rate"] for r in rows[half:]) / max(1, len(rows) - half),
            "step_s_mean": sum(r["timing_s/step"] for r in rows) / len(rows),
        }
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k.endswith("_summary")}, indent=1))
    return 0


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=90)
    for label, color in (("herl", "tab:blue"), ("grpo", "tab:orange")):
        rows = result[label]
        if not rows:
            continue
        steps = [r["step"] for r in rows]
        for ax, key, title in (
            (axes[0], "critic/score/mean", "reward mean (on-policy rollouts)"),
            (axes[1], "herl/all_met_rate", "all constraints met"),
        ):
            vals = [r[key] for r in rows]
            ax.plot(steps, vals, color=color, alpha=0.35, linewidth=1)
            k = 4
            ma = [
                sum(vals[max(0, i - k + 1) : i + 1]) / len(vals[max(0, i - k + 1) : i + 1])
                for i in range(len(vals))
            ]
            ax.plot(steps, ma, color=color, linewidth=2, label=f"{label.upper()} (4-step mean)")
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("step")
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    c = result["config"]
    fig.suptitle(
        f"SmolLM2-135M, {c['prompts']} prompts x {c['group']} samples, {c['tokens']} tokens, "
        f"lr {c['lr']}, seed {c['seed']}",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
