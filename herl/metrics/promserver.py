"""A real, throw-away Prometheus on 127.0.0.1 for tests: scrape endpoints, evaluate rules, query.

Why a real server: no offline validator for dashboards exists and promtool only checks syntax; the
only proof that a panel shows something is that Prometheus, having scraped our exporters, answers its
query with data. Reusable: hand it any list of ``/metrics`` URLs (the synthetic exporters here, a
real local-engine run later). Waits are bounded polls, never fixed sleeps.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml


def poll_until(check: Any, timeout: float, what: str) -> Any:
    """Call ``check`` with a growing back-off (50 ms → 0.5 s) until it returns something truthy;
    TimeoutError naming ``what`` after ``timeout`` seconds. Bounded waits instead of fixed sleeps."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


class PrometheusError(RuntimeError):
    """Prometheus did not start, scrape or answer as expected."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _split_target(url: str) -> tuple[str, str, str]:
    """``http://h:p/path`` or ``h:p`` → (scheme, host:port, metrics path)."""
    if "://" not in url:
        url = "http://" + url
    u = urllib.parse.urlsplit(url)
    return u.scheme, u.netloc, u.path or "/metrics"


class PrometheusServer:
    """Start with :meth:`start` (or as a context manager); always :meth:`stop` (kills the process)."""

    def __init__(
        self,
        targets: Sequence[str],
        *,
        rule_files: Sequence[str | Path] = (),
        scrape_interval: str = "1s",
        binary: str = "prometheus",
    ) -> None:
        self.targets = list(targets)
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.scrape_interval = scrape_interval
        self.binary = shutil.which(binary) or binary
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        """The prometheus.yml: one scrape job per (scheme, path) with the given targets."""
        jobs: dict[tuple[str, str], list[str]] = {}
        for t in self.targets:
            scheme, hostport, path = _split_target(t)
            jobs.setdefault((scheme, path), []).append(hostport)
        scrape = [
            {
                "job_name": f"herl-{i}",
                "scheme": scheme,
                "metrics_path": path,
                "static_configs": [{"targets": hosts}],
            }
            for i, ((scheme, path), hosts) in enumerate(sorted(jobs.items()))
        ]
        return {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": scrape,
        }

    def start(self, timeout: float = 20.0) -> PrometheusServer:
        if shutil.which(self.binary) is None:
            raise PrometheusError(f"prometheus binary not found: {self.binary} (apt-get install prometheus)")
        self._dir = tempfile.TemporaryDirectory(prefix="herl-prom-")
        d = Path(self._dir.name)
        (d / "prometheus.yml").write_text(yaml.safe_dump(self.config()), encoding="utf-8")
        self.port = free_port()
        log = (d / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={d / 'prometheus.yml'}",
                f"--storage.tsdb.path={d / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        try:
            self._poll(self._ready, timeout, "/-/ready")
        except BaseException:
            self.stop()
            raise
        return self

    def log_text(self) -> str:
        """Prometheus's own log (for failure messages)."""
        if self._dir is None:
            return ""
        p = Path(self._dir.name) / "prometheus.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop(self) -> None:
        """Terminate (then kill) the process and remove its storage; safe to call twice."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=5)
            self.proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --------------------------------------------------------------------------------- HTTP API
    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        q = ("?" + urllib.parse.urlencode(params)) if params else ""
        try:
            with urllib.request.urlopen(self.url + path + q, timeout=5) as r:
                body = r.read()
        except urllib.error.HTTPError as e:
            body = e.read()
        return json.loads(body) if path.startswith("/api/") else body

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise PrometheusError(f"prometheus exited with {self.proc.returncode}:\n{self.log_text()}")
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def _poll(self, check: Any, timeout: float, what: str) -> Any:
        try:
            return poll_until(check, timeout, what)
        except TimeoutError as exc:
            raise PrometheusError(f"{exc}\n{self.log_text()}") from None

    def targets_health(self) -> list[dict[str, Any]]:
        """Active targets with scrapeUrl, health and lastError."""
        return list(self._get("/api/v1/targets")["data"]["activeTargets"])

    def wait_targets_up(self, timeout: float = 20.0) -> None:
        """Until every configured target has been scraped successfully."""

        def ok() -> bool:
            ts = self.targets_health()
            return len(ts) == len(self.targets) and all(t["health"] == "up" for t in ts)

        self._poll(ok, timeout, f"targets up: {self.targets}")

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; raises PrometheusError on a parse/eval error, returns the result list."""
        r = self._get("/api/v1/query", {"query": expr})
        if r.get("status") != "success":
            raise PrometheusError(f"{expr!r}: {r.get('errorType')}: {r.get('error')}")
        data = r["data"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def wait_for(self, expr: str, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Until ``expr`` returns data (e.g. enough samples for a rate())."""
        return self._poll(lambda: self.query(expr), timeout, f"data for {expr!r}")

    def rules(self) -> list[dict[str, Any]]:
        """Loaded rule groups with each rule's health, state and lastError."""
        return list(self._get("/api/v1/rules")["data"]["groups"])
