"""Who may write through the review page, and how a forged request is told apart.

- Every write needs the server's token: the one printed at start-up (or
  ``$GITVAULT_SERVE_TOKEN``). A browser proves it once at ``/login`` and then holds a session
  cookie derived from it (``HttpOnly``, ``SameSite=Strict``); a script may instead send the
  token in the ``X-Gitvault-Token`` header (a header a cross-site page cannot set without a
  CORS preflight, which this server never answers).
- A browser write also carries a CSRF field derived from the token, checked server-side, and
  must come with an ``Origin`` (or, failing that, ``Referer``) of this very server.
- Writes are POST only; GETs never change the vault.
- The ``Host`` header must name this server when it listens on loopback, so a page on another
  name that resolves to 127.0.0.1 (DNS rebinding) is refused before any handler runs.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.requests import Request

COOKIE = "gitvault_session"
HEADER = "x-gitvault-token"
CSRF_FIELD = "csrf"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]", "::1")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def _mac(token: str, purpose: str) -> str:
    return hmac.new(token.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Guard:
    """The token and the checks every request and every write passes."""

    def __init__(self, token: str, host: str, port: int) -> None:
        self.token = token
        self.session = _mac(token, "session")
        self.csrf = _mac(token, "csrf")
        self.host, self.port = host, port

    def hosts(self) -> set[str]:
        """``Host`` values a loopback server answers to."""
        names: Iterable[str] = {*LOOPBACK_NAMES, self.host}
        return {f"{n}:{self.port}" for n in names} | ({*names} if self.port == 80 else set())

    def host_ok(self, request: Request) -> bool:
        if not is_loopback(self.host):
            return True  # listening beyond loopback: the Origin check below guards writes
        return request.headers.get("host", "") in self.hosts()

    def token_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def signed_in(self, request: Request) -> bool:
        cookie = request.cookies.get(COOKIE)
        return cookie is not None and hmac.compare_digest(cookie.encode(), self.session.encode())

    def same_origin(self, request: Request) -> bool:
        """The request's Origin (or Referer) is this server as the browser addressed it."""
        origin = request.headers.get("origin") or request.headers.get("referer")
        if not origin or origin == "null":
            return False
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc == request.headers.get("host")

    def write_refusal(self, request: Request, form_csrf: str | None) -> str | None:
        """Why a write is refused (None: allowed)."""
        if request.method != "POST":
            return "writes are POST only"
        if self.token_ok(request.headers.get(HEADER)):
            return None  # a script holding the token
        if not self.signed_in(request):
            return "sign in with the server's token first (see /login)"
        if form_csrf is None or not hmac.compare_digest(form_csrf.encode(), self.csrf.encode()):
            return "the form's CSRF token is missing or wrong; reload the page"
        if not self.same_origin(request):
            return "cross-site request refused (Origin does not match this server)"
        return None
