"""The guard HTTP server: FastAPI app, server-side micro-batching, request limits, Ray Serve replicas.

`POST /v1/check` scores every (text, policy) pair of a request. Pairs from concurrent requests are
queued and scored together by one worker: each batch takes what queued while the previous one ran
(at most `max_batch` pairs), optionally waiting up to `max_wait_ms` for more, so many small
requests cost a few batched forward passes instead of one each, and a lone request waits for
nothing. The
forward pass runs in a single worker thread, which keeps the event loop free and the model
single-threaded from Python's side.

Limits are checked before any tokenisation: the body size (413 `max_body_bytes`), then the number
of texts, characters per text and policies (413, naming the limit and the flag that raises it).
Malformed JSON and schema errors answer 422 with the field at fault. Request policies are built-in
names, names loaded with `--policy`, or inline policy objects; never file paths, so a client cannot
make the server read its disk.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Union

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from synth.policy import Policy, builtin_policy_names, load_policies, load_policy
from trainers.guard import Guard
from trainers.onnx import OnnxGuard
from trainers.runtime import load_guard
from uniguard.core.errors import UserError

log = logging.getLogger("uniguard.serve")


@dataclass(frozen=True)
class ServeSettings:
    model: str
    policies: tuple[str, ...] = ()  # defaults for requests that name none; also extra names clients may use
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 32  # pairs scored in one forward pass
    max_wait_ms: float = 0.0  # extra wait for more pairs; 0: batch whatever queued while the last batch ran
    max_texts: int = 64
    max_text_chars: int = 8192
    max_policies: int = 8
    max_body_bytes: int = 1 << 20
    max_pending: int = 4096  # queued pairs before the server answers 503
    threads: int | None = None  # intra-op threads for the forward pass (None: the runtime's default)


# ---- request and response schema -------------------------------------------------------------

def _policy_ref_kind(value) -> str:
    return "name" if isinstance(value, str) else "inline"


# a tagged union, so a bad inline policy is reported as `policies.0.inline.<field>` rather than as two failed guesses
PolicyRef = Annotated[
    Union[
        Annotated[str, Field(min_length=1, max_length=200, description="a built-in or server-loaded policy name"), Tag("name")],
        Annotated[Policy, Tag("inline")],
    ],
    Discriminator(_policy_ref_kind),
]


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[str] = Field(description="texts to check (each is paired with every policy)")
    policies: list[PolicyRef] = Field(
        default_factory=list, description="policy names or inline policy objects; empty means the server's default policies"
    )


class PolicyVerdict(BaseModel):
    policy: str
    score: float = Field(description="P(violation)")
    violates: bool
    threshold: float


class TextResult(BaseModel):
    index: int = Field(description="position of the text in the request")
    verdicts: list[PolicyVerdict]


class CheckResponse(BaseModel):
    results: list[TextResult]
    model: str


class Health(BaseModel):
    status: str
    model: str
    format: str
    default_policies: list[str]
    batches_run: int = Field(description="forward passes run so far; fewer than requests means requests were batched together")
    pairs_scored: int


class ErrorBody(BaseModel):
    error: str
    message: str
    limit: str | None = None


# ---- micro-batching ---------------------------------------------------------------------------


@dataclass
class _Job:
    features: dict[str, list[list[int]]]
    future: asyncio.Future
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.features["input_ids"])


class MicroBatcher:
    """Collects tokenised pairs from concurrent requests and scores them in shared batches."""

    def __init__(self, guard: Guard, max_batch: int, max_wait_ms: float, max_pending: int):
        self.guard, self.max_batch, self.max_wait, self.max_pending = guard, max_batch, max_wait_ms / 1000, max_pending
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task | None = None
        self._pending = 0
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="guard-forward")
        self.batches_run = 0  # exposed for tests and /healthz: proof that requests were actually batched
        self.pairs_scored = 0

    def _ensure_started(self) -> asyncio.Queue:
        # started lazily in the serving loop, so the same app works under uvicorn and Ray Serve
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._run())
        return self._queue

    async def score(self, features: dict[str, list[list[int]]]) -> np.ndarray:
        job = _Job(features, asyncio.get_running_loop().create_future())
        if self._pending + job.size > self.max_pending:
            raise ServerBusy(f"{self._pending} pairs are queued (max_pending {self.max_pending}); retry shortly")
        self._pending += job.size
        self._ensure_started().put_nowait(job)
        return await job.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect()
            merged = {k: [row for job in jobs for row in job.features[k]] for k in jobs[0].features}
            try:
                scores = await loop.run_in_executor(self._executor, self.guard.score_features, merged, self.max_batch)
            except Exception as exc:  # a forward failure fails these requests, never the server
                log.exception("scoring failed")
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
            else:
                self.batches_run += 1
                self.pairs_scored += len(scores)
                offset = 0
                for job in jobs:
                    if not job.future.done():  # the client may have gone away
                        job.future.set_result(scores[offset : offset + job.size])
                    offset += job.size
            finally:
                self._pending -= sum(job.size for job in jobs)

    async def _collect(self) -> list[_Job]:
        """One job, then what is queued, waiting up to `max_wait` seconds for more, until `max_batch` pairs."""
        jobs = [await self._queue.get()]
        size = jobs[0].size
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while size < self.max_batch:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                job = self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self._queue.get(), remaining)
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            jobs.append(job)
            size += job.size
        return jobs

    async def close(self) -> None:
        """Let queued work finish, then stop the worker and its thread."""
        deadline = time.monotonic() + 30
        while self._pending and self._worker is not None and not self._worker.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=True)


class ServerBusy(Exception):
    pass


class LimitExceeded(Exception):
    def __init__(self, limit: str, message: str):
        super().__init__(message)
        self.limit = limit


# ---- the app ----------------------------------------------------------------------------------


class BodySizeLimit:
    """ASGI middleware: refuse bodies over `max_bytes` (by Content-Length, or while streaming) with 413."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._reject(send)
        received, rejected = 0, False

        async def limited_receive():
            # over the limit: answer 413 ourselves, then tell the app the client left so it stops reading
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                rejected = True
                await self._reject(send)
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not rejected:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not rejected:  # a real error, not the disconnect we caused
                raise

    async def _reject(self, send):
        body = ErrorBody(
            error="payload_too_large", limit="max_body_bytes",
            message=f"request body is larger than max_body_bytes={self.max_bytes}; send fewer or shorter texts, "
            "or start the server with a larger --max-body-bytes",
        ).model_dump_json().encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


