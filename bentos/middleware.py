"""ASGI middleware for what BentoML 1.4 leaves to the deployer when self-hosting: auth, a body size limit, one rule
for unknown fields, and an OpenAPI document that says what the service answers.

They answer before the service sees the request, in the same JSON shape as BentoML's own errors (`{"error": ...}`).
"""

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROBES = frozenset({"/livez", "/readyz", "/healthz"})
"""Probes stay open: orchestrators call them without the API token. `/metrics` needs it when one is set (what the
service counts says how it is used; Prometheus sends the token with `authorization: {credentials: ...}`)."""
OPEN_PATHS = PROBES | {"/metrics"}
"""Paths that take no request body, which the media-type check leaves alone."""


async def send_error(send: Send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class BearerTokenAuth:
    """Require `Authorization: Bearer <token>` on every path but `open_paths` (401 otherwise)."""

    def __init__(self, app: ASGIApp, token: str, open_paths: frozenset[str] = PROBES) -> None:
        if not token:
            raise ValueError("BearerTokenAuth needs a non-empty token")
        self.app = app
        self._expected = f"Bearer {token}".encode()
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            return await self.app(scope, receive, send)
        given = _header(scope, b"authorization")
        if given is None:
            return await send_error(send, 401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
        # Constant-time comparison: the time taken must not tell how much of a guessed token was right.
        if not hmac.compare_digest(given.encode("latin-1"), self._expected):
            challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            return await send_error(send, 401, "invalid bearer token", challenge)
        await self.app(scope, receive, send)


class BodySizeLimit:
    """Answer 413 to a request body over `max_bytes`.

    A declared Content-Length over the limit is refused before reading; a body without one (chunked) is read up to
    the limit and refused as soon as it passes it. The body is buffered and replayed to the app, which costs nothing
    extra here: BentoML reads the whole body before validating it anyway.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                return await send_error(send, 400, f"invalid Content-Length header: {declared!r}")
            if int(declared) > self.max_bytes:
                return await send_error(send, 413, self._too_large())

        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":  # the client went away: let the app see the disconnect
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return await send_error(send, 413, self._too_large())
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"request body is larger than the limit of {self.max_bytes} bytes"


class JsonOnly:
    """Answer 415 to a request body declared as anything but JSON (no Content-Type means JSON, as in BentoML).

    Every API of the service takes JSON, but BentoML 1.4 picks its parser from the Content-Type: multipart and
    form-urlencoded bodies go to a form parser whose errors it answers with a 500 (a `multipart/form-data` header
    without a boundary is enough, found by fuzzing), and pickle is refused only by a check deep in its app.
    Refusing them here keeps those parsers, and pickle, away from every route. Probes and metrics stay open.
    """

    def __init__(self, app: ASGIApp, open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.app = app
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            return await self.app(scope, receive, send)
        declared = _header(scope, b"content-type")
        if declared is not None:
            media_type = declared.split(";", 1)[0].strip().lower()
            if media_type != "application/json":
                message = f"content type {media_type!r} is not allowed: the API accepts application/json only"
                return await send_error(send, 415, message)
        await self.app(scope, receive, send)


class KnownFieldsOnly:
    """Answer 400 to a JSON object body with a top-level field its route does not take, naming the field.

    BentoML's input models ignore unknown top-level fields while the feature rows refuse theirs; one rule for every
    route (refuse, in the shape of a validation error), so a misspelt field is never silently dropped.
    """

    def __init__(self, app: ASGIApp, fields: dict[str, frozenset[str]]) -> None:
        self.app = app
        self.fields = fields

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        allowed = self.fields.get(scope["path"]) if scope["type"] == "http" else None
        if allowed is None:
            return await self.app(scope, receive, send)
        messages: list[Message] = []
        while True:  # the body is bounded already (BodySizeLimit runs before this)
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        try:
            body = json.loads(b"".join(message.get("body", b"") for message in messages))
        except ValueError:  # not JSON at all: BentoML's own parser says so
            body = None
        unknown = sorted(set(body) - allowed) if isinstance(body, dict) else []
        if unknown:
            detail = [
                {"type": "extra_forbidden", "loc": [name], "msg": "Extra inputs are not permitted"} for name in unknown
            ]
            count = f"{len(unknown)} validation error{'s' if len(unknown) > 1 else ''}"
            return await send_json(send, 400, {"error": f"{count} for Input", "detail": detail})

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


class TruthfulOpenAPI:
    """Serve `/docs.json` as the service behaves: a rewrite (`bentos.openapi.truthful`) of what BentoML generates."""

    def __init__(self, app: ASGIApp, rewrite: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.app = app
        self.rewrite = rewrite

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/docs.json":
            return await self.app(scope, receive, send)
        start: Message = {}
        chunks: list[bytes] = []

        async def collect(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            else:
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, collect)
        if start.get("status") != 200:
            await send(start)
            await send({"type": "http.response.body", "body": b"".join(chunks)})
            return
        await send_json(send, 200, self.rewrite(json.loads(b"".join(chunks))))


async def send_json(send: Send, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
