"""What the hindsight stage did in a local run, in words: one real example and a line per step.

Every step with revisions appends its examples to ``hindsight_examples.jsonl`` under the run's
``--out``: the instruction, the draft that was revised with the constraints it met and missed, the
hindsight prompt, the revision with its score under the ORIGINAL constraints, and whether it joined the
group as the HE row. At the end, ``herl train`` prints :func:`report` (also written to
``hindsight_report.txt``): one line per step (reward, all met, revisions tried / kept) and one example,
chosen by :func:`choose_example` — a revision that beat its draft and joined the group when the run has
one. Everything comes from the run; nothing here is canned.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from herl.core import StageResult, TokenRow
from herl.rewards.types import RewardResult

EXAMPLES_FILE = "hindsight_examples.jsonl"
REPORT_FILE = "hindsight_report.txt"


def _verdicts(result: RewardResult) -> tuple[list[str], list[str]]:
    return [c.description for c in result.met], [c.description for c in result.unmet + result.unclear]


def stage_examples(
    step: int,
    result: StageResult,
    groups: Sequence[Sequence[TokenRow]],
    instructions: Sequence[str],
    decode: Any,
) -> list[dict[str, Any]]:
    """One JSON-able example per generated revision of this step (``groups``: the rows BEFORE the stage)."""
    out: list[dict[str, Any]] = []
    for outcome in result.outcomes:
        joined = outcome.row.revision if outcome.row is not None and outcome.row.is_he else None
        for rev in outcome.revisions:
            job = rev.job
            draft_row = groups[job.group][job.candidate]
            draft = draft_row.result
            d_met, d_unmet = _verdicts(draft)
            r_met, r_unmet = _verdicts(rev.reward)
            out.append(
                {
                    "step": step,
                    "group": job.group,
                    "instruction": instructions[job.group],
                    "draft": decode(draft_row.response_ids),
                    "draft_score": draft.score,
                    "draft_met": d_met,
                    "draft_unmet": d_unmet,
                    "hindsight_prompt": job.prompt,
                    "revision": rev.text,
                    "revision_score": rev.reward.score,
                    "revision_met": r_met,
                    "revision_unmet": r_unmet,
                    "beat_draft": rev.reward.dense > draft.dense,
                    "joined": joined is not None and joined.index == rev.index,
                    "outcome": outcome.kind,
                }
            )
    return out


def append_examples(path: Path, examples: Sequence[Mapping[str, Any]]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps(ex, ensure_ascii=False) + "\n")


def load_examples(path: Path, up_to_step: int | None = None) -> list[dict[str, Any]]:
    """The saved examples (those of steps ≤ ``up_to_step`` when given; broken lines skipped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            ex = json.loads(line)
        except json.JSONDecodeError:
            continue
        if up_to_step is None or int(ex.get("step", 0)) <= up_to_step:
            out.append(ex)
    return out


def trim_examples(path: Path, step: int) -> None:
    """Drop examples of steps after ``step`` (a resumed run redoes them)."""
    if path.exists():
        keep = load_examples(path, step)
        path.write_text("".join(json.dumps(ex, ensure_ascii=False) + "\n" for ex in keep), encoding="utf-8")


def choose_example(examples: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The most telling example: joined and beat its draft > beat its draft > joined > any; ties go to
    the one that fixed the most constraints, then the earliest."""
    if not examples:
        return None

    def rank(ex: Mapping[str, Any]) -> tuple[int, int, float]:
        tier = 3 if ex["joined"] and ex["beat_draft"] else 2 if ex["beat_draft"] else 1 if ex["joined"] else 0
        return (
            tier,
            len(ex["draft_unmet"]) - len(ex["revision_unmet"]),
            ex["revision_score"] - ex["draft_score"],
        )

    return max(examples, key=rank)


def _block(label: str, text: str, width: int = 96, limit: int = 600) -> list[str]:
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    wrapped = textwrap.wrap(text, width - 6) or ["(empty)"]
    return [f"  {label}", *(f"    {w}" for w in wrapped)]


def _prompt_lines(prompt: str, draft: str, width: int = 92, limit: int = 24) -> list[str]:
    """The hindsight prompt as the model saw it, the draft's text replaced by a marker, long lines cut."""
    if draft.strip():
        prompt = prompt.replace(draft.strip(), "<the draft above>")
    lines = [ln if len(ln) <= width else ln[: width - 1] + "…" for ln in prompt.strip().splitlines()]
    return lines if len(lines) <= limit else [*lines[: limit - 1], f"… ({len(lines) - limit + 1} more lines)"]


def format_example(ex: Mapping[str, Any]) -> str:
    lines = [f"One revision from step {ex['step']} (group {ex['group']}):"]
    lines += _block("instruction:", ex["instruction"])
    lines += _block(f"draft (score {ex['draft_score']:.2f}):", ex["draft"])
    lines += [f"    met:    {m}" for m in ex["draft_met"]] or ["    met:    (none)"]
    lines += [f"    missed: {m}" for m in ex["draft_unmet"]]
    lines.append("  hindsight prompt (what the model was asked; the draft shown above is elided):")
    lines += [f"    | {p}" for p in _prompt_lines(ex["hindsight_prompt"], ex["draft"])]
    lines += _block(
        f"revision (score {ex['revision_score']:.2f}, under the original constraints):", ex["revision"]
    )
    lines += [f"    missed: {m}" for m in ex["revision_unmet"]] or ["    every constraint met"]
    verdict = "beat its draft" if ex["beat_draft"] else "did not beat its draft"
    joined = "joined the group as the HE row" if ex["joined"] else f"did not join the group ({ex['outcome']})"
    lines.append(f"  → the revision {verdict} and {joined}.")
    return "\n".join(lines)


def format_steps(history: Sequence[Mapping[str, Any]]) -> str:
    """One line per step: reward, all-met rate, revisions tried / kept."""
    lines = []
    for h in history:
        tried = int(h.get("herl/revisions_generated", 0))
        kept = int(h.get("herl/kept", 0))
        lines.append(
            f"  step {int(h['training/global_step'])}: reward {h['critic/score/mean']:.3f}, all met "
            f"{h['herl/all_met_rate']:.2f}, revisions tried {tried}, kept {kept}"
            + (" (no group needed hindsight)" if tried == 0 else "")
        )
    return "\n".join(lines)


def report(out_dir: Path, history: Sequence[Mapping[str, Any]], last_step: int) -> str:
    """The end-of-run text (also written to ``hindsight_report.txt``)."""
    parts = ["What hindsight did, per step:", format_steps(history)]
    ex = choose_example(load_examples(out_dir / EXAMPLES_FILE, last_step))
    parts.append(
        format_example(ex)
        if ex is not None
        else "No revision in this run: every sampled group had a response meeting all its constraints."
    )
    text = "\n".join(parts) + "\n"
    (out_dir / REPORT_FILE).write_text(text, encoding="utf-8")
    return text
