"""The rubric judge against a REAL HTTP server on 127.0.0.1 that plays an OpenAI-compatible endpoint.

The server decides each verdict from the rubric text ("[yes]" items are met), so the expected score of
every response is known. A per-response fault plan makes it misbehave on chosen attempts (timeouts,
5xx, 429 with Retry-After, garbage, wrong item count, non-JSON bodies, dropped connections, 401).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from herl.rewards.judge import (
    JudgeConfig,
    JudgeItem,
    JudgeStats,
    judge_stats,
    score_batch_judge,
    score_batch_judge_async,
)

FAULT_REASON = {
    "timeout": "timeout",
    "500": "http_5xx",
    "503": "http_5xx",
    "429": "http_429",
    "garbage": "garbage",
    "count": "count_mismatch",
    "badbody": "bad_response",
    "drop": "connection",
}
_ID = re.compile(r"<response>\n(?:.*?)\bid=(\d+)", re.DOTALL)
_ITEM = re.compile(r"^\d+\. (.*)$", re.MULTILINE)


class FakeJudge:
    """An aiohttp server in its own thread and event loop (so sync callers can block freely)."""

    def __init__(
        self, plans: dict[int, list[str]] | None = None, *, slow_s: float = 0.5, retry_after: str = "0"
    ) -> None:
        self.plans = plans or {}
        self.slow_s = slow_s
        self.retry_after = retry_after
        self.attempts: Counter[int] = Counter()
        self.successes: Counter[int] = Counter()
        self.times: dict[int, list[float]] = defaultdict(list)
        self.auth: list[str | None] = []
        self.bodies: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = self._runner.addresses[0][1]
        self._started.set()
        self._loop.run_forever()

    def __enter__(self) -> FakeJudge:
        self._thread.start()
        assert self._started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @staticmethod
    def completion(content: str) -> web.Response:
        return web.json_response({"choices": [{"message": {"role": "assistant", "content": content}}]})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        self.auth.append(request.headers.get("Authorization"))
        user = body["messages"][1]["content"]
        rid = int(_ID.search(user).group(1))
        attempt = self.attempts[rid]
        self.attempts[rid] += 1
        self.times[rid].append(time.monotonic())
        plan = self.plans.get(rid, [])
        fault = plan[attempt] if attempt < len(plan) else "ok"
        rubric = _ITEM.findall(user.split("<rubrics>")[1])
        verdicts = [1 if "[yes]" in line else 0 for line in rubric]
        if fault == "timeout":  # answers too late: the client has given up (not a success)
            await asyncio.sleep(self.slow_s)
            return self.completion(json.dumps({"results": verdicts}))
        if fault in ("500", "503"):
            return web.Response(status=int(fault), text="upstream overloaded")
        elif fault == "429":
            return web.Response(status=429, headers={"Retry-After": self.retry_after}, text="slow down")
        elif fault == "401":
            return web.Response(status=401, text="bad key")
        elif fault == "garbage":
            return self.completion("I am unable to comply with a JSON format today.")
        elif fault == "count":
            return self.completion(json.dumps({"results": [*verdicts, 1]}))
        elif fault == "badbody":
            return web.Response(status=200, text="<html>gateway</html>", content_type="text/html")
        elif fault == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=200)
        elif fault == "fenced":
            return self.completion("Here:\n```json\n" + json.dumps({"results": verdicts}) + "\n```")
        self.successes[rid] += 1
        return self.completion(json.dumps({"results": verdicts}))


def make_item(rid: int, pattern: str, weights: list[float] | None = None) -> JudgeItem:
    """pattern like 'yny': item k is met iff pattern[k] == 'y'."""
    weights = weights or [1.0] * len(pattern)
    rubric = [
        {"description": f"criterion {k} [{'yes' if c == 'y' else 'no'}]", "title": f"T{k}", "weight": w}
        for k, (c, w) in enumerate(zip(pattern, weights, strict=True))
    ]
    return JudgeItem(question=f"question {rid}", response=f"answer id={rid}", rubric=tuple(rubric))


def fast_cfg(url: str, **kw: Any) -> JudgeConfig:
    base = dict(
        base_url=url,
        timeout_s=0.25,
        max_retries=2,
        backoff_base_s=0.001,
        backoff_max_s=0.005,
        retry_after_max_s=0.5,
        concurrency=64,
        api_key_env="HERL_TEST_JUDGE_KEY",
    )
    base.update(kw)
    return JudgeConfig(**base)


def test_scores_weighted_and_builds_reward_result() -> None:
    with FakeJudge(plans={1: ["fenced"]}) as srv:
        items = [make_item(0, "yny", [5, 3, 2]), make_item(1, "yy"), make_item(2, "yyn", [2, 2, -1])]
        stats = JudgeStats()
        res = score_batch_judge(items, fast_cfg(srv.url), stats)
    assert [r.score for r in res] == pytest.approx([7 / 10, 1.0, 1.0])
    assert [r.all_met for r in res] == [False, True, True]
    assert all(r.error is None and r.dense == r.score and r.data_source == "rar-medicine" for r in res)
    c = res[0].constraints
    assert [v.id for v in c] == ["rubric-0", "rubric-1", "rubric-2"]
    assert [v.followed for v in c] == [True, False, True]
    assert [v.weight for v in c] == [5.0, 3.0, 2.0]
    assert c[1].description == "criterion 1 [no]" and c[1].note == "T1"
    assert stats.as_dict() == {
        "requests": 3,
        "retries": 0,
        "items": 3,
        "ok": 3,
        "errors": 0,
        "errors_by_reason": {},
        "attempt_errors_by_reason": {},
    }
    body = srv.bodies[0]
    assert body["model"] == "gpt-4o-mini" and body["temperature"] == 0.1 and body["max_tokens"] == 4096


def test_subtract_policy_pitfall_lowers_score() -> None:
    with FakeJudge() as srv:
        item = make_item(0, "yyy", [2, 2, -1])
        (clamp,) = score_batch_judge([item], fast_cfg(srv.url))
        (sub,) = score_batch_judge([item], fast_cfg(srv.url, pitfall_policy="subtract"))
    assert clamp.score == 1.0 and clamp.all_met
    assert sub.score == pytest.approx(3 / 4) and not sub.all_met
    # A committed pitfall is something to fix: not followed under subtract (raw answer kept under clamp).
    assert [c.followed for c in sub.constraints] == [True, True, False]
    assert [c.followed for c in clamp.constraints] == [True, True, True]
    assert [c.description for c in sub.unmet] == [sub.constraints[2].description]


@pytest.mark.parametrize("fault", sorted(FAULT_REASON))
def test_each_fault_recovers_within_retries(fault: str) -> None:
    with FakeJudge(plans={0: [fault, fault]}) as srv:
        stats = JudgeStats()
        (res,) = score_batch_judge([make_item(0, "yn")], fast_cfg(srv.url), stats)
    assert res.error is None and res.score == 0.5
    assert srv.attempts[0] == 3 and srv.successes[0] == 1
    assert stats.attempt_errors_by_reason == Counter({FAULT_REASON[fault]: 2})
    assert stats.retries == 2 and stats.errors == 0


@pytest.mark.parametrize("fault", sorted(FAULT_REASON))
def test_each_fault_exhausted_scores_zero_with_reason(fault: str) -> None:
    with FakeJudge(plans={0: [fault] * 3}) as srv:
        stats = JudgeStats()
        (res,) = score_batch_judge([make_item(0, "yy")], fast_cfg(srv.url), stats)
    assert res.score == 0.0 and res.dense == 0.0 and not res.all_met
    assert res.error == FAULT_REASON[fault]
    assert [c.followed for c in res.constraints] == [None, None]  # listed as unclear
    assert srv.attempts[0] == 3 and srv.successes[0] == 0
    assert stats.errors_by_reason == Counter({FAULT_REASON[fault]: 1})


def test_client_error_is_not_retried() -> None:
    with FakeJudge(plans={0: ["401"]}) as srv:
        stats = JudgeStats()
        (res,) = score_batch_judge([make_item(0, "y")], fast_cfg(srv.url), stats)
    assert res.error == "http_4xx" and srv.attempts[0] == 1 and stats.retries == 0


def test_retry_after_is_honoured() -> None:
    with FakeJudge(plans={0: ["429"]}, retry_after="0.3") as srv:
        (res,) = score_batch_judge([make_item(0, "y")], fast_cfg(srv.url, retry_after_max_s=5))
    t = srv.times[0]
    assert res.score == 1.0 and t[1] - t[0] >= 0.28


def test_retry_after_is_capped() -> None:
    with FakeJudge(plans={0: ["429"]}, retry_after="3600") as srv:
        start = time.monotonic()
        (res,) = score_batch_judge([make_item(0, "y")], fast_cfg(srv.url, retry_after_max_s=0.05))
    assert res.score == 1.0 and time.monotonic() - start < 2.0


def test_empty_and_invalid_rubrics_score_zero_without_a_call() -> None:
    with FakeJudge() as srv:
        stats = JudgeStats()
        items = [JudgeItem("q", "a id=0", ()), JudgeItem("q", "a id=1", ({"weight": 2},))]
        res = score_batch_judge(items, fast_cfg(srv.url), stats)
    assert [r.error for r in res] == ["empty_rubric", "invalid_item"]
    assert sum(srv.attempts.values()) == 0 and stats.requests == 0
    assert stats.errors_by_reason == Counter({"empty_rubric": 1, "invalid_item": 1})


def test_api_key_from_env_sent_but_never_logged(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    secret = "sk-test-DO-NOT-LEAK-42"
    monkeypatch.setenv("HERL_TEST_JUDGE_KEY", secret)
    caplog.set_level(logging.DEBUG)
    with FakeJudge(plans={0: ["500", "500", "500"]}) as srv:
        cfg = fast_cfg(srv.url)
        res = score_batch_judge([make_item(0, "y"), make_item(1, "y")], cfg)
    assert srv.auth == [f"Bearer {secret}"] * 4
    assert res[0].error == "http_5xx"
    assert secret not in caplog.text and secret not in repr(cfg) and secret not in repr(res)


def test_missing_key_warns_and_sends_no_auth(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.delenv("HERL_TEST_JUDGE_KEY", raising=False)
    with FakeJudge() as srv:
        (res,) = score_batch_judge([make_item(0, "y")], fast_cfg(srv.url))
    assert res.score == 1.0 and srv.auth == [None]
    assert "HERL_TEST_JUDGE_KEY" in caplog.text


async def test_sync_wrapper_inside_running_loop_and_async_api() -> None:
    with FakeJudge() as srv:
        sync_res = score_batch_judge([make_item(0, "yn")], fast_cfg(srv.url))  # loop running: helper thread
        async_res = await score_batch_judge_async([make_item(1, "ny")], fast_cfg(srv.url))
    assert sync_res[0].score == 0.5 and async_res[0].score == 0.5


def test_dict_items_and_extra_info() -> None:
    extra = {
        "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "what is it?"}],
        "rubric_list": ["criterion [yes]", "other [no]"],
    }
    item = JudgeItem.from_extra_info(extra, "answer id=7", data_source="rar")
    assert item.question == "what is it?" and len(item.rubric) == 2
    with FakeJudge() as srv:
        res = score_batch_judge(
            [item, {"question": "q", "response": "r id=8", "rubric": ["x [yes]"]}], fast_cfg(srv.url)
        )
    assert [r.score for r in res] == [0.5, 1.0]
    assert res[0].data_source == "rar"


def test_config_from_mapping_rejects_unknown_keys() -> None:
    assert JudgeConfig.from_mapping({"model": "m", "concurrency": 4}).concurrency == 4
    with pytest.raises(ValueError, match="api_key"):
        JudgeConfig.from_mapping({"api_key": "nope"})
    with pytest.raises(ValueError, match="pitfall"):
        JudgeConfig(pitfall_policy="ignore")  # type: ignore[arg-type]
    assert JudgeConfig(base_url="http://h/v1/").url == "http://h/v1/chat/completions"


#: The load test's settings; docs/benchmarks.md states them (a test below keeps the two in step).
LOAD_N = 1000
LOAD_SEED = 20261127
LOAD_FAULT_SHARE = 0.30
LOAD_CONCURRENCY = 128
# Generous timeout: on a loaded 2-core CI box a healthy answer can take over a second, and a spurious
# client timeout would (correctly) retry — which this exact-count test must not confuse with a fault.
LOAD_TIMEOUT_S = 3.0
LOAD_SLOW_S = 3.5  # how long an injected timeout keeps the client waiting (beyond LOAD_TIMEOUT_S)


def test_load_1000_responses_30pct_faults_nothing_lost_or_double_counted() -> None:
    """1,000 responses, 30 % with 1-3 consecutive injected faults (seeded); 3 faults exhaust retries."""
    rng = random.Random(LOAD_SEED)
    kinds = sorted(FAULT_REASON)
    n = LOAD_N
    plans: dict[int, list[str]] = {}
    patterns: list[str] = []
    for rid in range(n):
        patterns.append("".join(rng.choice("yn") for _ in range(rng.randint(1, 6))))
        if rng.random() < LOAD_FAULT_SHARE:
            plans[rid] = [rng.choice(kinds)] * rng.randint(1, 3)
    items = [make_item(rid, patterns[rid]) for rid in range(n)]
    before = judge_stats().as_dict()
    with FakeJudge(plans=plans, slow_s=LOAD_SLOW_S) as srv:
        stats = JudgeStats()
        start = time.monotonic()
        cfg = fast_cfg(srv.url, timeout_s=LOAD_TIMEOUT_S, concurrency=LOAD_CONCURRENCY)
        res = score_batch_judge(items, cfg, stats)
        elapsed = time.monotonic() - start
    assert len(res) == n
    exhausted = {rid: FAULT_REASON[p[0]] for rid, p in plans.items() if len(p) == 3}
    expected_errors = Counter(exhausted.values())
    expected_attempt_errors: Counter[str] = Counter()
    for p in plans.values():
        expected_attempt_errors[FAULT_REASON[p[0]]] += len(p)
    assert len(plans) > 250 and sum(expected_errors.values()) > 50  # the seed really injects faults
    for rid, r in enumerate(res):
        if rid in exhausted:
            assert r.error == exhausted[rid] and r.score == 0.0, rid
            assert srv.successes[rid] == 0
        else:
            want = patterns[rid].count("y") / len(patterns[rid])
            assert r.error is None and r.score == pytest.approx(want), rid
            assert srv.successes[rid] == 1, rid  # answered exactly once
        assert srv.attempts[rid] == min(len(plans.get(rid, [])) + 1, 3), rid
    assert stats.items == n and stats.ok + stats.errors == n
    assert stats.ok == n - len(exhausted)
    assert stats.errors_by_reason == expected_errors
    assert stats.attempt_errors_by_reason == expected_attempt_errors
    assert stats.requests == sum(srv.attempts.values())
    assert stats.retries == stats.requests - n
    after = judge_stats().as_dict()
    assert after["items"] - before["items"] == n  # merged into the process totals exactly once
    print(
        f"load: {n} responses, {len(plans)} faulted, {len(exhausted)} exhausted, "
        f"{stats.requests} requests in {elapsed:.2f} s; errors {dict(expected_errors)}"
    )
    assert elapsed < 30


def test_benchmarks_doc_states_the_load_test_settings() -> None:
    """The numbers quoted for the load test are the ones it runs with (a changed setting fails here)."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md").read_text()
    section = doc[doc.index("### Load test") : doc.index("## Metrics")]
    assert f"{LOAD_N:,} responses" in section
    assert f"{LOAD_FAULT_SHARE * 100:g} % get 1–3 consecutive faults" in section
    assert f"(seed {LOAD_SEED})" in section
    settings = re.search(
        r"client concurrency (\d+), timeout ([\d.]+) s, the injected timeouts sleep ([\d.]+) s", section
    )
    assert settings is not None, "the settings sentence is missing"
    assert (int(settings[1]), float(settings[2]), float(settings[3])) == (
        LOAD_CONCURRENCY,
        LOAD_TIMEOUT_S,
        LOAD_SLOW_S,
    )
    assert "tests/rewards/test_judge.py -k load" in section


def test_config_from_herljob_spec() -> None:
    from herl.api.model import JudgeSpec

    spec = JudgeSpec(
        endpoint="http://judge.local/v1",
        concurrency=8,
        timeout_seconds=5,
        max_retries=4,
        retry_backoff_seconds=0.1,
        pitfall_policy="subtract",
    )
    cfg = JudgeConfig.from_spec(spec, api_key_env="MY_KEY")
    assert (cfg.base_url, cfg.model, cfg.temperature, cfg.max_tokens) == (
        "http://judge.local/v1",
        "gpt-4o-mini",
        0.1,
        4096,
    )
    assert (cfg.concurrency, cfg.timeout_s, cfg.max_retries, cfg.backoff_base_s) == (8, 5.0, 4, 0.1)
    assert cfg.pitfall_policy == "subtract" and cfg.api_key_env == "MY_KEY"
