"""The trainer's ``/metrics`` HTTP endpoint, with a record of when the operator last read it.

Why not prometheus_client's ``start_http_server`` as is: a finished trainer exits at once, and KubeRay
deletes its cluster right after the job ends, so the operator (which pulls every ``--progress-seconds``)
would usually miss the final step and status would stop one step short. The endpoint therefore notes
each scrape by a client that identifies as the operator (User-Agent :data:`OPERATOR_AGENT`, kept by
the apiserver's service proxy), and :meth:`MetricsEndpoint.wait_read_by_operator` lets the trainer
stay until the final numbers were read, bounded by a timeout. The exposition itself is
prometheus_client's WSGI app.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

#: The User-Agent prefix of the operator's progress reads (operator/progress.py sends it).
OPERATOR_AGENT = "herl-operator"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # one line per scrape would flood the log
        pass


class MetricsEndpoint:
    """``/metrics`` of one registry on (addr, port), served from a daemon thread."""

    def __init__(self, registry: CollectorRegistry, port: int, addr: str) -> None:
        self._app = make_wsgi_app(registry)
        self._read = threading.Condition()
        self.operator_reads = 0
        self.last_operator_read = 0.0
        self._server = make_server(addr, port, self._wsgi, ThreadingWSGIServer, handler_class=_QuietHandler)
        self.port = int(self._server.server_port)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="herl-metrics")
        self._thread.start()

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = list(self._app(environ, start_response))  # rendered now: a read is complete when noted
        if str(environ.get("HTTP_USER_AGENT", "")).startswith(OPERATOR_AGENT):
            with self._read:
                self.operator_reads += 1
                self.last_operator_read = time.monotonic()
                self._read.notify_all()
        return body

    def wait_read_by_operator(self, since: float, timeout: float) -> bool:
        """True once the operator read the endpoint after ``since`` (time.monotonic()), False after
        ``timeout`` seconds without such a read (no operator: a local run, or it is down)."""
        deadline = time.monotonic() + timeout
        with self._read:
            while self.last_operator_read <= since:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._read.wait(left)
        return True

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
