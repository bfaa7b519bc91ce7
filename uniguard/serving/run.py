"""Running the service: on uvicorn (the CLI, tests, benchmarks) with validated settings."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from fastapi import FastAPI

from trainers.compute import resolve_compute
from trainers.runtime import load_guard
from uniguard.core.errors import UserError
from uniguard.serving.service import ServeSettings, create_app


def read_timeout_protocol(read_timeout_s: float):
    """uvicorn's h11 protocol with a request read deadline: a connection must deliver each request's
    headers and body within `read_timeout_s` of its start (or of its previous request), or it is
    closed. uvicorn only times out idle keep-alive connections, so a few hundred slow half-open
    connections (slowloris) would otherwise hold the server's connection slots forever."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class ReadTimeoutH11(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._requests_read = 0
            self._arm()

        def _arm(self) -> None:
            seen = self._requests_read
            self._read_deadline = self.loop.call_later(read_timeout_s, self._check_read, seen)

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is h11.DONE:
                self._requests_read += 1

        def _check_read(self, seen: int) -> None:
            if self.transport.is_closing():
                return
            if self._requests_read != seen or self.conn.their_state is h11.DONE:
                self._arm()  # a request arrived in time, or its response is still being computed
                return
            self.transport.close()

        def connection_lost(self, exc) -> None:
            self._read_deadline.cancel()
            super().connection_lost(exc)

    return ReadTimeoutH11


def uvicorn_config(app: FastAPI, host: str, port: int, settings: ServeSettings | None = None, log_level: str = "info"):
    """One uvicorn setup for the CLI and in-process servers: read deadline, connection cap, keep-alive."""
    import uvicorn

    settings = settings or ServeSettings(model="")
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=30,
                          http=read_timeout_protocol(settings.read_timeout_s), limit_concurrency=settings.max_connections,
                          timeout_keep_alive=5)


def build_app(settings: ServeSettings) -> FastAPI:
    compute = resolve_compute(settings.device, settings.precision)
    return create_app(load_guard(settings.model, threads=settings.threads, compute=compute), settings)


@contextlib.contextmanager
def running_server(app: FastAPI, host: str = "127.0.0.1", port: int = 0, settings: ServeSettings | None = None):
    """Run `app` on uvicorn in a background thread (port 0: any free port); yields the base URL.

    For tests and benchmarks that need a real server in-process; leaving the block shuts it down
    the same way SIGTERM does (stop accepting, finish requests, run the shutdown hooks).
    """
    import threading

    import uvicorn

    server = uvicorn.Server(uvicorn_config(app, host, port, settings, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.01)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def serve(settings: ServeSettings) -> None:
    """Run on uvicorn until SIGINT/SIGTERM; uvicorn stops accepting, drains requests, then runs shutdown."""
    import uvicorn

    check_settings(settings)
    app = build_app(settings)
    uvicorn.Server(uvicorn_config(app, settings.host, settings.port, settings)).run()


def check_settings(settings: ServeSettings) -> None:
    for name in ("max_batch", "max_texts", "max_text_chars", "max_policies", "max_body_bytes", "max_pending", "max_connections"):
        if getattr(settings, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(settings, name)}")
    if not 0 < settings.port < 65536:
        raise UserError(f"--port {settings.port}: not a TCP port; choose one in 1..65535 (e.g. 8000)")
    if settings.read_timeout_s <= 0:
        raise UserError(f"--read-timeout-s must be > 0, got {settings.read_timeout_s}")
    if settings.max_wait_ms < 0:
        raise UserError(f"--max-wait-ms must be >= 0, got {settings.max_wait_ms}")
    if not Path(settings.model).is_dir():
        raise UserError(f"--model {settings.model}: directory not found; pass a guard directory or an ONNX export of one")
