"""The rubric LLM-judge reward (medicine, RaR-style rubrics).

One chat-completion call per response scores every rubric item at once (``{"results": [0/1, ...]}``),
against any OpenAI-compatible endpoint (released setting: gpt-4o-mini, T = 0.1, max_tokens 4096).
Calls run concurrently (aiohttp, bounded by a semaphore) with a timeout and bounded retries with
exponential back-off; a 429/503 ``Retry-After`` is honoured up to a cap.

Why faults never raise: a judge outage must not kill a multi-hour training run. A response whose
judging fails after every retry gets score 0, ``error=<reason>``, and its rubric items listed as
unclear; the reason is counted in :class:`JudgeStats` so the metrics exporter can show
``judge errors by reason`` and an operator can tell an outage from a bad prompt.

The API key is read only from the environment variable named by ``JudgeConfig.api_key_env`` (the
operator maps a Kubernetes Secret to it). It is never stored on the config, logged or put in errors.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from email.utils import parsedate_to_datetime
from typing import Any

from herl.rewards.judge_parse import (
    JudgeParseError,
    PitfallPolicy,
    RubricItem,
    aggregate,
    build_judge_messages,
    coerce_rubric,
    parse_judge_output,
)
from herl.rewards.types import ConstraintVerdict, RewardResult

log = logging.getLogger(__name__)

#: Counter keys (the ``reason`` of a failed attempt / of a response's final error).
REASONS = (
    "timeout",  # no answer within timeout_s
    "connection",  # refused, reset, disconnected
    "http_429",  # rate limited
    "http_5xx",  # server error
    "http_4xx",  # other client error (bad key, bad model): not retried
    "bad_response",  # 200 but not an OpenAI chat-completion body
    "garbage",  # reply text holds no usable JSON list
    "count_mismatch",  # wrong number of verdicts
    "empty_rubric",  # nothing to judge: score 0 without a call
    "invalid_item",  # malformed rubric item: score 0 without a call
)
_NOT_RETRIED = frozenset({"http_4xx", "empty_rubric", "invalid_item"})


@dataclass(frozen=True)
class JudgeConfig:
    """How to reach and use the judge. Defaults are the released HeRL medicine settings.

    ``backoff_base_s`` · 2^attempt (capped at ``backoff_max_s``) is the wait before a retry; tests
    set it tiny. ``max_retries`` = 2 means up to 3 attempts per response.
    """

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o-mini"
    temperature: float = 0.1
    max_tokens: int = 4096
    api_key_env: str = "HERL_JUDGE_API_KEY"
    concurrency: int = 512
    timeout_s: float = 60.0
    max_retries: int = 2
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    retry_after_max_s: float = 30.0
    pitfall_policy: PitfallPolicy = "clamp"
    show_weights: bool = True
    json_mode: bool = False  # send response_format={"type": "json_object"} (not all servers accept it)
    data_source: str = "rar-medicine"

    def __post_init__(self) -> None:
        if self.pitfall_policy not in ("clamp", "subtract"):
            raise ValueError(f"judge pitfall_policy must be clamp or subtract, got {self.pitfall_policy!r}")
        if self.concurrency < 1 or self.max_retries < 0 or self.timeout_s <= 0:
            raise ValueError("judge concurrency >= 1, max_retries >= 0 and timeout_s > 0 are required")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> JudgeConfig:
        """Build from a plain mapping (e.g. a pydantic spec's ``model_dump()``); unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown judge config keys: {', '.join(unknown)} (allowed: {', '.join(sorted(known))})"
            )
        return cls(**dict(data))

    @classmethod
    def from_spec(
        cls, spec: Any, *, api_key_env: str = "HERL_JUDGE_API_KEY", **overrides: Any
    ) -> JudgeConfig:
        """Map a HeRLJob ``spec.reward.judge`` (:class:`herl.api.model.JudgeSpec`, duck-typed) to a config.

        ``api_key_env`` is the variable the operator fills from ``apiKeySecretRef``.
        """
        values: dict[str, Any] = {
            "base_url": spec.endpoint,
            "model": spec.model,
            "temperature": spec.temperature,
            "max_tokens": spec.max_tokens,
            "concurrency": spec.concurrency,
            "timeout_s": float(spec.timeout_seconds),
            "max_retries": spec.max_retries,
            "backoff_base_s": float(spec.retry_backoff_seconds),
            "pitfall_policy": spec.pitfall_policy,
            "api_key_env": api_key_env,
        }
        values.update(overrides)
        return cls.from_mapping(values)

    @property
    def url(self) -> str:
        base = self.base_url.rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"


