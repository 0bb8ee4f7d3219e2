"""Run an IF benchmark: generate, score strict and loose, optionally self-revise, summarise.

Metrics (Google's IFEval definitions, applied to all three benchmarks):

- strict: a constraint is followed when the IF reward's checker accepts the response;
- loose: followed when the checker accepts any of the 8 loose variants (first / last line removed,
  ``*`` removed); an unclear verdict (checker unavailable) counts as not followed in both;
- prompt-level: share of prompts with every constraint followed (IFEval/IFBench headline = strict;
  MulDimIF ``total_acc`` = strict); instruction-level: share of all constraints followed.

Test-time self-improvement (``revise`` rounds), the HeRL abstract's "experience guided
self-improvement": every answer that misses a constraint is shown to the model again inside the
hindsight prompt of :mod:`herl.core.prompts` (instruction, draft, met / unmet constraints) and
regenerated. The revision is scored under the ORIGINAL constraints. ``accept="better"`` keeps it
only when its score is strictly higher (so accuracy cannot drop); ``"always"`` keeps every revision.
The summary reports the metrics before and after.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from herl.evaluation.benchmarks import DEFAULT_TEMPERATURE, DEFAULT_TOP_P, EvalRecord
from herl.evaluation.families import format_families, revision_by_family
from herl.evaluation.generator import Generator
from herl.evaluation.progress import generate_with_progress
from herl.rewards.types import RewardResult

Scorer = Callable[[Sequence[tuple[EvalRecord, str]]], list[RewardResult]]
Accept = Literal["better", "always"]


@dataclass(frozen=True)
class EvalSettings:
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    max_new_tokens: int = 4096
    seed: int = 0
    revise: int = 0
    accept: Accept = "better"
    workers: int = 0
    progress: bool = True  # a bar per generation round on stderr (prompts, tokens/s, ETA)


def if_scorer(workers: int = 0) -> Scorer:
    """The IF reward (herl.rewards.batch.score_batch), parallel over ``workers`` processes (0 = all cores)."""

    def score(pairs: Sequence[tuple[EvalRecord, str]]) -> list[RewardResult]:
        from herl.rewards.batch import score_batch

        items = [
            {
                "response": resp,
                "ground_truth": rec.ground_truth,
                "data_source": rec.data_source,
                "prompt": rec.prompt,
            }
            for rec, resp in pairs
        ]
        return score_batch(items, workers=workers)

    return score


def loose_variants(response: str) -> list[str]:
    """IFEval's 8 loose variants of a response (the reward package keeps the reference copy)."""
    from herl.rewards.ifeval_eval import loose_variants as variants

    return variants(response)


@dataclass
class Scored:
    """Strict result plus loose follow flags for one response."""

    result: RewardResult
    loose: list[bool]

    @property
    def strict(self) -> list[bool]:
        return [c.followed is True for c in self.result.constraints]


def score_strict_and_loose(pairs: Sequence[tuple[EvalRecord, str]], scorer: Scorer) -> list[Scored]:
    """One scorer call for all responses and all their distinct loose variants."""
    strict = scorer(pairs)
    extra: list[tuple[EvalRecord, str]] = []
    owners: list[int] = []
    for i, (rec, resp) in enumerate(pairs):
        seen = {resp}
        for v in loose_variants(resp)[1:]:
            if v.strip() and v not in seen:
                seen.add(v)
                extra.append((rec, v))
                owners.append(i)
    variant_results = scorer(extra) if extra else []
    out = [Scored(r, [c.followed is True for c in r.constraints]) for r in strict]
    for i, vr in zip(owners, variant_results, strict=True):
        flags = out[i].loose
        if len(vr.constraints) == len(flags):
            out[i].loose = [a or (c.followed is True) for a, c in zip(flags, vr.constraints, strict=True)]
    return out


def metrics(scored: Sequence[Scored]) -> dict[str, float]:
    n = len(scored)
    strict_flat = [f for s in scored for f in s.strict]
    loose_flat = [f for s in scored for f in s.loose]

    def share(xs: Sequence[bool]) -> float:
        return sum(xs) / len(xs) if xs else 0.0

    return {
        "prompt_strict": share([bool(s.strict) and all(s.strict) for s in scored]),
        "prompt_loose": share([bool(s.loose) and all(s.loose) for s in scored]),
        "instruction_strict": share(strict_flat),
        "instruction_loose": share(loose_flat),
        "mean_score": sum(s.result.score for s in scored) / n if n else 0.0,
    }


