"""The guard HTTP service: settings, the request handler and the FastAPI app.

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
import contextlib
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from synth.policy import Policy, builtin_policy_names, load_policies, load_policy
from trainers.guard import Guard, Windows
from trainers.onnx import OnnxGuard
from uniguard.core.errors import NonFiniteScore, UserError
from uniguard.core.io import clean_unicode
from uniguard.serving.batcher import MicroBatcher, ServerBusy
from uniguard.serving.limits import BodySizeLimit, LimitExceeded
from uniguard.serving.schema import CheckRequest, CheckResponse, ErrorBody, Health, PolicyVerdict, TextResult


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
    device: str = "auto"  # trainers.compute: where a PyTorch guard scores, and in what precision
    precision: str = "auto"
    read_timeout_s: float = 10.0  # a request's headers and body must arrive within this (slowloris)
    max_connections: int = 512  # concurrent connections and requests; beyond it uvicorn answers 503


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

    def encode(self, texts: list[str], policies: list[Policy]) -> Windows:
        """Tokenise every (policy, text) pair, policy-major, a long text as its windows; policies whose
        instruction leaves no room are refused."""
        texts = [clean_unicode(t) for t in texts]
        parts = []
        for i, policy in enumerate(policies):
            try:
                parts.append(self.guard.encode_windows(texts, policy))
            except UserError as exc:
                raise RequestError(f"policies.{i}", str(exc)) from None
            except Exception:  # the tokenizer refuses an instruction longer than max_length
                raise RequestError(f"policies.{i}", f"policy {policy.name!r}: its description is too long for this guard's "
                                   f"max_length={self.guard.max_length} tokens; shorten the description") from None
        return Windows.concat(parts)

    async def _encode(self, texts: list[str], policies: list[Policy]) -> Windows:
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
        windows = await self._encode(request.texts, policies)
        # the batcher scores rows (windows); the text's score is the max over its rows, as in Guard.score
        scores = windows.text_scores(await self.batcher.score(windows.features)).reshape(len(policies), len(request.texts))
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
        responses={400: {"model": ErrorBody}, 413: {"model": ErrorBody}, 422: {"model": ErrorBody}, 500: {"model": ErrorBody},
                   503: {"model": ErrorBody}},
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

    # The model, not the request, is at fault: 5xx, so no client reads an unscored text as allowed.
    @app.exception_handler(NonFiniteScore)
    async def unscorable(_: Request, exc: NonFiniteScore) -> JSONResponse:
        return _error(500, "unscorable", str(exc))

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        return _error(500, "internal_error", f"scoring failed ({type(exc).__name__}); see the server log")

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
