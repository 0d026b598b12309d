"""Request bodies parsed strictly, error answers that always render, and the error responses the OpenAPI
document declares.

* :class:`StrictJSONRoute` — every router's route class. JSON bodies are parsed by :func:`json.loads`
  refusing what JSON (RFC 8259) does not have and Python's parser would let through: ``NaN``,
  ``Infinity`` and ``-Infinity`` literals and numbers too large for a float (``1e400``); bodies that are
  not UTF-8 or nest too deeply are refused too. Each is a 422 ``json_invalid`` error naming the problem.
* :func:`validation_error_handler` — the 422 answer. FastAPI's own echoes the offending input, which may
  be exactly what cannot be written as JSON (a NaN, a lone surrogate), so the answer itself failed (500);
  here such values are written as strings first.
* :data:`AUTH_RESPONSES`, :data:`BODY_RESPONSES` — the 401/403 and 413 answers, for ``responses=``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field


class ErrorMessage(BaseModel):
    """An error answer: what went wrong, in one sentence."""

    detail: str = Field(examples=["invalid or revoked API key"])


#: 401 and 403 of every endpoint that needs an API key.
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorMessage, "description": "Missing, unknown or revoked API key."},
    403: {"model": ErrorMessage, "description": "A key of another role, or a cookie-authenticated change "
                                                "without the `X-Requested-With: marlids` header."},
}
#: 413 of every endpoint that takes a request body.
BODY_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorMessage, "description": "Request body larger than the server's limit "
                                                "(`MARLIDS_CLOUD_MAX_BODY_BYTES`, 1 MiB by default)."},
}


def _json_error(message: str, doc: str, pos: int = 0) -> json.JSONDecodeError:
    return json.JSONDecodeError(message, doc, max(0, pos))


def strict_json_loads(body: bytes) -> Any:
    """Parse a request body as strict JSON (RFC 8259).

    Raises
    ------
    json.JSONDecodeError
        For invalid JSON, a ``NaN``/``Infinity``/``-Infinity`` literal, a number that overflows a float,
        text that is not UTF-8, or nesting too deep for the parser (FastAPI answers 422 ``json_invalid``).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _json_error(f"the body is not UTF-8 ({exc.reason} at byte {exc.start})", "", 0) from None

    def no_constant(name: str) -> Any:
        raise _json_error(f"{name} is not a JSON number: send finite numbers only", text, text.find(name))

    def finite_float(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            raise _json_error(f"number {literal[:40]} is too large for a 64-bit float", text, text.find(literal))
        return value

    try:
        return json.loads(text, parse_constant=no_constant, parse_float=finite_float)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise _json_error("JSON nested too deeply", text, 0) from None
    except ValueError as exc:  # e.g. an integer literal longer than Python's int-conversion limit
        raise _json_error(str(exc)[:200], text, 0) from None


class StrictJSONRequest(Request):
    """A request whose :meth:`json` is :func:`strict_json_loads`."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json_loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """Route class of every router: its endpoint sees a :class:`StrictJSONRequest` (module docstring), and a
    query parameter given more than once is refused with 422 (each takes one value; FastAPI would silently
    keep the last)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            repeated = sorted({k for k, _ in request.query_params.multi_items()
                               if len(request.query_params.getlist(k)) > 1})
            if repeated:  # every query parameter of the API is one value; which of several would be ambiguous
                raise RequestValidationError([
                    {"type": "repeated_parameter", "loc": ("query", k), "input": request.query_params.getlist(k),
                     "msg": f"query parameter {k!r} given {len(request.query_params.getlist(k))} times; give it once"}
                    for k in repeated])
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler


def renderable(value: Any) -> Any:
    """``value`` with what JSON cannot hold written as text: non-finite floats as ``"NaN"``, ``"Infinity"``,
    ``"-Infinity"``; lone surrogates as ``\\udXXX`` escapes (so the answer shows what was sent)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list | tuple):
        return [renderable(v) for v in value]
    if isinstance(value, dict):
        return {renderable(k): renderable(v) for k, v in value.items()}
    return value


async def validation_error_handler(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with FastAPI's usual ``{"detail": [{"loc", "msg", "type", "input", …}]}`` body, always renderable."""
    return JSONResponse({"detail": renderable(jsonable_encoder(exc.errors()))},
                        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def unprocessable(loc: list[str], msg: str, type_: str, value: Any) -> dict[str, Any]:
    """One item of a 422 ``detail`` list, shaped as FastAPI's validation errors (``loc, msg, type, input``)."""
    return {"loc": loc, "msg": msg, "type": type_, "input": renderable(value)}
