"""The instruction-following reward: one response, one ground truth, one :class:`RewardResult`.

Semantics follow HeRL's released ``if_score`` (see docs/rewards.md):

- routing by ``data_source``: ``ifeval`` (lm-eval's copy of Google's checkers), ``ifbench`` (AllenAI's, via
  if-verifiable) and ``muldimif`` (our regex checkers, :mod:`herl.rewards.muldimif`);
- ``kwargs`` entries that are ``None`` are dropped before describing and checking (only ``None``: IFBench's
  ``repeat:repeat_span`` legitimately passes ``n_start=0``);
- an empty (whitespace-only) response fails every constraint;
- ``score`` = fraction of constraints met (the RL reward), ``all_met`` = every one met, ``dense`` = ``score``
  but 0 when the response is repetitive (its last 160 characters occur 3 or more times in it);
- anything that goes wrong becomes data: ``score`` 0 and a short ``error`` reason; nothing is raised, so a
  malformed row cannot kill a training step. Unknown sources and ids are also logged once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from herl.rewards import checkers, muldimif
from herl.rewards.types import ConstraintVerdict, RewardResult

log = logging.getLogger(__name__)

DATA_SOURCES = ("ifeval", "ifbench", "muldimif")
REPETITION_WINDOW = 160
REPETITION_MIN_COUNT = 3
UNKNOWN_ID_NOTE = "unknown constraint id for this data source"

_warned: set[tuple[str, str]] = set()


def _warn_once(kind: str, what: str, message: str) -> None:
    key = (kind, what)
    if key not in _warned and len(_warned) < 10_000:
        _warned.add(key)
        log.warning(message)


def is_repetitive(response: str) -> bool:
    """HeRL's degenerate-output rule: the last 160 characters occur >= 3 times (non-overlapping) in it.

    A response shorter than the window is its own tail and occurs once, so it is never repetitive.
    """
    if not response:
        return False
    tail = response[-REPETITION_WINDOW:]
    return response.count(tail) >= REPETITION_MIN_COUNT


def clean_kwargs(kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Drop ``None`` values (HF-style rows carry every possible key, mostly None)."""
    return {k: v for k, v in (kwargs or {}).items() if v is not None}


@contextmanager
def seeded_random(instruction_id: str, kwargs: Mapping[str, Any]) -> Iterator[None]:
    """Make a checker's ``build_description`` deterministic, leaving the global ``random`` state untouched.

    Upstream checkers draw missing or invalid arguments from the global ``random`` module (e.g. IFEval's
    ``keywords:letter_frequency`` replaces a non-letter such as ``"#"`` by a random letter, which makes the
    reference's own verdict vary run to run). A reward must not: we seed from the constraint itself.
    """
    digest = hashlib.sha256(f"{instruction_id}|{json.dumps(kwargs, sort_keys=True, default=str)}".encode())
    saved = random.getstate()
    random.seed(int.from_bytes(digest.digest()[:8], "big"))
    try:
        yield
    finally:
        random.setstate(saved)


def build_checker(
    registry: Mapping[str, Any],
    instruction_id: str,
    kwargs: Mapping[str, Any],
    prompt: str,
) -> tuple[Any, str]:
    """Instantiate and describe one upstream checker as Google's ``evaluation_lib`` does (seeded)."""
    instruction = registry[instruction_id](instruction_id)
    with seeded_random(instruction_id, kwargs):
        description = instruction.build_description(**kwargs)
        args = instruction.get_instruction_args()
        if args and "prompt" in args:
            description = instruction.build_description(prompt=prompt)
    return instruction, str(description)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if hasattr(value, "tolist"):  # numpy arrays from parquet
        value = value.tolist()
    return list(value)


def normalize_ground_truth(ground_truth: Any) -> tuple[list[Any], list[dict[str, Any]]]:
    """``(instruction_id_list, kwargs_list)`` from a dict or a JSON string; kwargs padded with ``{}``."""
    if isinstance(ground_truth, (str, bytes)):
        ground_truth = json.loads(ground_truth)
    if not isinstance(ground_truth, Mapping):
        raise TypeError(f"ground_truth must be a mapping or JSON object, got {type(ground_truth).__name__}")
    ids = _as_list(ground_truth.get("instruction_id_list"))
    if not ids and "constraints" in ground_truth:  # MulDimIF's own field name
        ids = _as_list(ground_truth.get("constraints"))
    raw_kwargs = _as_list(ground_truth.get("kwargs"))
    kwargs: list[dict[str, Any]] = []
    for i in range(len(ids)):
        entry = raw_kwargs[i] if i < len(raw_kwargs) else None
        if isinstance(entry, str):
            entry = json.loads(entry) if entry.strip() else None
        kwargs.append(clean_kwargs(entry))
    return ids, kwargs


def check_registry_constraint(
    registry: Mapping[str, Any],
    instruction_id: str,
    kwargs: Mapping[str, Any],
    prompt: str,
    response: str,
) -> ConstraintVerdict:
    """Describe and check one IFEval/IFBench constraint the way Google's ``evaluation_lib`` does."""
    kwargs = clean_kwargs(kwargs)
    cls = registry.get(instruction_id)
    if cls is None:
        return ConstraintVerdict(
            id=instruction_id, description="", followed=None, kwargs=dict(kwargs), note=UNKNOWN_ID_NOTE
        )
    instruction, description = build_checker(registry, instruction_id, kwargs, prompt)
    if instruction_id == "words:start_verb" and not _pos_tagger():
        return ConstraintVerdict(
            id=instruction_id,
            description=description,
            followed=None,
            kwargs=dict(kwargs),
            note=checkers.UNSUPPORTED_NOTE,
        )
    followed = bool(response.strip()) and bool(instruction.check_following(response))
    return ConstraintVerdict(
        id=instruction_id, description=description, followed=followed, kwargs=dict(kwargs)
    )


