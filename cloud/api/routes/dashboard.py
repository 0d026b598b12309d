"""The analyst dashboard: one HTML page and one script, served by the API, no CDN (works offline).

``GET /dashboard`` without a valid analyst key answers 401 with a login form; the form posts the key
to ``POST /dashboard/session``, which sets an HttpOnly, SameSite=Strict cookie. The page then calls
the JSON API with that cookie (and ``X-Requested-With: marlids`` for triage changes).
``POST /dashboard/logout`` clears the cookie. The cookie is ``Secure`` whenever the API is served over
TLS (``marlids cloud serve --tls-cert/--tls-key``), or behind a TLS proxy when
``MARLIDS_CLOUD_COOKIE_SECURE=true``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cloud.api.deps import COOKIE_NAME, AnalystDep, KeyStoreDep, Principal, get_current_principal
from cloud.api.errors import AUTH_RESPONSES, BODY_RESPONSES, StrictJSONRoute
from cloud.core.security import Role

router = APIRouter(prefix="/dashboard", tags=["dashboard"], route_class=StrictJSONRoute)
STATIC = Path(__file__).resolve().parents[2] / "static"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-store"}


def _static(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


async def _optional_principal(request: Request) -> Principal | None:
    try:
        return await get_current_principal(request)
    except HTTPException:
        return None


@router.get("", response_class=HTMLResponse, response_model=None,
            responses={401: {"content": {"text/html": {}}, "description": "Login form."}})
def dashboard_page(principal: Annotated[Principal | None, Depends(_optional_principal)]) -> HTMLResponse:
    """The dashboard for an analyst key; otherwise (401) the login form."""
    if principal is None or principal.role is not Role.analyst:
        return HTMLResponse(_static("login.html"), status_code=status.HTTP_401_UNAUTHORIZED, headers=HEADERS)
    return HTMLResponse(_static("dashboard.html"), headers=HEADERS)


@router.get("/app.js", response_class=Response, response_model=None,
            responses={200: {"content": {"text/javascript": {}}}, **AUTH_RESPONSES})
def dashboard_script(_: AnalystDep) -> Response:
    """The dashboard's script (plain JS, inline SVG charts)."""
    return Response(_static("dashboard.js"), media_type="text/javascript", headers=HEADERS)


@router.post("/session", response_class=RedirectResponse, response_model=None, status_code=status.HTTP_303_SEE_OTHER,
             responses={**BODY_RESPONSES, 401: {"content": {"text/html": {}}, "description": "Not an analyst key: "
                                                                                             "the login form again."}})
async def dashboard_login(request: Request, store: KeyStoreDep) -> Response:
    """Log in with an analyst key (form field ``key``): sets the session cookie, redirects to the page."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=4)
    key = (form.get("key") or [""])[0].strip()
    principal = None
    if key and len(key) <= 256:
        principal = await run_in_threadpool(store.lookup, key)
    if principal is None or principal.role is not Role.analyst:
        request.app.state.metrics.auth_failures.inc()
        return HTMLResponse(_static("login.html").replace("<!--error-->", "<p class=err>Not a valid analyst key.</p>"),
                            status_code=status.HTTP_401_UNAUTHORIZED, headers=HEADERS)
    resp = RedirectResponse("/dashboard", status_code=status.HTTP_303_SEE_OTHER)
    resp.set_cookie(COOKIE_NAME, key, httponly=True, samesite="strict", path="/", secure=_secure(request),
                    max_age=12 * 3600)
    return resp


@router.post("/logout", response_class=RedirectResponse, response_model=None,
             status_code=status.HTTP_303_SEE_OTHER)
async def dashboard_logout(request: Request) -> Response:
    """Log out: clear the session cookie and redirect to the login form (needs no key: it only forgets one)."""
    resp = RedirectResponse("/dashboard", status_code=status.HTTP_303_SEE_OTHER)
    resp.delete_cookie(COOKIE_NAME, path="/", secure=_secure(request), httponly=True, samesite="strict")
    resp.headers["Clear-Site-Data"] = '"cookies"'
    return resp


def _secure(request: Request) -> bool:
    """Whether the session cookie gets the ``Secure`` flag: over TLS, or when the settings force it
    (a TLS-terminating proxy in front)."""
    forced = getattr(request.app.state.settings, "cookie_secure", None)
    return request.url.scheme == "https" if forced is None else bool(forced)