@dataclass
class EvalRun:
    """Everything ``write_outputs`` needs: per-prompt rows and the summary."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def _hindsight_prompt(rec: EvalRecord, draft: str, result: RewardResult) -> str:
    from herl.core.prompts import build_hindsight_prompt

    return build_hindsight_prompt(rec.prompt, draft, result, "constraint")


def run_eval(
    bench: str,
    records: Sequence[EvalRecord],
    generator: Generator,
    settings: EvalSettings,
    *,
    scorer: Scorer | None = None,
    model: str = "",
) -> EvalRun:
    """Generate, score, revise up to ``settings.revise`` rounds, and summarise."""
    scorer = scorer or if_scorer(settings.workers)
    t0 = time.monotonic()
    prompts = [r.prompt for r in records]
    responses = generate_with_progress(
        generator,
        prompts,
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_new_tokens=settings.max_new_tokens,
        seed=settings.seed,
        label="generate",
        enabled=settings.progress,
    )
    if len(responses) != len(records):
        raise RuntimeError(f"generator returned {len(responses)} completions for {len(records)} prompts")
    gen_s = time.monotonic() - t0
    initial = score_strict_and_loose(list(zip(records, responses, strict=True)), scorer)
    current = [s.result for s in initial]
    final_resp = list(responses)
    history: list[list[dict[str, Any]]] = [[] for _ in records]
    rounds: list[dict[str, Any]] = []
    for rnd in range(1, settings.revise + 1):
        todo = [i for i, r in enumerate(current) if not r.all_met and r.error is None and r.constraints]
        if not todo:
            rounds.append({"round": rnd, "attempted": 0, "accepted": 0, "improved": 0, "newly_all_met": 0})
            continue
        hs_prompts = [_hindsight_prompt(records[i], final_resp[i], current[i]) for i in todo]
        revised = generate_with_progress(
            generator,
            hs_prompts,
            temperature=settings.temperature,
            top_p=settings.top_p,
            max_new_tokens=settings.max_new_tokens,
            seed=settings.seed + rnd,
            label=f"revise {rnd}/{settings.revise}",
            enabled=settings.progress,
        )
        new_results = scorer([(records[i], text) for i, text in zip(todo, revised, strict=True)])
        acc = imp = fixed = 0
        for i, hp, text, res in zip(todo, hs_prompts, revised, new_results, strict=True):
            draft = current[i]
            better = res.score > draft.score
            accept = settings.accept == "always" or better
            imp += better
            if accept:
                acc += 1
                fixed += res.all_met
                final_resp[i], current[i] = text, res
            history[i].append(
                {
                    "round": rnd,
                    "hindsight_prompt": hp,
                    "response": text,
                    "score": res.score,
                    "all_met": res.all_met,
                    "accepted": accept,
                    # per constraint, strict, for the draft and the revision (revision_by_family reads them)
                    "draft_follow": [c.followed is True for c in draft.constraints],
                    "follow_strict": [c.followed is True for c in res.constraints],
                    "draft_score": draft.score,
                }
            )
        rounds.append(
            {"round": rnd, "attempted": len(todo), "accepted": acc, "improved": imp, "newly_all_met": fixed}
        )
    final = (
        score_strict_and_loose(list(zip(records, final_resp, strict=True)), scorer)
        if settings.revise
        else initial
    )
    rows: list[dict[str, Any]] = []
    for i, rec in enumerate(records):
        fs, ins = final[i], initial[i]
        res = fs.result
        rows.append(
            {
                "key": rec.key,
                "data_source": rec.data_source,
                "prompt": rec.prompt,
                "response": final_resp[i],
                "instruction_id_list": [c.id for c in res.constraints],
                "descriptions": [c.description for c in res.constraints],
                "follow_strict": fs.strict,
                "follow_loose": fs.loose,
                "all_strict": bool(fs.strict) and all(fs.strict),
                "all_loose": bool(fs.loose) and all(fs.loose),
                "score": res.score,
                "error": res.error,
                "initial": {
                    "response": responses[i],
                    "follow_strict": ins.strict,
                    "follow_loose": ins.loose,
                    "all_strict": bool(ins.strict) and all(ins.strict),
                    "score": ins.result.score,
                },
                "revisions": history[i],
            }
        )
    summary: dict[str, Any] = {
        "benchmark": bench,
        "model": model,
        "n_prompts": len(records),
        "settings": asdict(settings),
        "initial": metrics(initial),
        "scoring_errors": sum(1 for s in final if s.result.error),
        "generation_seconds": round(gen_s, 3),
    }
    if settings.revise:
        summary["final"] = metrics(final)
        summary["revise"] = {
            "rounds": settings.revise,
            "accept": settings.accept,
            "per_round": rounds,
            "by_family": revision_by_family(rows),
        }
    return EvalRun(rows=rows, summary=summary)


def format_summary(summary: dict[str, Any]) -> str:
    """A small fixed-width table (percent)."""
    cols = [("initial", "before revision" if "final" in summary else "accuracy")]
    if "final" in summary:
        cols.append(("final", f"after {summary['revise']['rounds']} revision round(s)"))
    lines = [
        f"{summary['benchmark']} — {summary['n_prompts']} prompts"
        + (f" — {summary['model']}" if summary["model"] else "")
    ]
    for key, title in cols:
        m = summary[key]
        lines.append(f"  {title}")
        lines.append(f"    {'':<20}{'strict':>9}{'loose':>9}")
        lines.append(
            f"    {'prompt-level':<20}{100 * m['prompt_strict']:>9.1f}{100 * m['prompt_loose']:>9.1f}"
        )
        lines.append(
            f"    {'instruction-level':<20}{100 * m['instruction_strict']:>9.1f}{100 * m['instruction_loose']:>9.1f}"
        )
    for r in summary.get("revise", {}).get("per_round", []):
        lines.append(
            f"  round {r['round']}: revised {r['attempted']}, improved {r['improved']}, "
            f"accepted {r['accepted']}, newly all-met {r['newly_all_met']}"
        )
    by_family = summary.get("revise", {}).get("by_family")
    if by_family:
        lines.append(format_families(by_family))
    if summary.get("scoring_errors"):
        lines.append(f"  scoring errors: {summary['scoring_errors']} (see results.jsonl 'error')")
    return "\n".join(lines)


def write_outputs(out_dir: Path, run: EvalRun) -> tuple[Path, Path]:
    """``results.jsonl`` (one row per prompt) and ``summary.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = out_dir / "results.jsonl"
    with results.open("w", encoding="utf-8") as fh:
        for row in run.rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    summary = out_dir / "summary.json"
    summary.write_text(json.dumps(run.summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return results, summary
