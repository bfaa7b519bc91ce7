"""Request limits: the body-size middleware (checked before anything is parsed) and the limit error."""

from __future__ import annotations

from uniguard.serving.schema import ErrorBody


class LimitExceeded(Exception):
    def __init__(self, limit: str, message: str):
        super().__init__(message)
        self.limit = limit


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