# (text characters x policies) a request may have for its tokenisation to run on the event loop (~0.5 ms at most)
INLINE_ENCODE_CHARS = 1024


class GuardService:
    """What a request needs: the guard, the policy table, the limits and the batcher."""

    def __init__(self, guard: Guard, settings: ServeSettings):
        self.guard, self.settings = guard, settings
        self.default_policies = load_policies(list(settings.policies)) if settings.policies else []
        self.named = {p.name: p for p in self.default_policies}
        self.batcher = MicroBatcher(guard, settings.max_batch, settings.max_wait_ms, settings.max_pending)

    def resolve_policies(self, refs: list) -> list[Policy]:
        if not refs:
            if not self.default_policies:
                raise RequestError("policies", "the request names no policies and the server has no defaults; "
                                   f"pass policies, e.g. {builtin_policy_names()[:2]}, or start the server with --policy")
            return self.default_policies
        policies = []
        for i, ref in enumerate(refs):
            if isinstance(ref, Policy):
                policies.append(ref)
            elif ref in self.named:
                policies.append(self.named[ref])
            elif ref in builtin_policy_names():
                policies.append(load_policy(ref))
            else:
                known = sorted(set(builtin_policy_names()) | set(self.named))
                raise RequestError(f"policies.{i}", f"unknown policy {ref!r}; use one of {', '.join(known)} or send an inline policy object")
        names = [p.name for p in policies]
        if len(set(names)) != len(names):
            raise RequestError("policies", "policy names must be unique within a request")
        return policies

    def check_limits(self, request: CheckRequest) -> None:
        s = self.settings
        if len(request.texts) > s.max_texts:
            raise LimitExceeded("max_texts", f"{len(request.texts)} texts exceed max_texts={s.max_texts}; split the request "
                                "or start the server with a larger --max-texts")
        for i, text in enumerate(request.texts):
            if len(text) > s.max_text_chars:
                raise LimitExceeded("max_text_chars", f"texts.{i} has {len(text)} characters, over max_text_chars={s.max_text_chars}; "
                                    "shorten it or start the server with a larger --max-text-chars")
        if len(request.policies) > s.max_policies:
            raise LimitExceeded("max_policies", f"{len(request.policies)} policies exceed max_policies={s.max_policies}; "
                                "split the request or start the server with a larger --max-policies")

    def encode(self, texts: list[str], policies: list[Policy]) -> dict[str, list[list[int]]]:
        """Tokenise every (policy, text) pair, policy-major; policies whose instruction leaves no room are refused."""
        texts = [_clean_unicode(t) for t in texts]
        merged: dict[str, list[list[int]]] = {}
        for i, policy in enumerate(policies):
            try:
                features = self.guard.encode(texts, policy)
            except UserError as exc:
                raise RequestError(f"policies.{i}", str(exc)) from None
            except Exception:  # the tokenizer refuses an instruction longer than max_length
                raise RequestError(f"policies.{i}", f"policy {policy.name!r}: its description is too long for this guard's "
                                   f"max_length={self.guard.max_length} tokens; shorten the description") from None
            for k, v in features.items():
                merged.setdefault(k, []).extend(v)
        return merged

    async def _encode(self, texts: list[str], policies: list[Policy]) -> dict[str, list[list[int]]]:
        """Small requests are tokenised on the event loop: with the policy's tokens cached that is ~0.15 ms
        for a short prompt, less than the two thread switches of `to_thread` cost on a busy machine.
        Larger ones go to a thread so they never stall other requests for long."""
        if sum(len(t) for t in texts) * len(policies) <= INLINE_ENCODE_CHARS:
            return self.encode(texts, policies)
        return await asyncio.to_thread(self.encode, texts, policies)

    async def check(self, request: CheckRequest) -> CheckResponse:
        self.check_limits(request)
        policies = self.resolve_policies(request.policies)
        if not request.texts:
            return CheckResponse(results=[], model=self.settings.model)
        features = await self._encode(request.texts, policies)
        scores = (await self.batcher.score(features)).reshape(len(policies), len(request.texts))
        results = []
        for t in range(len(request.texts)):
            verdicts = []
            for p, policy in enumerate(policies):
                threshold = self.guard.threshold(policy)
                score = float(scores[p, t])
                verdicts.append(PolicyVerdict(policy=policy.name, score=score, violates=score >= threshold, threshold=threshold))
            results.append(TextResult(index=t, verdicts=verdicts))
        return CheckResponse(results=results, model=self.settings.model)