_tagger_state: list[bool] = []


def _pos_tagger() -> bool:
    if not _tagger_state:
        _tagger_state.append(checkers.pos_tagger_available())
    return _tagger_state[0]


def _muldimif_verdict(item: Any, response: str) -> ConstraintVerdict:
    triple = _as_list(item)
    if len(triple) != 3 or not all(isinstance(x, str) for x in triple):
        raise ValueError(f"MulDimIF constraint must be [category, subcategory, requirement], got {item!r}")
    category, subcategory, requirement = triple
    followed, note = muldimif.check(category, subcategory, requirement, response)
    return ConstraintVerdict(
        id=f"{category}_{subcategory}", description=muldimif.describe(*triple), followed=followed, note=note
    )


def _error(
    reason: str, source: str, constraints: Sequence[ConstraintVerdict] = (), repetitive: bool = False
) -> RewardResult:
    return RewardResult(
        score=0.0,
        dense=0.0,
        all_met=False,
        constraints=tuple(constraints),
        repetitive=repetitive,
        error=reason,
        data_source=source,
    )


def score_if(response: str, ground_truth: Any, data_source: str, *, prompt: str = "") -> RewardResult:
    """Score one response against its IF constraints. Never raises; failures come back as ``error``.

    ``ground_truth`` is ``{"instruction_id_list": [...], "kwargs": [...]}`` (or its JSON text); for
    ``muldimif`` the ids are ``[category, subcategory, requirement_text]`` triples and kwargs are unused.
    ``prompt`` is only needed by checkers whose arguments include the prompt itself.
    """
    source = str(data_source or "").strip().lower()
    if not isinstance(response, str):
        return _error(f"bad_response: expected str, got {type(response).__name__}", source)
    repetitive = is_repetitive(response)
    if source not in DATA_SOURCES:
        _warn_once(
            "source",
            source,
            f"IF reward: unknown data_source {data_source!r}; "
            f"expected one of {', '.join(DATA_SOURCES)}; such rows score 0",
        )
        return _error(f"unknown_data_source: {data_source!r}", source, repetitive=repetitive)
    try:
        ids, kwargs_list = normalize_ground_truth(ground_truth)
    except (TypeError, ValueError) as exc:
        return _error(f"bad_ground_truth: {exc}", source, repetitive=repetitive)
    if not ids:
        return _error("no_constraints", source, repetitive=repetitive)

    verdicts: list[ConstraintVerdict] = []
    error: str | None = None
    try:
        registry = (
            checkers.ifeval_registry()
            if source == "ifeval"
            else checkers.ifbench_registry()
            if source == "ifbench"
            else None
        )
    except Exception as exc:  # a missing package or asset: report, do not kill the step
        return _error(f"checker_load_failed: {type(exc).__name__}: {exc}", source, repetitive=repetitive)
    for instruction_id, kwargs in zip(ids, kwargs_list, strict=True):
        try:
            if registry is None:
                verdict = _muldimif_verdict(instruction_id, response)
            else:
                verdict = check_registry_constraint(registry, str(instruction_id), kwargs, prompt, response)
        except Exception as exc:  # upstream checkers raise on odd inputs; HeRL scores such a response 0
            cid = str(instruction_id)
            verdict = ConstraintVerdict(
                id=cid,
                description="",
                followed=False,
                kwargs=dict(kwargs),
                note=f"checker error: {type(exc).__name__}: {exc}",
            )
            error = error or f"checker_error: {cid}: {type(exc).__name__}: {str(exc)[:200]}"
        if verdict.note == UNKNOWN_ID_NOTE:
            _warn_once(
                "id",
                f"{source}:{verdict.id}",
                f"IF reward: unknown {source} constraint id {verdict.id!r}; such rows score 0",
            )
            error = error or f"unknown_constraint: {verdict.id!r}"
        verdicts.append(verdict)
    if error is not None:
        return _error(error, source, verdicts, repetitive)
    met = sum(1 for v in verdicts if v.followed is True)
    score = met / len(verdicts)
    return RewardResult(
        score=score,
        dense=0.0 if repetitive else score,
        all_met=met == len(verdicts),
        constraints=tuple(verdicts),
        repetitive=repetitive,
        data_source=source,
    )


def verl_compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    **_: Any,
) -> dict[str, Any]:
    """veRL ``custom_reward_function`` adapter (same keys as HeRL's ``if_score``: score, dense, sparse).

    Every value is a scalar or a short string so veRL can put the extra keys into ``reward_extra_info``.
    """
    prompt = ""
    if extra_info:
        prompt = str(extra_info.get("question") or "")
    r = score_if(solution_str, ground_truth, data_source, prompt=prompt)
    return {
        "score": r.score,
        "dense": r.dense,
        "sparse": 1.0 if r.all_met else 0.0,
        "repetitive": 1.0 if r.repetitive else 0.0,
        "num_constraints": len(r.constraints),
        "num_met": len(r.met),
        "num_unclear": len(r.unclear),
        "error": r.error or "",
    }
