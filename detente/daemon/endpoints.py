"""The daemon's HTTP endpoints: /healthz (the process runs), /readyz (it does its work), /metrics.

Served by uvicorn on a thread of its own, leader or standby, from start until the very end of
a shutdown, so an orchestrator can tell a stopping daemon from a dead one.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Sequence
from typing import Any, Protocol

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route


class Probe(Protocol):
    """What the endpoints ask the daemon."""

    def readiness(self) -> tuple[bool, dict[str, Any]]: ...

    def metrics_text(self) -> bytes: ...


def build_app(probe: Probe, extra: Sequence[BaseRoute] = ()) -> Starlette:
    """/healthz, /readyz and /metrics, then ``extra`` routes (the dashboard's, which guard themselves)."""
    # Plain (sync) endpoints: Starlette runs them on its thread pool, so a slow store never
    # blocks /healthz.
    def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    def readyz(request: Request) -> Response:
        ready, body = probe.readiness()
        return JSONResponse(body, status_code=200 if ready else 503)

    def metrics(request: Request) -> Response:
        return Response(probe.metrics_text(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics),
                             *extra])


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port``, or ``[v6 address]:port``."""
    host, _, port = listen.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


class HttpServer:
    """uvicorn on a background thread, bound before it starts (port 0 picks a free port)."""

    def __init__(self, app: Starlette, listen: str) -> None:
        self.host, port = parse_listen(listen)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((self.host, port))
        except OSError:
            self._sock.close()
            raise
        self._sock.listen(64)
        self.port: int = self._sock.getsockname()[1]
        # log_config=None: uvicorn must not reconfigure the process's logging.
        self._server = uvicorn.Server(uvicorn.Config(
            app, log_config=None, log_level="warning", access_log=False, lifespan="off",
            timeout_graceful_shutdown=1))
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, timeout: float = 10) -> None:
        def serve() -> None:
            try:
                asyncio.run(self._server.serve(sockets=[self._sock]))
            except BaseException as exc:  # reported to the starting thread
                self._error = exc

        self._thread = threading.Thread(target=serve, name="detente-http", daemon=True)
        self._thread.start()
        waited = 0.0
        while not self._server.started and self._error is None and waited < timeout:
            threading.Event().wait(0.01)
            waited += 0.01
        if not self._server.started:
            raise RuntimeError(f"the HTTP server did not start: {self._error!r}")

    def stop(self, timeout: float = 3) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._sock.close()