class RequestError(Exception):
    def __init__(self, field_path: str, message: str):
        super().__init__(f"{field_path}: {message}")


def _clean_unicode(text: str) -> str:
    """Lone surrogates (legal in JSON escapes, illegal in UTF-8) become U+FFFD so the tokenizer never fails."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def create_app(guard: Guard, settings: ServeSettings) -> FastAPI:
    service = GuardService(guard, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await service.batcher.close()  # graceful: in-flight pairs are scored before the worker stops

    app = FastAPI(
        title="uniguard",
        summary="Check texts against guardrail policies with a small encoder guard.",
        version=_version(),
        lifespan=lifespan,
        responses={400: {"model": ErrorBody}, 413: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}},
    )
    app.state.service = service

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        kind = f"onnx-{guard.quantization}" if isinstance(guard, OnnxGuard) else "pytorch"
        return Health(status="ok", model=settings.model, format=kind, default_policies=[p.name for p in service.default_policies],
                      batches_run=service.batcher.batches_run, pairs_scored=service.batcher.pairs_scored)

    @app.post("/v1/check", response_model=CheckResponse)
    async def check(request: CheckRequest) -> CheckResponse:
        """Score every text against every policy: P(violation), the policy's threshold and the verdict."""
        return await service.check(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_request", _describe_validation_errors(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI answers 400 for a body it cannot decode at all (e.g. not UTF-8); keep one error shape
        message = "the body could not be decoded; send UTF-8 JSON" if exc.status_code == 400 else str(exc.detail)
        return _error(exc.status_code, "bad_request" if exc.status_code == 400 else "http_error", message)

    @app.exception_handler(RequestError)
    async def bad_request(_: Request, exc: RequestError) -> JSONResponse:
        return _error(422, "invalid_request", str(exc))

    @app.exception_handler(LimitExceeded)
    async def too_large(_: Request, exc: LimitExceeded) -> JSONResponse:
        return _error(413, "payload_too_large", str(exc), limit=exc.limit)

    @app.exception_handler(ServerBusy)
    async def busy(_: Request, exc: ServerBusy) -> JSONResponse:
        return _error(503, "busy", str(exc))

    @app.exception_handler(UserError)
    async def user_error(_: Request, exc: UserError) -> JSONResponse:
        return _error(422, "invalid_request", str(exc))

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app


def _describe_validation_errors(errors) -> str:
    problems = []
    for e in errors:
        if e.get("type") == "json_invalid":
            reason = e.get("ctx", {}).get("error", "invalid JSON")
            problems.append(f"the body is not valid JSON ({reason} at character {e['loc'][-1]}); "
                            'send an object like {"texts": ["..."], "policies": ["prompt_injection"]}')
        else:
            where = ".".join(str(p) for p in e["loc"] if p != "body") or "(body)"
            problems.append(f"{where}: {e['msg']}")
    return "; ".join(problems) or "the body is not a valid check request"


def _error(status: int, error: str, message: str, limit: str | None = None) -> JSONResponse:
    return JSONResponse(ErrorBody(error=error, message=message, limit=limit).model_dump(), status_code=status)


def _version() -> str:
    from uniguard import __version__

    return __version__


# ---- running it -------------------------------------------------------------------------------


def build_app(settings: ServeSettings) -> FastAPI:
    return create_app(load_guard(settings.model, threads=settings.threads), settings)


@contextlib.contextmanager
def running_server(app: FastAPI, host: str = "127.0.0.1", port: int = 0):
    """Run `app` on uvicorn in a background thread (port 0: any free port); yields the base URL.

    For tests and benchmarks that need a real server in-process; leaving the block shuts it down
    the same way SIGTERM does (stop accepting, finish requests, run the shutdown hooks).
    """
    import threading

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30))
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

    _check_settings(settings)
    app = build_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", timeout_graceful_shutdown=30)