@dataclass
class JudgeStats:
    """Counters for one batch or, merged, for a whole run. Safe to read from another thread.

    - ``requests``: HTTP attempts made; ``retries``: attempts beyond the first.
    - ``items``: responses scored (each exactly once); ``ok``: scored by the judge.
    - ``errors_by_reason``: responses that ended with score 0 and an error, by final reason.
    - ``attempt_errors_by_reason``: every failed attempt, retried or not, by reason.
    """

    requests: int = 0
    retries: int = 0
    items: int = 0
    ok: int = 0
    errors_by_reason: Counter[str] = field(default_factory=Counter)
    attempt_errors_by_reason: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def merge(self, other: JudgeStats) -> None:
        with self._lock:
            self.requests += other.requests
            self.retries += other.retries
            self.items += other.items
            self.ok += other.ok
            self.errors_by_reason.update(other.errors_by_reason)
            self.attempt_errors_by_reason.update(other.attempt_errors_by_reason)

    @property
    def errors(self) -> int:
        return sum(self.errors_by_reason.values())

    def as_dict(self) -> dict[str, Any]:
        """A plain snapshot for metrics exporters and logs."""
        with self._lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "items": self.items,
                "ok": self.ok,
                "errors": sum(self.errors_by_reason.values()),
                "errors_by_reason": dict(self.errors_by_reason),
                "attempt_errors_by_reason": dict(self.attempt_errors_by_reason),
            }


_GLOBAL_STATS = JudgeStats()


def judge_stats() -> JudgeStats:
    """Process-wide totals, updated after every batch (what the metrics exporter reads)."""
    return _GLOBAL_STATS


@dataclass(frozen=True)
class JudgeItem:
    """One response to judge against its rubric."""

    question: str
    response: str
    rubric: tuple[Any, ...]
    data_source: str = ""

    @classmethod
    def from_extra_info(
        cls, extra_info: Mapping[str, Any], response: str, data_source: str = ""
    ) -> JudgeItem:
        """Build from a veRL row's ``extra_info`` (what ``herl data convert --from rar-medicine`` writes).

        The question is ``extra_info.question``, else the user turns of ``extra_info.prompt``; the rubric
        is ``extra_info.rubric``, else ``extra_info.rubric_list``.
        """
        question = extra_info.get("question")
        if not question:
            turns = extra_info.get("prompt") or []
            question = "\n".join(
                str(t.get("content", "")) for t in turns if isinstance(t, Mapping) and t.get("role") == "user"
            )
        rubric = extra_info.get("rubric")
        if rubric is None:
            rubric = extra_info.get("rubric_list")
        return cls(str(question or ""), response, tuple(rubric or ()), data_source)


