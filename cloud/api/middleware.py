"""Pure-ASGI middleware: a request-body size limit (uvicorn sets none), cheap enough for the ingest path."""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException


class BodySizeLimit:
    """Answer 413 to requests whose body exceeds ``max_bytes`` (by ``Content-Length`` or while streaming).

    Parameters
    ----------
    app : ASGI app
    max_bytes : int
        Largest accepted body, bytes.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                body = json.dumps({"detail": f"request body larger than {self.max_bytes} bytes"}).encode()
                await send({"type": "http.response.start", "status": 413,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        seen = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # chunked upload without Content-Length
                    raise HTTPException(413, f"request body larger than {self.max_bytes} bytes")
            return message

        await self.app(scope, limited_receive, send)