def start_on_ray(settings: ServeSettings, address: str, replicas: int = 1) -> str:
    """Deploy the app on Ray Serve with `replicas` copies and return its base URL (does not block)."""
    import ray
    from ray import serve as ray_serve

    _check_settings(settings)
    ray.init(address=None if address == "local" else address, ignore_reinit_error=True, log_to_driver=False)
    ray_serve.start(http_options={"host": settings.host, "port": settings.port})
    ray_serve.run(ray_deployment(settings, replicas), name="uniguard", route_prefix="/")
    return f"http://{settings.host}:{settings.port}"


def serve_on_ray(settings: ServeSettings, address: str, replicas: int = 1) -> None:
    """`uniguard serve --address`: deploy on Ray Serve, block until interrupted, then tear the deployment down."""
    from ray import serve as ray_serve

    url = start_on_ray(settings, address, replicas)
    print(f"uniguard: {replicas} Ray Serve replica(s) of {settings.model} at {url}; Ctrl-C stops them", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        ray_serve.shutdown()


def ray_deployment(settings: ServeSettings, replicas: int = 1):
    """A bound Ray Serve application: each replica loads the guard and builds its own app and batcher."""
    from ray import serve as ray_serve

    @ray_serve.deployment(num_replicas=replicas, ray_actor_options={"num_cpus": settings.threads or 1})
    @ray_serve.ingress()
    class GuardReplica:
        def __init__(self, replica_settings: ServeSettings):
            self.settings = replica_settings

        def __serve_build_asgi_app__(self):
            return build_app(self.settings)

    return GuardReplica.bind(settings)


def _check_settings(settings: ServeSettings) -> None:
    for name in ("max_batch", "max_texts", "max_text_chars", "max_policies", "max_body_bytes", "max_pending"):
        if getattr(settings, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(settings, name)}")
    if settings.max_wait_ms < 0:
        raise UserError(f"--max-wait-ms must be >= 0, got {settings.max_wait_ms}")
    if not Path(settings.model).is_dir():
        raise UserError(f"--model {settings.model}: directory not found; pass a guard directory or an ONNX export of one")
