"""Turn one source record (HIR-16K, RaR-Medicine) into one veRL training row, or a skip reason.

A veRL row (what ``RLHFDataset`` and our local engine read):

- ``data_source``: ``ifeval`` | ``ifbench`` | ``muldimif`` (routes the IF reward) or ``rar-medicine``
  (routes the rubric judge);
- ``prompt``: the chat list ``[{"role": ..., "content": ...}]`` given to the policy;
- ``ability``: ``instruction_following`` or ``medicine``;
- ``reward_model``: ``{"style": "rule" | "rubric", "ground_truth": str}``. For IF rows the ground
  truth is JSON text ``{"instruction_id_list": [...], "kwargs": [...]}`` (MulDimIF: ids are
  ``[category, subcategory, requirement]`` triples, no kwargs). JSON text, because IFEval/IFBench
  kwargs dicts differ per constraint and Arrow would otherwise widen them into one struct of every
  key. For rubric rows it is the reference answer (the judge never sees it, as released).
- ``extra_info``: ``index`` (position in the source), ``question`` (the user text the judge and the
  hindsight prompt show), plus per-source fields (IF: ``source_format``, ``constraint_pattern``;
  RaR: ``rubric`` as a list of ``{description, title, weight}``, ``reference_answer``, ``question_source``).

Why skip reasons instead of exceptions: converting 17K rows should report every problem class with
counts and examples, not stop at the first one (``--strict`` turns any of them into a failure).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

IF_SOURCES = ("ifeval", "ifbench", "muldimif")
RAR_SOURCE = "rar-medicine"

#: The 25 instruction ids of Google's IFEval (used only to tell IFEval rows from IFBench rows when a
#: record carries no usable ``data_source``).
IFEVAL_IDS = frozenset(
    {
        "keywords:existence", "keywords:frequency", "keywords:forbidden_words", "keywords:letter_frequency",
        "language:response_language", "length_constraints:number_sentences",
        "length_constraints:number_paragraphs", "length_constraints:number_words",
        "length_constraints:nth_paragraph_first_word", "detectable_content:number_placeholders",
        "detectable_content:postscript", "detectable_format:number_bullet_lists",
        "detectable_format:constrained_response", "detectable_format:number_highlighted_sections",
        "detectable_format:multiple_sections", "detectable_format:json_format", "detectable_format:title",
        "combination:two_responses", "combination:repeat_prompt", "startend:end_checker",
        "change_case:capital_word_frequency", "change_case:english_capital", "change_case:english_lowercase",
        "punctuation:no_comma", "startend:quotation",
    }
)  # fmt: skip


class SkipRow(Exception):
    """A record that cannot become a training row. ``reason`` is the counter key."""

    def __init__(self, reason: str, detail: str, *, unsupported: bool = False) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.unsupported = unsupported


@dataclass(frozen=True)
class Converted:
    row: dict[str, Any]
    shape: str  # "ifeval-like" | "constraint-table" | "rar"


def _tolist(value: Any) -> Any:
    """numpy arrays (pandas/parquet) -> lists, recursively enough for our fields."""
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        return value.tolist()
    return value


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _chat_from_list(turns: Sequence[Any]) -> list[dict[str, str]]:
    chat: list[dict[str, str]] = []
    for t in turns:
        if not isinstance(t, Mapping):
            raise SkipRow("bad_prompt", f"chat turn is not an object: {t!r:.80}")
        role = t.get("role", t.get("from"))
        content = t.get("content", t.get("value"))
        role = {"human": "user", "gpt": "assistant"}.get(str(role), role)
        if role not in ("system", "user", "assistant") or not isinstance(content, str):
            raise SkipRow(
                "bad_prompt", f"chat turn needs role system/user/assistant and text content: {t!r:.80}"
            )
        chat.append({"role": str(role), "content": content})
    while chat and chat[-1]["role"] == "assistant":  # a reference answer is not part of the prompt
        chat.pop()
    if not chat or chat[-1]["role"] != "user" or not chat[-1]["content"].strip():
        raise SkipRow("bad_prompt", "chat prompt must end with a non-empty user turn")
    return chat


def extract_prompt(record: Mapping[str, Any], text_keys: Sequence[str] = ("prompt",)) -> list[dict[str, str]]:
    """The chat prompt of a record: ``prompt`` as text or chat list, else ``messages``/``conversations``,
    else the first of ``text_keys`` that holds text."""
    for key in ("prompt", "messages", "conversations"):
        value = _tolist(record.get(key))
        if isinstance(value, list) and value:
            return _chat_from_list(value)
    for key in (*text_keys, "instruction", "question", "query"):
        value = record.get(key)
        if isinstance(value, str):
            if not value.strip():
                raise SkipRow("empty_prompt", f"field {key!r} is empty")
            return [{"role": "user", "content": value}]
    raise SkipRow("missing_prompt", "no prompt / messages / instruction / question field")


def user_text(chat: Sequence[Mapping[str, str]]) -> str:
    return "\n".join(t["content"] for t in chat if t["role"] == "user")


def _load_ground_truth(record: Mapping[str, Any]) -> Mapping[str, Any]:
    rm = record.get("reward_model")
    gt: Any = None
    if isinstance(rm, Mapping):
        gt = rm.get("ground_truth")
    if _is_missing(gt):
        gt = record.get("ground_truth")
    if _is_missing(gt):
        return record  # the ground-truth fields may sit at the top level (IFEval's input_data.jsonl)
    if isinstance(gt, str | bytes):
        try:
            gt = json.loads(gt)
        except json.JSONDecodeError as exc:
            raise SkipRow("bad_ground_truth_json", f"ground_truth is not JSON: {exc}") from None
    if not isinstance(gt, Mapping):
        raise SkipRow("bad_ground_truth", f"ground_truth must be an object, got {type(gt).__name__}")
    return gt


def _triples(items: Sequence[Any]) -> list[list[str]]:
    out = []
    for it in items:
        it = _tolist(it)
        if isinstance(it, Mapping):
            it = [
                it.get("category", it.get("type")),
                it.get("subcategory", it.get("subtype")),
                it.get("requirement", it.get("content", it.get("description"))),
            ]
        if not (isinstance(it, list | tuple) and len(it) == 3 and all(isinstance(x, str) and x for x in it)):
            raise SkipRow(
                "bad_constraint", f"MulDimIF constraint must be [category, subcategory, text]: {it!r:.100}"
            )
        out.append([str(x) for x in it])
    return out


def _clean_kwargs(entry: Any) -> dict[str, Any]:
    entry = _tolist(entry)
    if isinstance(entry, str):
        entry = json.loads(entry) if entry.strip() else {}
    if entry is None:
        return {}
    if not isinstance(entry, Mapping):
        raise SkipRow("bad_kwargs", f"kwargs entry must be an object, got {type(entry).__name__}")
    return {str(k): _tolist(v) for k, v in entry.items() if not _is_missing(v)}


def hir16k_to_row(record: Mapping[str, Any], index: int) -> Converted:
    """One HIR-16K record -> veRL row. Shapes: ifeval-like (``instruction_id_list`` + ``kwargs``),
    constraint table (``constraints`` [+ ``constraint_pattern``], MulDimIF triples), and
    ``checker`` + ``functions`` (unsupported: HeRL's IF reward cannot run those)."""
    if not isinstance(record, Mapping):
        raise SkipRow("not_an_object", f"record is {type(record).__name__}, not an object")
    chat = extract_prompt(record)
    gt = _load_ground_truth(record)
    declared = str(record.get("data_source") or "").strip().lower()
    pattern: str | None = None
    if "checker" in gt or "functions" in gt:
        raise SkipRow(
            "unsupported_checker_functions",
            "ground truth is checker+functions code; HeRL's IF reward cannot score it",
            unsupported=True,
        )
    ids = _tolist(gt.get("instruction_id_list"))
    if ids is not None:
        if not isinstance(ids, list) or not ids:
            raise SkipRow("no_constraints", "instruction_id_list is empty or not a list")
        if all(isinstance(x, list | tuple | Mapping) or hasattr(x, "tolist") for x in ids):
            source, shape, gt_out = "muldimif", "constraint-table", {"instruction_id_list": _triples(ids)}
        elif all(isinstance(x, str) and x for x in ids):
            raw_kwargs = _tolist(gt.get("kwargs"))
            if raw_kwargs is None:
                raw_kwargs = [{}] * len(ids)
            if not isinstance(raw_kwargs, list) or len(raw_kwargs) != len(ids):
                n = len(raw_kwargs) if isinstance(raw_kwargs, list) else "not a list"
                raise SkipRow("kwargs_length_mismatch", f"{len(ids)} instruction ids but kwargs has {n}")
            try:
                kwargs = [_clean_kwargs(k) for k in raw_kwargs]
            except json.JSONDecodeError as exc:
                raise SkipRow("bad_kwargs", f"kwargs entry is not JSON: {exc}") from None
            if declared in ("ifeval", "ifbench"):
                source = declared
            else:
                source = "ifeval" if all(i in IFEVAL_IDS for i in ids) else "ifbench"
            shape, gt_out = "ifeval-like", {"instruction_id_list": list(ids), "kwargs": kwargs}
        else:
            raise SkipRow(
                "bad_instruction_ids", "instruction_id_list mixes ids and triples or holds non-text"
            )
    elif "constraints" in gt:
        items = _tolist(gt.get("constraints"))
        if isinstance(items, str):
            try:
                items = json.loads(items)
            except json.JSONDecodeError:
                raise SkipRow("bad_constraint", "constraints is text but not JSON") from None
        if not isinstance(items, list) or not items:
            raise SkipRow("no_constraints", "constraints is empty or not a list")
        source, shape, gt_out = "muldimif", "constraint-table", {"instruction_id_list": _triples(items)}
        cp = gt.get("constraint_pattern", record.get("constraint_pattern"))
        pattern = None if _is_missing(cp) else str(cp)
    else:
        raise SkipRow(
            "unknown_ground_truth_shape",
            "ground truth has none of instruction_id_list / constraints / checker+functions",
        )
    if declared in IF_SOURCES and declared != source:
        raise SkipRow(
            "data_source_mismatch", f"data_source {declared!r} but the constraints are {source} style"
        )
    row = {
        "data_source": source,
        "prompt": chat,
        "ability": "instruction_following",
        "reward_model": {"style": "rule", "ground_truth": json.dumps(gt_out, ensure_ascii=False)},
        "extra_info": {
            "index": index,
            "question": user_text(chat),
            "source_format": shape,
            "constraint_pattern": pattern,
        },
    }
    return Converted(row, shape)


def _rubric(value: Any) -> list[dict[str, Any]]:
    value = _tolist(value)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise SkipRow("bad_rubric", "rubric is text but not JSON") from None
    if not isinstance(value, list) or not value:
        raise SkipRow("empty_rubric", "rubric is missing, empty or not a list")
    out = []
    for k, item in enumerate(value):
        if isinstance(item, str):
            item = {"description": item}
        if not isinstance(item, Mapping):
            raise SkipRow("bad_rubric", f"rubric item {k} is not an object")
        desc = item.get("description")
        if not isinstance(desc, str) or not desc.strip():
            raise SkipRow("bad_rubric", f"rubric item {k} has no description")
        w = item.get("weight")
        try:
            weight = 1.0 if _is_missing(w) else float(w)
        except (TypeError, ValueError):
            raise SkipRow("bad_rubric_weight", f"rubric item {k} weight {w!r} is not a number") from None
        if not math.isfinite(weight):
            raise SkipRow("bad_rubric_weight", f"rubric item {k} weight is not finite")
        title = item.get("title")
        out.append(
            {"description": desc.strip(), "title": "" if _is_missing(title) else str(title), "weight": weight}
        )
    return out


def rar_to_row(record: Mapping[str, Any], index: int) -> Converted:
    """One RaR-Medicine record (``question``, ``reference_answer``, ``rubric``) -> veRL row."""
    if not isinstance(record, Mapping):
        raise SkipRow("not_an_object", f"record is {type(record).__name__}, not an object")
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise SkipRow("missing_question", "question is missing or empty")
    rubric = record.get("rubric")
    if _is_missing(rubric) or (hasattr(rubric, "__len__") and len(rubric) == 0):
        rubric = record.get("rubric_list")
    items = _rubric(rubric)
    ref = record.get("reference_answer")
    ref = "" if _is_missing(ref) else str(ref)
    qsrc = record.get("question_source")
    row = {
        "data_source": RAR_SOURCE,
        "prompt": [{"role": "user", "content": question}],
        "ability": "medicine",
        "reward_model": {"style": "rubric", "ground_truth": ref},
        "extra_info": {
            "index": index,
            "question": question,
            "rubric": items,
            "reference_answer": ref,
            "question_source": "" if _is_missing(qsrc) else str(qsrc),
        },
    }
    return Converted(row, "rar")


CONVERTERS = {"hir16k": hir16k_to_row, "rar-medicine": rar_to_row}
