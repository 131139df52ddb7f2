"""The door of a `serve` process: an ASGI middleware that lets a request in only with the token, bounds request
bodies, and adds security headers to every response.

The token comes in an `Authorization: Bearer TOKEN` header (the page's API calls) or a `token` query parameter
(the page itself and its script), and is compared in constant time (`hmac.compare_digest`). A request without
it gets 401, with a wrong one 403, both as JSON. Standard library only (no Starlette, no torch).
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
from urllib.parse import parse_qs

__all__ = ["BodyTooLarge", "Guard", "MAX_BODY", "new_token", "valid_token"]

MAX_BODY = 64 * 1024  # bytes: boxes and options are tiny
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{8,128}")
_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                                 b"script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                                 b"form-action 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class BodyTooLarge(Exception):
    """A request body over `MAX_BODY` bytes."""


def new_token() -> str:
    return secrets.token_urlsafe(24)


def valid_token(token: str) -> bool:
    """8 to 128 URL-safe characters (letters, digits, . _ ~ -): it travels in URLs unescaped."""
    return bool(_TOKEN.fullmatch(token))


def _given(scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return credentials.strip()
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return query["token"][-1] if query.get("token") else None


class Guard:
    """ASGI middleware around `app`: token check, body bound, security headers."""

    def __init__(self, app, token: str, max_body: int = MAX_BODY) -> None:
        self.app, self._token, self.max_body = app, token.encode(), max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self.app(scope, receive, send)
        if scope["type"] != "http":  # websockets: the page uses none, so none gets past the door
            return await send({"type": "websocket.close", "code": 1008})

        async def send_secured(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *_HEADERS]}
            await send(message)

        given = _given(scope)
        if not given:
            return await _refuse(send_secured, 401, "this server needs its token: open the URL it printed "
                                                    "(…/?token=…) or send 'Authorization: Bearer TOKEN'.")
        if not hmac.compare_digest(given.encode("utf-8", "replace"), self._token):
            return await _refuse(send_secured, 403, "wrong token: use the URL this server printed when it started.")
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            return await _refuse(send_secured, 413, f"request body over {self.max_body} bytes.")
        received = 0

        async def receive_bounded():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body:
                raise BodyTooLarge(f"request body over {self.max_body} bytes.")
            return message

        await self.app(scope, receive_bounded, send_secured)


async def _refuse(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="repmedsam-ov serve"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
