"""Pure parts of the rubric LLM judge: the judge prompt, tolerant parsing and weighted aggregation.

Kept free of I/O so they can be tested exhaustively and reused by other callers (e.g. an offline
re-scoring script). The network client lives in :mod:`herl.rewards.judge`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

PitfallPolicy = Literal["clamp", "subtract"]

JUDGE_SYSTEM_PROMPT = (
    "You are an expert evaluator. You receive a prompt, a response to it and a numbered list of rubric "
    "items. Decide for each rubric item, independently, whether the response meets it (1) or not (0). "
    "Judge only what the response actually says. Reply with JSON only, in the form "
    '{"results": [1, 0, ...]}, with exactly one 0/1 entry per rubric item, in the order given.'
)


@dataclass(frozen=True)
class RubricItem:
    """One rubric criterion. ``weight`` < 0 marks a RaR "pitfall" (a thing the answer must not do)."""

    description: str
    weight: float = 1.0
    title: str = ""

    @classmethod
    def coerce(cls, raw: Any) -> RubricItem:
        """Accept a RubricItem, a RaR dict ``{description, title, weight}`` or a plain string.

        A missing or null weight counts as 1 (as released). Raises ValueError on anything else, so a
        malformed rubric is reported by the caller instead of being judged silently.
        """
        if isinstance(raw, RubricItem):
            return raw
        if isinstance(raw, str):
            if not raw.strip():
                raise ValueError("empty rubric description")
            return cls(description=raw.strip())
        if isinstance(raw, Mapping):
            desc = raw.get("description")
            if desc is None:
                desc = raw.get("criterion", raw.get("text"))
            if not isinstance(desc, str) or not desc.strip():
                raise ValueError(f"rubric item without a description: {raw!r:.120}")
            weight = raw.get("weight")
            if weight is None:
                weight = 1.0
            try:
                w = float(weight)
            except (TypeError, ValueError):
                raise ValueError(f"rubric weight is not a number: {weight!r}") from None
            if not math.isfinite(w):
                raise ValueError(f"rubric weight is not finite: {weight!r}")
            title = raw.get("title") or ""
            return cls(description=desc.strip(), weight=w, title=str(title))
        raise ValueError(f"rubric item must be a dict or a string, got {type(raw).__name__}")


def coerce_rubric(raw: Iterable[Any]) -> tuple[RubricItem, ...]:
    return tuple(RubricItem.coerce(r) for r in raw)


def format_weight(w: float) -> str:
    return f"{w:g}"


def build_judge_messages(
    question: str, response: str, rubric: Sequence[RubricItem], *, show_weights: bool = True
) -> list[dict[str, str]]:
    """The chat messages for one judge call: all rubric items of one response at once."""
    lines = []
    for i, item in enumerate(rubric, start=1):
        suffix = f" (weight: {format_weight(item.weight)})" if show_weights else ""
        lines.append(f"{i}. {' '.join(item.description.split())}{suffix}")
    user = (
        f"<prompt>\n{question.strip()}\n</prompt>\n\n"
        f"<response>\n{response.strip()}\n</response>\n\n"
        f"<rubrics>\n" + "\n".join(lines) + "\n</rubrics>\n\n"
        f'Return {{"results": [...]}} with {len(rubric)} entries.'
    )
    return [{"role": "system", "content": JUDGE_SYSTEM_PROMPT}, {"role": "user", "content": user}]


class JudgeParseError(ValueError):
    """The judge's text could not be turned into verdicts. ``reason`` is a counter key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_TRUE_WORDS = frozenset(
    {"1", "yes", "y", "true", "t", "met", "meets", "pass", "passed", "satisfied", "correct"}
)
_FALSE_WORDS = frozenset(
    {
        "0",
        "no",
        "n",
        "false",
        "f",
        "not met",
        "unmet",
        "fail",
        "failed",
        "not satisfied",
        "unsatisfied",
        "incorrect",
        "does not meet",
    }
)
_UNCLEAR_WORDS = frozenset({"unclear", "unknown", "n/a", "na", "none", "null", "partial", "uncertain", "?"})
_LIST_KEYS = (
    "results",
    "result",
    "scores",
    "verdicts",
    "judgments",
    "judgements",
    "items",
    "rubrics",
    "answers",
)
_ITEM_KEYS = (
    "result",
    "met",
    "score",
    "value",
    "verdict",
    "satisfied",
    "is_following",
    "passed",
    "pass",
    "judgment",
    "judgement",
    "answer",
    "meets",
)
_INDEX_KEYS = ("index", "id", "item", "number", "idx", "rubric")


def _outermost(text: str, open_ch: str, close_ch: str) -> str | None:
    start = text.find(open_ch)
    end = text.rfind(close_ch)
    if start == -1 or end <= start:
        return None
    return text[start : end + 1]


