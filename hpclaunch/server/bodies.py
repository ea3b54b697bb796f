"""The one bound on request bodies: an ASGI middleware, so no route reads more.

A declared ``Content-Length`` over the bound is refused before a byte is read;
a chunked body is counted as it arrives and refused when it passes the bound.
16 MiB holds a batch file of 100,000 runs many times over.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 16 * 1024 * 1024
TOO_LARGE = f"the request body is larger than {MAX_BODY // 2**20} MiB"


class BodyTooLarge(Exception):
    """A chunked body passed the bound while a route was reading it."""


class LimitBody:
    """ASGI middleware: 413 for bodies over ``limit`` bytes."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                await too_large(send)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except BodyTooLarge:
            await too_large(send)


async def too_large(send: Send) -> None:
    body = json.dumps({"error": TOO_LARGE}, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