class _AttemptError(Exception):
    def __init__(self, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds, also fractional, or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _error_result(rubric: Sequence[RubricItem], reason: str, data_source: str) -> RewardResult:
    verdicts = tuple(
        ConstraintVerdict(
            id=f"rubric-{i}", description=r.description, followed=None, weight=r.weight, note=r.title or None
        )
        for i, r in enumerate(rubric)
    )
    return RewardResult(
        score=0.0, dense=0.0, all_met=False, constraints=verdicts, error=reason, data_source=data_source
    )


class JudgeClient:
    """Scores batches of :class:`JudgeItem` over one aiohttp session. Use as an async context manager."""

    def __init__(self, cfg: JudgeConfig, *, session: Any = None) -> None:
        self.cfg = cfg
        self._session = session
        self._own_session = session is None
        self._sem = asyncio.Semaphore(cfg.concurrency)
        self._headers = {"Content-Type": "application/json"}
        key = os.environ.get(cfg.api_key_env, "")
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        else:
            log.warning(
                "judge: environment variable %s is not set; calling %s without an API key",
                cfg.api_key_env,
                cfg.url,
            )

    async def __aenter__(self) -> JudgeClient:
        if self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.cfg.concurrency),
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s),
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _followed(self, weight: float, present: bool | None) -> bool | None:
        """The judge answers "is this criterion present in the answer". For a pitfall (weight < 0) under
        ``subtract``, present means the answer made the mistake, so it is reported as not followed and the
        hindsight prompt lists it among the things to fix. Under ``clamp`` (released) the raw answer is
        kept, as the released code did (pitfalls are ignored by the score there anyway)."""
        if weight < 0 and self.cfg.pitfall_policy == "subtract" and present is not None:
            return not present
        return present

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.cfg.retry_after_max_s)
        base = min(self.cfg.backoff_base_s * (2**attempt), self.cfg.backoff_max_s)
        return base * (0.75 + 0.5 * random.random())  # jitter: spread retries of a burst

    async def _call_once(self, messages: list[dict[str, str]], n_items: int) -> list[bool | None]:
        import aiohttp

        payload: dict[str, Any] = {
            "model": self.cfg.model,
            "messages": messages,
            "temperature": self.cfg.temperature,
            "max_tokens": self.cfg.max_tokens,
        }
        if self.cfg.json_mode:
            payload["response_format"] = {"type": "json_object"}
        assert self._session is not None, "use JudgeClient as 'async with'"
        try:
            async with self._session.post(self.cfg.url, json=payload, headers=self._headers) as resp:
                if resp.status == 429 or resp.status >= 500:
                    retry_after = _parse_retry_after(resp.headers.get("Retry-After"))
                    await resp.read()
                    reason = "http_429" if resp.status == 429 else "http_5xx"
                    raise _AttemptError(reason, f"judge HTTP {resp.status}", retry_after)
                if resp.status >= 400:
                    await resp.read()
                    raise _AttemptError("http_4xx", f"judge HTTP {resp.status}")
                try:
                    body = await resp.json(content_type=None)
                    text = body["choices"][0]["message"]["content"]
                except (ValueError, KeyError, IndexError, TypeError, aiohttp.ContentTypeError):
                    raise _AttemptError("bad_response", "judge reply is not a chat completion") from None
        except TimeoutError:
            raise _AttemptError("timeout", f"judge call exceeded {self.cfg.timeout_s} s") from None
        except aiohttp.ClientError as exc:
            raise _AttemptError("connection", f"judge connection error: {type(exc).__name__}") from None
        try:
            return parse_judge_output(text if isinstance(text, str) else "", n_items)
        except JudgeParseError as exc:
            raise _AttemptError(exc.reason, str(exc)) from None

    async def score_one(self, item: JudgeItem, stats: JudgeStats) -> RewardResult:
        """Judge one response; never raises (except cancellation)."""
        source = item.data_source or self.cfg.data_source
        stats.items += 1
        try:
            rubric = coerce_rubric(item.rubric)
        except ValueError:
            stats.errors_by_reason["invalid_item"] += 1
            return RewardResult(0.0, 0.0, False, error="invalid_item", data_source=source)
        if not rubric:
            stats.errors_by_reason["empty_rubric"] += 1
            return _error_result(rubric, "empty_rubric", source)
        messages = build_judge_messages(
            item.question, item.response, rubric, show_weights=self.cfg.show_weights
        )
        reason = "timeout"
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                stats.retries += 1
            try:
                async with self._sem:
                    stats.requests += 1
                    verdicts = await self._call_once(messages, len(rubric))
            except _AttemptError as exc:
                reason = exc.reason
                stats.attempt_errors_by_reason[reason] += 1
                if reason in _NOT_RETRIED or attempt == self.cfg.max_retries:
                    break
                await asyncio.sleep(self._backoff(attempt, exc.retry_after))
                continue
            stats.ok += 1
            score = aggregate(rubric, verdicts, self.cfg.pitfall_policy)
            constraints = tuple(
                ConstraintVerdict(
                    id=f"rubric-{i}",
                    description=r.description,
                    followed=self._followed(r.weight, v),
                    weight=r.weight,
                    note=r.title or None,
                )
                for i, (r, v) in enumerate(zip(rubric, verdicts, strict=True))
            )
            return RewardResult(
                score=score,
                dense=score,
                all_met=score >= 1.0 - 1e-9,
                constraints=constraints,
                data_source=source,
            )
        stats.errors_by_reason[reason] += 1
        log.info("judge: response scored 0 after %d attempt(s): %s", attempt + 1, reason)
        return _error_result(rubric, reason, source)

    async def score_batch(
        self, items: Sequence[JudgeItem], stats: JudgeStats | None = None
    ) -> list[RewardResult]:
        """Judge every item concurrently; results are in input order, one per item."""
        stats = stats if stats is not None else JudgeStats()
        return list(await asyncio.gather(*(self.score_one(it, stats) for it in items)))


def _as_item(raw: JudgeItem | Mapping[str, Any]) -> JudgeItem:
    if isinstance(raw, JudgeItem):
        return raw
    return JudgeItem(
        question=str(raw.get("question", "")),
        response=str(raw.get("response", "")),
        rubric=tuple(raw.get("rubric") or ()),
        data_source=str(raw.get("data_source", "")),
    )


async def score_batch_judge_async(
    items: Sequence[JudgeItem | Mapping[str, Any]], cfg: JudgeConfig, stats: JudgeStats | None = None
) -> list[RewardResult]:
    """Async entry point: one session for the batch; counters go to ``stats`` and the global totals."""
    local = JudgeStats()
    try:
        async with JudgeClient(cfg) as client:
            return await client.score_batch([_as_item(i) for i in items], local)
    finally:
        _GLOBAL_STATS.merge(local)
        if stats is not None:
            stats.merge(local)


def score_batch_judge(
    items: Sequence[JudgeItem | Mapping[str, Any]], cfg: JudgeConfig, stats: JudgeStats | None = None
) -> list[RewardResult]:
    """Sync wrapper for engines: runs its own event loop (in a helper thread if one is already running).

    Items are :class:`JudgeItem` or dicts with ``question``, ``response``, ``rubric`` (list of
    ``{description, title, weight}`` or strings) and optionally ``data_source``.
    """
    if not items:
        return []
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(score_batch_judge_async(items, cfg, stats))
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["out"] = asyncio.run(score_batch_judge_async(items, cfg, stats))
        except BaseException as exc:  # re-raised in the caller's thread
            box["exc"] = exc

    t = threading.Thread(target=runner, name="herl-judge", daemon=True)
    t.start()
    t.join()
    if "exc" in box:
        raise box["exc"]
    return box["out"]