def _candidates(text: str) -> list[str]:
    out: list[str] = []
    out.extend(m.group(1).strip() for m in _FENCE.finditer(text))
    out.append(text.strip())
    for o, c in (("{", "}"), ("[", "]")):
        span = _outermost(text, o, c)
        if span is not None:
            out.append(span)
    return out


def coerce_verdict(value: Any) -> bool | None:
    """Turn one judge value into met / not met / unclear (None). Lenient by design."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value >= 0.5
    if isinstance(value, str):
        s = value.strip().strip(".").lower()
        if s in _TRUE_WORDS:
            return True
        if s in _FALSE_WORDS:
            return False
        if s in _UNCLEAR_WORDS:
            return None
        try:
            return float(s) >= 0.5
        except ValueError:
            return None
    if isinstance(value, Mapping):
        for key in _ITEM_KEYS:
            if key in value:
                return coerce_verdict(value[key])
        return None
    return None


def _extract_list(obj: Any) -> list[Any] | None:
    if isinstance(obj, list):
        return obj
    if isinstance(obj, Mapping):
        for key in _LIST_KEYS:
            if isinstance(obj.get(key), list):
                return obj[key]
        lists = [v for v in obj.values() if isinstance(v, list)]
        if len(lists) == 1:
            return lists[0]
        # {"1": 1, "2": 0, ...}: numbered keys.
        if obj and all(str(k).strip().isdigit() for k in obj):
            return [obj[k] for k in sorted(obj, key=lambda k: int(str(k).strip()))]
    return None


def _order_items(items: list[Any]) -> list[Any]:
    """Per-item dicts that all carry a numeric index are put in index order."""
    if not items or not all(isinstance(x, Mapping) for x in items):
        return items
    keys: list[int] = []
    for x in items:
        idx = next((x[k] for k in _INDEX_KEYS if k in x), None)
        try:
            keys.append(int(idx))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return items
    if len(set(keys)) != len(keys):
        return items
    return [x for _, x in sorted(zip(keys, items, strict=True), key=lambda p: p[0])]


def parse_judge_output(text: str, n_items: int) -> list[bool | None]:
    """Parse the judge's reply into ``n_items`` verdicts.

    Tries, in order: each fenced code block, the whole text, the outermost ``{...}``, the outermost
    ``[...]``. The first candidate that is JSON and holds a list wins. Raises
    :class:`JudgeParseError` with reason ``garbage`` (no usable JSON) or ``count_mismatch``.
    """
    if not isinstance(text, str) or not text.strip():
        raise JudgeParseError("garbage", "empty judge reply")
    found: list[Any] | None = None
    for cand in _candidates(text):
        try:
            obj = json.loads(cand)
        except (json.JSONDecodeError, ValueError):
            continue
        lst = _extract_list(obj)
        if lst is not None:
            found = lst
            break
    if found is None:
        raise JudgeParseError("garbage", f"no JSON list of verdicts in judge reply: {text[:80]!r}")
    if len(found) != n_items:
        raise JudgeParseError(
            "count_mismatch", f"judge returned {len(found)} verdicts for {n_items} rubric items"
        )
    return [coerce_verdict(v) for v in _order_items(found)]


def aggregate(rubric: Sequence[RubricItem], verdicts: Sequence[bool | None], policy: PitfallPolicy) -> float:
    """Weighted rubric score in [0, 1]. ``None`` (unclear) counts as not met.

    - ``clamp`` (released HeRL): weights below 0 become 0, so pitfalls are ignored;
      score = Σ w⁺·c / Σ w⁺.
    - ``subtract`` (RaR explicit with pitfalls): a met pitfall subtracts |w|; the sum is normalised
      by the positive weights only and clamped to [0, 1]:
      score = clamp((Σ_{w>0} w·c − Σ_{w<0} |w|·c) / Σ_{w>0} w, 0, 1).

    With no positive weight the score is 0 (nothing can be earned).
    """
    if len(rubric) != len(verdicts):
        raise ValueError("rubric and verdicts differ in length")
    if policy not in ("clamp", "subtract"):
        raise ValueError(f"unknown pitfall policy {policy!r} (allowed: clamp, subtract)")
    positive = sum(item.weight for item in rubric if item.weight > 0)
    if positive <= 0:
        return 0.0
    earned = sum(
        item.weight for item, v in zip(rubric, verdicts, strict=True) if item.weight > 0 and v is True
    )
    if policy == "subtract":
        earned -= sum(
            -item.weight for item, v in zip(rubric, verdicts, strict=True) if item.weight < 0 and v is True
        )
    return min(1.0, max(0.0, earned / positive))
