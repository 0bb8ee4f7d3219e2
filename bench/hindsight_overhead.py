"""What the hindsight stage costs: its own wall time, and a training step with vs without it.

1. Stage wall time (``perf_counter``, one thread) for 512 rollouts (64 groups × 8, synthetic IF prompts,
   rewards from the real IFEval checkers): :func:`herl.core.run_hindsight_stage` with generation and
   revision scoring replaced by look-ups of pre-computed answers (their time is measured and excluded),
   plus :func:`herl.core.apply_outcomes` (BR spreading + HE-row construction
   with a real tokenizer). Each revision is scored against the constraints of the row it revises
   (:class:`RevisionScorer`), so keep/fallback outcomes are the ones a real run would reach.
   Goal: ≤ 20 ms per step.
2. Step time with vs without hindsight: the local engine on the same job, hindsight on / off, steps
   interleaved (on, off, on, off, ...) so machine load hits both alike; reports the timing_s breakdown.

    .venv/bin/python bench/hindsight_overhead.py --repeats 20 --model tiny --steps 3
    .venv/bin/python bench/hindsight_overhead.py --model smollm2 --steps 3 --tokens 48
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class RevisionScorer:
    """``score_fn`` for :func:`herl.core.run_hindsight_stage` over synthetic IF rows.

    Each item is a :class:`herl.core.RevisionItem` (record, text, index), the record being the row of the
    group the revision came from:
    the revision is scored with the real IFEval checkers against *that row's* constraints. Results are
    memoised by (constraints, text), so after a warm-up round the timed rounds only look them up; the
    time spent in here is accumulated in ``seconds`` for the caller to exclude.
    """

    def __init__(self) -> None:
        self.cache: dict[tuple[str, str], Any] = {}
        self.seconds = 0.0

    def __call__(self, items: list[tuple[Any, str]]) -> list[Any]:
        from herl.rewards.instruction_following import score_if

        t = time.perf_counter()
        out = []
        for item in items:
            text, truth = item.text, item.record["reward_model"]["ground_truth"]
            key = (json.dumps(truth, sort_keys=True), text)
            if key not in self.cache:
                self.cache[key] = score_if(text, truth, "ifeval")
            out.append(self.cache[key])
        self.seconds += time.perf_counter() - t
        return out


def stage_wall(repeats: int, groups: int, group_size: int) -> dict[str, Any]:
    import random

    from herl.core import (
        GeneratedTokens,
        Rollout,
        RolloutGroup,
        TokenRow,
        apply_outcomes,
        last_token_scores,
        run_hindsight_stage,
        slot_rng,
    )
    from herl.core.config import HindsightConfig
    from herl.data.synthetic import generate_synthetic_if
    from herl.engine.tiny import tiny_tokenizer
    from herl.rewards.instruction_following import score_if

    rng = random.Random(0)
    rows = generate_synthetic_if(groups, 3, seed=1)
    words = [
        "the",
        "rain",
        "falls",
        "on",
        "quiet",
        "streets",
        "and",
        "people",
        "walk",
        "home",
        "with",
        "umbrellas,",
        "Coffee,",
        "tea",
        "P.S.",
        "fin",
    ]

    def fake_text(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    groups_in: list[RolloutGroup] = []
    texts: dict[tuple[int, int], str] = {}
    for g, row in enumerate(rows):
        gt = row["reward_model"]["ground_truth"]
        rollouts = []
        for j in range(group_size):
            t = fake_text(rng.randint(10, 120))
            texts[(g, j)] = t
            rollouts.append(Rollout(response=t, reward=score_if(t, gt, "ifeval")))
        groups_in.append(
            RolloutGroup(uid=str(g), prompt=row["prompt"][0]["content"], rollouts=tuple(rollouts), record=row)
        )
    # Pre-computed revisions; the scorer grades each against its own row (filled by a warm-up round).
    rev_texts = [fake_text(rng.randint(10, 120)) for _ in range(groups * group_size)]
    scorer = RevisionScorer()
    tok = tiny_tokenizer()
    gen_ids = [GeneratedTokens(tok(t, add_special_tokens=False)["input_ids"]) for t in rev_texts]
    cfg = HindsightConfig(threshold=1.01)  # revise every group: the worst case
    gen_s = [0.0]

    def generate_fn(prompts: list[str], sampling: Any) -> list[str]:
        t = time.perf_counter()
        out = rev_texts[: len(prompts)]
        gen_s[0] += time.perf_counter() - t
        return out

    warm = run_hindsight_stage(groups_in, generate_fn, scorer, cfg, slot_rng(0, 0))
    outcomes = Counter(o.kind for o in warm.outcomes)
    stage_ms, apply_ms, callback_ms, jobs = [], [], [], []
    for r in range(repeats):
        scorer.seconds = gen_s[0] = 0.0
        t = time.perf_counter()
        res = run_hindsight_stage(groups_in, generate_fn, scorer, cfg, slot_rng(0, r))
        cb = scorer.seconds + gen_s[0]
        stage_ms.append((time.perf_counter() - t - cb) * 1e3)
        callback_ms.append(cb * 1e3)
        jobs.append(len(res.jobs))
        grows = [
            [
                TokenRow(
                    uid=str(g),
                    prompt_ids=[1] * 100,
                    response_ids=[5] * (10 + j),
                    token_scores=last_token_scores(10 + j, ro.r),
                    result=ro.reward,
                )
                for j, ro in enumerate(grp.rollouts)
            ]
            for g, grp in enumerate(groups_in)
        ]
        t = time.perf_counter()
        apply_outcomes(
            res,
            grows,
            gen_ids[: len(res.jobs)],
            encode_raw=lambda s: tok(s, add_special_tokens=False)["input_ids"],
            eos_id=tok.eos_token_id,
            pad_id=tok.pad_token_id,
            max_prompt_length=6144,
            max_response_length=2048,
        )
        apply_ms.append((time.perf_counter() - t) * 1e3)
    return {
        "rollouts": groups * group_size,
        "groups": groups,
        "revision_jobs": statistics.median(jobs),
        "outcomes": dict(sorted(outcomes.items())),
        "stage_wall_ms_median": statistics.median(stage_ms),
        "stage_wall_ms_min": min(stage_ms),
        "apply_outcomes_wall_ms_median": statistics.median(apply_ms),
        "total_wall_ms_median": statistics.median(s + a for s, a in zip(stage_ms, apply_ms, strict=True)),
        "callbacks_wall_ms_median": statistics.median(callback_ms),
        "repeats": repeats,
    }


def step_times(model: str, steps: int, tokens: int, threads: int) -> dict[str, Any]:
    import tempfile

    from herl.api.validate import validate_document
    from herl.engine.tiny import build_tiny_model_dir
    from herl.engine.trainer import LocalTrainer

    tmp = Path(tempfile.mkdtemp(prefix="herl-ho-"))
    path = (
        str(build_tiny_model_dir(tmp / "tiny")) if model == "tiny" else "herl-asset://smollm2-135m-instruct"
    )
    out: dict[str, Any] = {"model": model, "steps": steps, "tokens": tokens}
    trainers = {}
    for label, enabled in (("with_hindsight", True), ("without_hindsight", False)):
        doc = {
            "apiVersion": "herl.dev/v1alpha1",
            "kind": "HeRLJob",
            "metadata": {"name": "ho"},
            "spec": {
                "model": {"path": path, "dtype": "float32"},
                "data": {
                    "format": "synthetic-if",
                    "synthetic": {"numPrompts": 32, "seed": 0},
                    "maxPromptLength": 512,
                    "maxInstructionLength": 192,
                    "maxResponseLength": tokens,
                    "hindsightPromptMargin": 64,
                },
                "reward": {"instructionFollowing": {"workers": 1}},
                "algorithm": {
                    "groupSize": 4,
                    "trainBatchSize": 2,
                    "miniBatchSize": 2,
                    "learningRate": 1e-5,
                    "seed": 7,
                    "hindsight": {"enabled": enabled, "revision": {"maxTokens": tokens}},
                },
                "metrics": {"enabled": False},
            },
        }
        job, findings = validate_document(doc)
        assert job is not None, findings
        tr = LocalTrainer(job, tmp / label, resume=False, progress=False, threads=threads or None, echo=print)
        tr.prepare()
        trainers[label] = tr
    per: dict[str, list[dict[str, float]]] = {k: [] for k in trainers}
    for s in range(1, steps + 1):
        for label, tr in trainers.items():
            m = tr.train_step(s)
            per[label].append(
                {k[len("timing_s/") :]: float(v) for k, v in m.items() if k.startswith("timing_s/")}
                | {"groups_attempted": float(m.get("herl/groups_attempted", 0))}
            )
    for label, rows in per.items():
        keys = sorted({k for r in rows for k in r})
        out[label] = {k: statistics.mean(r.get(k, 0.0) for r in rows) for k in keys}
    out["step_ratio_with_over_without"] = out["with_hindsight"]["step"] / out["without_hindsight"]["step"]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--groups", type=int, default=64)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--model", choices=["tiny", "smollm2", "none"], default="tiny")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=str(ROOT / "runs" / "bench" / "hindsight_overhead.json"))
    a = p.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    result: dict[str, Any] = {"loadavg_start": os.getloadavg(), "threads": a.threads}
    result["stage"] = stage_wall(a.repeats, a.groups, a.group_size)
    print("stage wall time:", json.dumps(result["stage"]), flush=True)
    if a.model != "none":
        result["steps"] = step_times(a.model, a.steps, a.tokens, a.threads)
        print("steps:", json.dumps(result["steps"], indent=1), flush=True)
    result["loadavg_end"] = os.getloadavg()
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
